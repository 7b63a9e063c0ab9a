"""``python -m helpers.cli`` is the ``workbook`` command."""

from helpers.cli.entry import main

raise SystemExit(main())
