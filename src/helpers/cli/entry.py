"""The ``workbook`` command's entry point: light to import, so that a close's first kernels start
before the CLI imports pandas, SQLAlchemy and papermill (:func:`helpers.core.kernels.early`); then
:func:`helpers.cli.main.main` parses and runs the command as always."""

from __future__ import annotations

import gc
import sys
from collections.abc import Sequence

from helpers.core import kernels


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``workbook`` command; its exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    with kernels.early(args):
        gc.disable()  # the CLI's imports make objects that live as long as it: no collections meanwhile
        try:
            from helpers.cli.main import main as run
        finally:
            gc.enable()
        gc.freeze()  # and none of them is looked at by a later collection
        return run(args)
