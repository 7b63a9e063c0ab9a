#!/usr/bin/env bash
# `make demo`: build the demo company, run the month-end close, print the report's path.
# Each step runs only once the issue that adds it has landed; what is missing is said, not faked.
set -euo pipefail
cd "$(dirname "$0")/.."
wb=.venv/bin/workbook
if ! $wb --help | grep -q demo-data; then
  echo "demo: the demo company generator (issue 3) is not built yet; nothing more to show."
  echo "demo: what exists: 'workbook run', 'workbook runs', 'workbook validate', 'workbook config'."
  exit 0
fi
$wb demo-data
if ! $wb --help | grep -q ' close'; then
  echo "demo: the demo company is in ${WORKBOOK_HOME:-.}/data/landing; the month-end close (issue 8) is not built yet."
  exit 0
fi
$wb close --month "$($wb demo-data --last-complete-month)"
