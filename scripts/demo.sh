#!/usr/bin/env bash
# `make demo`: build the demo company, run the month-end close, print the report's path.
set -euo pipefail
cd "$(dirname "$0")/.."
wb=.venv/bin/workbook
$wb demo-data
# The close runs "as of" the 16th of the next month, 12:00 UTC: by then every source of the month has
# arrived (cloud bills 3-5 days after it, Finance's ledger on its close, the 5th business day) and every
# renewal that failed in the month is out of dunning (paid or churned: the grace period is 14 days).
# The demo history ends on the last complete month's last day, so the month it can close is the one
# before: its 16th-of-next-month lies inside the history.
last="$($wb demo-data --last-complete-month)"
read -r month as_of < <(.venv/bin/python -c 'import sys; from helpers.core.periods import shift_period as s
print(s(sys.argv[1], -1), f"{sys.argv[1]}-16T12:00:00Z")' "$last")
echo "demo: closing $month as of $as_of (workbook close --month $month --as-of $as_of)"
# The close also builds the investor figures of the 12 months before (--history, default 12), so the
# report's trends have 13 points with month-over-month and year-over-year changes: the first close
# runs them all (about 65 runs: about a minute with runner.workers: 2), a later one skips them.
echo "demo: the first close also builds the 12 months before $month for the report's trends (about a minute)"
# A DRAFT is a result, not an error: the close prints its blockers; its last line is the report's path.
status=0
$wb close --month "$month" --as-of "$as_of" || status=$?
if [ "$status" -ne 0 ]; then
  echo "demo: the close exited $status (a run failed or was blocked: see the checklist above)" >&2
fi
exit "$status"
