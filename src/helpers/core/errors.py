"""Exit codes (docs/architecture.md) and the usage error, in a module light enough for every CLI call to import."""

from __future__ import annotations

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BLOCKED, EXIT_CONFLICT = 0, 1, 2, 3, 4
EXIT_LOCKED = 5  # refused: the partition belongs to a published (FINAL, locked) month


class UsageError(ValueError):
    """Bad input from the caller (exit 2)."""
