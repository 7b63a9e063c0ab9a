"""``paths.merge_json``: a cache file's entries merged with what another process wrote."""

from __future__ import annotations

import json

import pytest

from helpers.core import paths

pytestmark = pytest.mark.unit


def test_new_entries_are_added_to_what_is_on_disk_and_win_over_it(tmp_path):
    path = tmp_path / "cache" / "entries.json"
    assert paths.merge_json(path, {"a": 1}) == {"a": 1}, "the folder is made"
    path.write_text(json.dumps({"a": 1, "b": 2}))  # another process added b
    assert paths.merge_json(path, {"a": 3, "c": 4}) == {"a": 3, "b": 2, "c": 4}
    assert json.loads(path.read_text()) == {"a": 3, "b": 2, "c": 4}


@pytest.mark.parametrize("text", ["{not json", "[1, 2]"])
def test_a_file_that_is_not_a_json_object_counts_as_empty(tmp_path, text):
    path = tmp_path / "entries.json"
    path.write_text(text)
    assert paths.merge_json(path, {"a": 1}) == {"a": 1}
    assert json.loads(path.read_text()) == {"a": 1}


def test_a_file_that_cannot_be_written_raises(tmp_path):
    (tmp_path / "cache").write_text("a file where the folder goes")
    with pytest.raises(OSError):
        paths.merge_json(tmp_path / "cache" / "entries.json", {"a": 1})
