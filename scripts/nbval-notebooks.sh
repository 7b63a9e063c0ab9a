#!/usr/bin/env bash
# Execute every notebook under notebooks/ with nbval (lax: cells must run, outputs are not compared)
# with its defaults, as someone running it by hand would, in a sandbox WORKBOOK_HOME, so the real
# runs/ and data/ are untouched.
#
# The defaults mean "today" (the last complete month or day, as_of now), so the sandbox's demo
# company ends yesterday, and its last complete month is closed through the runner first: the
# notebooks then run by hand against a published warehouse, each in its scratch copy. Pipelines and
# reports run first; the published warehouse must be byte-identical after them. Runbooks run last:
# they act on the published warehouse (diagnose mode by default).
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t notebooks < <(find notebooks -name '*.ipynb' -not -path '*/.ipynb_checkpoints/*' | sort)
if [ ${#notebooks[@]} -eq 0 ]; then
  echo "nbval: no notebooks under notebooks/ yet"
  exit 0
fi
sandbox=$(mktemp -d -t workbook-nbval-XXXXXX)
trap 'rm -rf "$sandbox"' EXIT
export WORKBOOK_HOME="$sandbox" WORKBOOK_WAREHOUSE_URL="sqlite:///$sandbox/runs/warehouse.sqlite"
unset WORKBOOK_RUN_ID WORKBOOK_PUBLISHED_WAREHOUSE_URL WORKBOOK_QUARANTINE_DIR
mkdir -p "$sandbox/runs" "$sandbox/data"
nbval() { .venv/bin/python -m pytest --nbval-lax -p no:cacheprovider -q "$@"; }
if ! .venv/bin/workbook --help 2>/dev/null | grep -q demo-data; then
  nbval "${notebooks[@]}"
  exit
fi
read -r yesterday month < <(.venv/bin/python -c '
import datetime as dt
from helpers.runs.session import last_complete_day, last_complete_month
now = dt.datetime.now(dt.UTC)
print(last_complete_day(now), last_complete_month(now))')
.venv/bin/workbook demo-data --accounts 60 --months 3 --seed 7 --end "$yesterday" --quiet >/dev/null
echo "nbval: demo company up to $yesterday; closing $month through the runner"
if ! .venv/bin/workbook close --month "$month" --quiet >"$sandbox/close.log" 2>&1; then
  cat "$sandbox/close.log" >&2
  exit 1
fi
published="$sandbox/runs/warehouse.sqlite"
before=$(sha256sum "$published" | cut -d' ' -f1)
by_hand=() runbooks=()
for nb in "${notebooks[@]}"; do
  case "$nb" in notebooks/runbooks/*) runbooks+=("$nb") ;; *) by_hand+=("$nb") ;; esac
done
nbval "${by_hand[@]}"
after=$(sha256sum "$published" | cut -d' ' -f1)
if [ "$before" != "$after" ]; then
  echo "nbval: notebooks run by hand changed the published warehouse ($before -> $after)" >&2
  exit 1
fi
nbval "${runbooks[@]}"
