"""Slack, PagerDuty and SMTP channels against real local servers on 127.0.0.1.

The HTTP server (one thread, recording every request) answers with a scripted list of status
codes, then success; the SMTP server is aiosmtpd's Controller on a free port, optionally
answering 451 first or always refusing. Backoff sleeps are recorded, never slept.
"""

import datetime as dt
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from zoneinfo import ZoneInfo

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from helpers.core import config as cfgmod
from helpers.core.config import RetryPolicy
from helpers.oncall import escalation
from helpers.oncall.notify import (
    EmailChannel,
    Message,
    Notifier,
    PagerDutyChannel,
    Recipient,
    SlackChannel,
    channels_from_env,
    list_notifications,
)
from helpers.storage.warehouse import get_engine

pytestmark = pytest.mark.integration
NY = ZoneInfo("America/New_York")
T0 = dt.datetime(2026, 11, 10, 8, 0, tzinfo=dt.UTC)
DE1 = Recipient("DE1", "Data Engineer 1", "de1@example.com", "@de1", "on_call")
DE2 = Recipient("DE2", "Data Engineer 2", "de2@example.com", "@de2", "backup")
MSG = Message(
    alert_id="42",
    event="trigger",
    subject="[critical] profit_aggregate: profit_monthly is 25 h old (alert 42)",
    body="check: profit_aggregate.freshness",
    pipeline="profit_aggregate",
    severity="critical",
    step="notify",
    runbook="notebooks/runbooks/profit/stale_data.ipynb",
)


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


# ---------------------------------------------------------------- a recording HTTP server


@dataclass
class HttpServer:
    url: str
    requests: list[dict] = field(default_factory=list)
    script: list[int] = field(default_factory=list)  # status codes to answer first
    default: int = 200


@pytest.fixture
def http_server() -> Iterator[HttpServer]:
    state = HttpServer(url="")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with lock:
                state.requests.append(
                    {
                        "path": self.path,
                        "content_type": self.headers.get("Content-Type"),
                        "json": json.loads(body),
                    }
                )
                status = state.script.pop(0) if state.script else state.default
            payload = b'{"status": "success"}' if status < 400 else b'{"status": "error"}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()
    thread.join(5)


# ---------------------------------------------------------------- a recording SMTP server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SmtpHandler:
    """Records accepted mails; answers DATA with the scripted replies first."""

    def __init__(self) -> None:
        self.mails: list[dict] = []
        self.script: list[str] = []
        self.always: str | None = None

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        if self.always:
            return self.always
        if self.script:
            return self.script.pop(0)
        self.mails.append(
            {
                "from": envelope.mail_from,
                "to": list(envelope.rcpt_tos),
                "message": message_from_bytes(envelope.content),
                "authenticated": session.authenticated,
            }
        )
        return "250 OK"


def _authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        b"wb",
        b"pa55word",
    )
    return AuthResult(success=ok)


@pytest.fixture
def smtp_server() -> Iterator[tuple[SmtpHandler, int]]:
    handler = SmtpHandler()
    port = free_port()
    controller = Controller(
        handler, hostname="127.0.0.1", port=port, authenticator=_authenticator, auth_require_tls=False
    )
    controller.start()
    yield handler, port
    controller.stop()


def notifier(*channels, attempts: int = 4) -> tuple[Notifier, list[float]]:
    sleeps: list[float] = []
    policy = RetryPolicy(attempts=attempts, base_seconds=1, factor=2, max_seconds=10, redeliver_ticks=1)
    return Notifier(list(channels), policy=policy, sleep=sleeps.append, engine=get_engine()), sleeps


def records(channel: str, step: str = "notify") -> list[tuple[int, int, str]]:
    rows = [r for r in list_notifications(alert_id="42") if r["channel"] == channel and r["step"] == step]
    return sorted((r["round"], r["attempt"], r["status"]) for r in rows)


# ---------------------------------------------------------------- Slack


def test_slack_webhook_posts_json_mentioning_everyone_once(home, http_server):
    n, sleeps = notifier(SlackChannel(f"{http_server.url}/services/T000/B000/secret"))
    (d,) = n.send(MSG, [DE1, DE2], at=T0)
    assert d.delivered and sleeps == []
    (req,) = http_server.requests
    assert req["path"] == "/services/T000/B000/secret"
    assert req["content_type"] == "application/json"
    text = req["json"]["text"]
    assert text.startswith("[critical] profit_aggregate") and "@de1, @de2" in text
    assert records("slack") == [(1, 1, "sent")]


def test_slack_500_then_success_is_retried_and_recorded(home, http_server):
    http_server.script = [500, 503]
    n, sleeps = notifier(SlackChannel(f"{http_server.url}/hook/s3cr3t"))
    (d,) = n.send(MSG, [DE1], at=T0)
    assert d.delivered and len(http_server.requests) == 3
    assert sleeps == [1, 2]
    assert records("slack") == [(1, 1, "retry"), (1, 2, "retry"), (1, 3, "sent")]
    errors = [r["error"] for r in list_notifications(alert_id="42", failed_only=True)]
    assert errors == [
        'HTTP 503 Service Unavailable: {"status": "error"}',
        'HTTP 500 Internal Server Error: {"status": "error"}',
    ]


def test_an_endpoint_that_always_fails_is_retried_recorded_and_redelivered(home, http_server):
    http_server.default = 500
    url = f"{http_server.url}/hook/s3cr3t-path"
    n, sleeps = notifier(SlackChannel(url), attempts=3)
    (d,) = n.send(MSG, [DE1], at=T0)
    assert d.status == "failed" and sleeps == [1, 2]
    (again,) = n.redeliver(at=T0 + dt.timedelta(minutes=1))
    assert again.status == "gave_up"
    assert len(http_server.requests) == 6
    assert records("slack") == [
        (1, 1, "retry"),
        (1, 2, "retry"),
        (1, 3, "failed"),
        (2, 1, "retry"),
        (2, 2, "retry"),
        (2, 3, "gave_up"),
    ]
    assert all("s3cr3t-path" not in (r["error"] or "") for r in list_notifications(alert_id="42"))


def test_a_4xx_is_not_retried(home, http_server):
    http_server.default = 404
    n, sleeps = notifier(SlackChannel(f"{http_server.url}/wrong"))
    (d,) = n.send(MSG, [DE1], at=T0)
    assert d.status == "gave_up" and sleeps == [] and len(http_server.requests) == 1


def test_nothing_listening_is_a_retryable_connection_error(home):
    n, sleeps = notifier(SlackChannel(f"http://127.0.0.1:{free_port()}/hook"), attempts=2)
    (d,) = n.send(MSG, [DE1], at=T0)
    assert d.status == "failed" and sleeps == [1]
    assert d.attempts[0].error.startswith("connection failed")


# ---------------------------------------------------------------- PagerDuty


def test_pagerduty_trigger_acknowledge_resolve_share_the_dedup_key(home, http_server):
    http_server.default = 202
    http_server.script = [500]
    n, sleeps = notifier(PagerDutyChannel("R0UTING-KEY", url=f"{http_server.url}/v2/enqueue"))
    n.send(MSG, [DE1], at=T0)
    for event in ("acknowledge", "resolve"):
        n.send(Message(alert_id="42", event=event, subject=event, body="", step=event), [DE1], at=T0)
    bodies = [r["json"] for r in http_server.requests]
    assert [b["event_action"] for b in bodies] == ["trigger", "trigger", "acknowledge", "resolve"]
    assert {b["dedup_key"] for b in bodies} == {"42"}
    assert {b["routing_key"] for b in bodies} == {"R0UTING-KEY"}
    trigger = bodies[1]["payload"]
    assert (trigger["severity"], trigger["component"], trigger["source"]) == (
        "critical",
        "profit_aggregate",
        "pipeline-maintenance-workbook",
    )
    assert trigger["custom_details"]["runbook"] == "notebooks/runbooks/profit/stale_data.ipynb"
    assert sleeps == [1]
    assert records("pagerduty") == [(1, 1, "retry"), (1, 2, "sent")]
    assert records("pagerduty", "resolve") == [(1, 1, "sent")]


# ---------------------------------------------------------------- SMTP


def test_email_one_mail_per_recipient_with_login(home, smtp_server):
    handler, port = smtp_server
    ch = EmailChannel(f"smtp://wb:pa55word@127.0.0.1:{port}", sender="data-workbook@example.com")
    n, sleeps = notifier(ch)
    deliveries = n.send(MSG, [DE1, DE2], at=T0)
    assert [d.status for d in deliveries] == ["sent", "sent"] and sleeps == []
    assert [m["to"] for m in handler.mails] == [["de1@example.com"], ["de2@example.com"]]
    mail = handler.mails[0]["message"]
    assert mail["Subject"] == MSG.subject and mail["From"] == "data-workbook@example.com"
    assert mail["X-Workbook-Alert"] == "42"
    assert "check: profit_aggregate.freshness" in mail.get_payload()
    assert handler.mails[0]["authenticated"] is True


def test_email_451_then_success_and_a_server_that_always_refuses(home, smtp_server):
    handler, port = smtp_server
    handler.script = ["451 4.3.0 try again later"]
    ch = EmailChannel(f"smtp://wb:pa55word@127.0.0.1:{port}", sender="data-workbook@example.com")
    n, sleeps = notifier(ch)
    (d,) = n.send(MSG, [DE1], at=T0)
    assert d.delivered and sleeps == [1] and len(handler.mails) == 1
    assert d.attempts[0].error.startswith("SMTP 451")

    handler.always = "554 5.7.1 rejected"
    (refused,) = n.send(MSG, [DE2], at=T0)
    assert refused.status == "gave_up" and len(refused.attempts) == 1  # 5xx: permanent
    assert all("pa55word" not in (r["error"] or "") for r in list_notifications(alert_id="42"))


def test_email_to_a_dead_server_is_retried(home):
    ch = EmailChannel(f"smtp://127.0.0.1:{free_port()}", sender="x@example.com", timeout=2)
    n, sleeps = notifier(ch, attempts=3)
    (d,) = n.send(MSG, [DE1], at=T0)
    assert d.status == "failed" and sleeps == [1, 2]
    assert d.attempts[-1].error.startswith("SMTP connection failed")


# ---------------------------------------------------------------- end to end


def test_escalation_pages_through_every_channel(home, http_server, smtp_server):
    """A Profit alert at 03:00: Slack, PagerDuty and email reach the on-call at once; ack and resolve close PD."""
    handler, port = smtp_server
    http_server.default = 202
    env = {
        "WORKBOOK_SLACK_WEBHOOK_URL": f"{http_server.url}/slack",
        "WORKBOOK_SMTP_URL": f"smtp://127.0.0.1:{port}",
        "WORKBOOK_PAGERDUTY_ROUTING_KEY": "KEY",
        "WORKBOOK_PAGERDUTY_URL": f"{http_server.url}/pd",
    }
    cfg = cfgmod.get()
    n = Notifier(channels_from_env(cfg.team.notify, env), policy=cfg.team.notify.retry, sleep=lambda s: None)
    opened = dt.datetime(2026, 11, 10, 3, 0, tzinfo=NY)
    store = escalation.MemoryAlerts().add(
        escalation.AlertRecord(
            "42", "profit_aggregate", "profit_aggregate.freshness", "critical", opened, "25 h old"
        )
    )
    entries = escalation.escalate(cfg, store, opened, notifier=n)
    notify = next(e for e in entries if e.step == "notify")
    assert (notify.who, notify.channel) == ("DE1", "console,warehouse,slack,email,pagerduty")
    assert [m["to"] for m in handler.mails] == [["de1@example.com"]]
    escalation.acknowledge(cfg, store, "42", at=opened + dt.timedelta(minutes=10), notifier=n)
    escalation.resolve(cfg, store, "42", note="fixed", at=opened + dt.timedelta(hours=1), notifier=n)
    pd = [r["json"]["event_action"] for r in http_server.requests if r["path"] == "/pd"]
    assert pd == ["trigger", "acknowledge", "resolve"]
    slack = [r["json"]["text"] for r in http_server.requests if r["path"] == "/slack"]
    assert slack[0].startswith("[critical] profit_aggregate: 25 h old (incident 1, alert 42)")
    assert slack[1].startswith("Acknowledged:") and slack[2].startswith("Resolved:")
    assert len(handler.mails) == 2  # the page and the resolution; no mail for the ack
    warehouse_rows = [r for r in list_notifications(alert_id="42") if r["channel"] == "warehouse"]
    assert {r["status"] for r in warehouse_rows} == {"sent"}
