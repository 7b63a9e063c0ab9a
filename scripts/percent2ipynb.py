"""Author a notebook from percent-format text on stdin: python scripts/percent2ipynb.py OUT.ipynb < cells.py"""

import sys
from pathlib import Path

from helpers.runs.notebooks import from_percent, write_notebook

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    write_notebook(from_percent(sys.stdin.read()), Path(sys.argv[1]))
