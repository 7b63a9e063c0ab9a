"""Every form a secret takes in a file or a column is scrubbed (issue 20, item 2)."""

import html
import json
import re
import traceback
from urllib.parse import quote, quote_plus

import markupsafe
import pytest

from helpers.core import secrets

pytestmark = pytest.mark.unit

PASSWORD = "Zq7pw\"a'b\\c<d>&e"  # every character HTML, JSON and repr escape
WEBHOOK = "https://hooks.example.invalid/services/Zq7wh/B1?name=a b&c=d+e/f"  # URL-encodes
R = secrets.REDACTED


def encodings(value: str) -> dict[str, str]:
    """The forms produced by the libraries that write the archive (not by the module under test)."""
    try:
        raise KeyError(value)  # a traceback shows the repr: backslashes doubled, quotes escaped
    except KeyError:
        tb_line = traceback.format_exc().strip().splitlines()[-1].removeprefix("KeyError: ")[1:-1]
    return {
        "raw": value,
        "json": json.dumps(value)[1:-1],
        "json unicode": json.dumps(value, ensure_ascii=False)[1:-1],
        "html": html.escape(value),
        "html no quote": html.escape(value, quote=False),
        "markupsafe (nbconvert)": str(markupsafe.escape(value)),
        "url": quote(value, safe=""),
        "url keep /": quote(value),
        "url plus": quote_plus(value),
        "url lower hex": re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), quote(value, safe="")),
        "traceback repr": tb_line,
        "repr in the notebook's JSON": json.dumps(tb_line)[1:-1],
        "json in HTML": html.escape(json.dumps(value)[1:-1]),
    }


@pytest.mark.parametrize("value", [PASSWORD, WEBHOOK], ids=["password", "webhook"])
def test_each_encoding_is_a_variant_and_is_redacted(value):
    forms = encodings(value)
    assert len(set(forms.values())) >= 6  # the value really changes under these encodings
    for name, form in forms.items():
        assert form in secrets.variants(value), name
        text = f"before {form} after"
        redacted, n = secrets.redact(text, [value])
        assert (redacted, n) == (f"before {R} after", 1), name
        assert "Zq7" not in redacted


def test_a_url_decoded_secret_is_a_variant_too():
    encoded = "Zq7tok%2Bab%2Fcd"  # a token set URL-encoded in the environment
    assert secrets.redact("t=Zq7tok+ab/cd.", [encoded]) == (f"t={R}.", 1)


def test_longest_form_first_leaves_no_fragment():
    # the JSON form of the traceback repr contains shorter forms (the repr, the raw tail): the
    # longest must go first, whole, or a fragment such as a doubled backslash would be left behind
    tb = encodings(PASSWORD)["repr in the notebook's JSON"]
    assert secrets.redact(f'"evalue": "{tb}"', [PASSWORD]) == (f'"evalue": "{R}"', 1)
    # two secrets, one inside the other: the longer is replaced whole
    assert secrets.redact("x hunter22-long y hunter22", ["hunter22", "hunter22-long"]) == (f"x {R} y {R}", 2)
    forms = secrets.variants(PASSWORD)
    assert [len(f) for f in forms] == sorted((len(f) for f in forms), reverse=True)


def test_short_values_are_ignored():
    short = "a<b"  # shorter than MIN_SECRET_LENGTH: redacting it would mangle ordinary text
    assert len(short) < secrets.MIN_SECRET_LENGTH
    assert secrets.variants(short) == ()
    assert secrets.redact("a<b and a&lt;b", [short]) == ("a<b and a&lt;b", 0)
    assert secrets.secret_values({"X_TOKEN": "abc", "Y_TOKEN": "abcd"}) == ["abcd"]


def test_contains_secret_finds_any_form_inside_a_longer_value():
    for form in encodings(PASSWORD).values():
        assert secrets.contains_secret(f"prefix-{form}-suffix", [PASSWORD])
    assert not secrets.contains_secret("prefix-Zq7pw-suffix", [PASSWORD])


def test_scrub_tree_and_find_secrets_cover_every_form(tmp_path):
    forms = {**encodings(PASSWORD), **{f"webhook {k}": v for k, v in encodings(WEBHOOK).items()}}
    for i, (name, form) in enumerate(forms.items()):
        (tmp_path / f"{i}.txt").write_text(f"{name}: {form}\n", encoding="utf-8")
    (tmp_path / "blob.bin").write_bytes(b"\xff\x00" + html.escape(PASSWORD).encode())  # not UTF-8
    assert len(secrets.find_secrets(tmp_path, [PASSWORD, WEBHOOK])) == len(forms) + 1
    assert secrets.scrub_tree(tmp_path, [PASSWORD, WEBHOOK]) == len(forms) + 1
    assert secrets.find_secrets(tmp_path, [PASSWORD, WEBHOOK]) == []
    assert not [p for p in tmp_path.iterdir() if b"Zq7" in p.read_bytes()]
    assert (tmp_path / "0.txt").read_text() == f"raw: {R}\n"
