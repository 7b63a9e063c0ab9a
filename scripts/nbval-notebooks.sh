#!/usr/bin/env bash
# Execute every notebook under notebooks/ with nbval (lax: cells must run, outputs are not compared)
# in a sandbox WORKBOOK_HOME with small generated data, so the real runs/ and data/ are untouched.
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
mkdir -p "$sandbox/runs" "$sandbox/data"
if .venv/bin/workbook --help 2>/dev/null | grep -q demo-data; then
  .venv/bin/workbook demo-data --accounts 60 --months 3 --seed 7 --end 2026-10-31 --quiet >/dev/null
fi
.venv/bin/python -m pytest --nbval-lax -p no:cacheprovider -q "${notebooks[@]}"
