"""The landing files' SHA-256, kept between processes by each file's stat, as git's index keeps
its files' hashes: a verified read re-hashes only the files that changed since.

Every read verifies each delivery against its manifest's SHA-256 (:func:`landing.verify_delivery`);
Growth's run reads about 7,700 daily files at the default size, and hashing them costs a quarter of
its read. The store (``<data>/cache/digests/<source>.json``, beside the landing zone) records, per
delivered file, its size, modification and change times (ns), inode and SHA-256.

- A recorded SHA-256 is used only while the file's size, both times and inode are all unchanged.
  Writing a file changes its change time, which no program can set back; replacing it changes
  its inode.
- An entry is trusted only if the file had last changed at least :data:`RACY_NS` before the store
  was written (file system times, no clock read). A file changed within the same timestamp tick
  as its hashing would otherwise keep a stat its content no longer matches; such a file is hashed
  again.
- The store is a cache: unreadable, missing or read-only, every file is hashed as before.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from helpers.core import paths as core_paths
from helpers.storage import landing

DIGESTS_DIR = "digests"
RACY_NS = 2_000_000_000  # 2 s: far coarser than any file system's timestamp tick


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


class DigestStore:
    """The stored digests of one source's delivered files (``root``: a landing zone; default the workbook's)."""

    def __init__(self, source: str, root: Path | None = None) -> None:
        self.base = str(landing.source_dir(source, root)) + os.sep
        self.path = (root or core_paths.landing_dir()).parent / "cache" / DIGESTS_DIR / f"{source}.json"
        self._entries: dict[str, list] = {}
        self._trusted_before = 0
        self._new: dict[str, list] = {}
        try:
            written = os.stat(self.path).st_mtime_ns
            data = json.loads(self.path.read_text())
            if isinstance(data, dict):
                self._entries, self._trusted_before = data, written - RACY_NS
        except (OSError, ValueError):  # none yet, or unreadable: every file is hashed
            pass

    def _name(self, path: str | Path) -> str:
        path = str(path)
        return path[len(self.base) :] if path.startswith(self.base) else path

    def sha256(self, path: str | Path) -> str:
        """The file's SHA-256: the stored one while its stat is unchanged, else hashed (raises ``OSError``)."""
        st = os.stat(path)
        key = _stat_key(st)
        name = self._name(path)
        entry = self._entries.get(name)
        if (
            isinstance(entry, list)
            and len(entry) == 5
            and entry[:4] == key
            and st.st_ctime_ns < self._trusted_before
            and isinstance(entry[4], str)
        ):
            return entry[4]
        digest = landing.cached_sha256(path)
        self._new[name] = [*key, digest]
        return digest

    def save(self) -> None:
        """Add the files hashed since to the store (merged with what another process wrote)."""
        if not self._new:
            return
        try:
            core_paths.merge_json(self.path, self._new)
            self._new = {}
        except OSError:  # a read-only home: the store is an optimisation, never a failure
            pass
