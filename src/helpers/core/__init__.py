"""What every other package stands on: paths, configuration, errors and exit codes, secrets, time and
periods, money, the business calendar and the failure catalogue. Imports nothing above it."""
