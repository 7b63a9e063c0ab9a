"""``python -m helpers.cli`` is the ``workbook`` command."""

from helpers.cli.main import main

raise SystemExit(main())
