import pytest

from helpers.core import secrets

pytestmark = pytest.mark.unit


def test_secret_values_from_urls_and_names():
    env = {
        "WORKBOOK_WAREHOUSE_URL": "postgresql+psycopg://wb:s3cr%40t-pw@127.0.0.1:5432/db",
        "WORKBOOK_SLACK_WEBHOOK_URL": "http://127.0.0.1:9/hooks/T000/B000/XXXX",
        "PAGERDUTY_ROUTING_KEY": "R0UT1NGKEY",
        "HOME": "/root",
        "WORKBOOK_HOME": "/tmp/x",
        "SQLITE_URL": "sqlite:///runs/warehouse.sqlite",
    }
    found = secrets.secret_values(env)
    assert "s3cr@t-pw" in found and "s3cr%40t-pw" in found
    assert env["WORKBOOK_WAREHOUSE_URL"] in found
    assert env["WORKBOOK_SLACK_WEBHOOK_URL"] in found
    assert "R0UT1NGKEY" in found
    assert "/root" not in found and "/tmp/x" not in found and env["SQLITE_URL"] not in found


def test_redact_and_scrub_tree(tmp_path):
    (tmp_path / "a.log").write_text("connect pw=hunter22 ok hunter22")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.bin").write_bytes(b"\x00\xffhunter22")
    assert secrets.find_secrets(tmp_path, ["hunter22"])
    n = secrets.scrub_tree(tmp_path, ["hunter22"])
    assert n == 3
    assert secrets.find_secrets(tmp_path, ["hunter22"]) == []
    assert (tmp_path / "a.log").read_text() == f"connect pw={secrets.REDACTED} ok {secrets.REDACTED}"
