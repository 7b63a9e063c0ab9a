"""The channels: console/log, warehouse inbox, Slack incoming webhook, email over SMTP, PagerDuty.

Secrets (the webhook URL, SMTP password, PagerDuty routing key) are handed to a channel by
:func:`channels_from_env` from the environment and scrubbed from every error it reports.
"""

from __future__ import annotations

import json
import logging
import os
import smtplib
import ssl
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from email.message import EmailMessage
from typing import Any, TextIO
from urllib.parse import parse_qs, unquote, urlsplit

from helpers.core.config import NotifyConfig
from helpers.oncall.notify.base import BaseChannel, Channel, DeliveryError, Message, Recipient, plain_text

log = logging.getLogger("helpers.oncall.notify")

PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"
ENV_SLACK = "WORKBOOK_SLACK_WEBHOOK_URL"
ENV_SMTP = "WORKBOOK_SMTP_URL"
ENV_PD_KEY = "WORKBOOK_PAGERDUTY_ROUTING_KEY"
ENV_PD_URL = "WORKBOOK_PAGERDUTY_URL"


class ConsoleChannel(BaseChannel):
    """One line per message on a stream (stderr by default) and in the ``helpers.oncall.notify`` log."""

    name = "console"
    broadcast = True

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__()
        self.stream = stream

    def send(self, message: Message, recipients: Sequence[Recipient]) -> str:
        who = ", ".join(r.key for r in recipients)
        line = f"[notify {message.event}] alert {message.alert_id} -> {who}: {message.subject}"
        log.info(line)
        print(line, file=self.stream or sys.stderr)
        return "printed"


class WarehouseChannel(BaseChannel):
    """The warehouse inbox: the ``notifications`` row written for every delivery *is* the message."""

    name = "warehouse"

    def send(self, message: Message, recipients: Sequence[Recipient]) -> str:
        return "stored"


def post_json(url: str, payload: Mapping[str, Any], *, timeout: float) -> tuple[int, str]:
    """POST ``payload`` as JSON; a 2xx returns (status, body), anything else raises DeliveryError.

    429 and 5xx are retryable, other 4xx are not (the URL or key is wrong); a refused or timed-out
    connection is retryable.
    """
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "pipeline-maintenance-workbook"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read(4000).decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        body = e.read(300).decode("utf-8", "replace").strip()
        raise DeliveryError(
            f"HTTP {e.code} {e.reason}" + (f": {body}" if body else ""),
            retryable=e.code == 429 or e.code >= 500,
        ) from None
    except urllib.error.URLError as e:
        raise DeliveryError(f"connection failed: {e.reason}", retryable=True) from None
    except (TimeoutError, OSError) as e:
        raise DeliveryError(f"connection failed: {type(e).__name__}: {e}", retryable=True) from None


class SlackChannel(BaseChannel):
    """A Slack incoming webhook: one post per message, mentioning each recipient's handle."""

    name = "slack"
    broadcast = True

    def __init__(self, webhook_url: str, *, timeout: float = 10.0) -> None:
        super().__init__(secrets=[webhook_url])
        self.url = webhook_url
        self.timeout = timeout

    def send(self, message: Message, recipients: Sequence[Recipient]) -> str:
        text = plain_text(message, recipients, mentions=True)
        status, body = post_json(self.url, {"text": text}, timeout=self.timeout)
        return f"HTTP {status} {body[:40]}".strip()


class PagerDutyChannel(BaseChannel):
    """PagerDuty Events API v2: trigger, acknowledge and resolve with ``dedup_key`` = the alert id.

    Every ladder step re-sends ``trigger`` with the same key, which PagerDuty folds into the one
    open incident; cross-team messages are not paged (the contact is not on our service).
    """

    name = "pagerduty"
    broadcast = True
    events = ("trigger", "renotify", "escalate", "acknowledge", "resolve")

    def __init__(self, routing_key: str, *, url: str = PAGERDUTY_URL, timeout: float = 10.0) -> None:
        super().__init__(secrets=[routing_key])
        self.routing_key = routing_key
        self.url = url
        self.timeout = timeout

    def payload(self, message: Message, recipients: Sequence[Recipient]) -> dict[str, Any]:
        """The Events v2 body for ``message``."""
        action = message.event if message.event in ("acknowledge", "resolve") else "trigger"
        body: dict[str, Any] = {
            "routing_key": self.routing_key,
            "event_action": action,
            "dedup_key": message.alert_id,
        }
        if action == "trigger":
            body["client"] = "Pipeline Maintenance Workbook"
            body["payload"] = {
                "summary": message.subject[:1024],
                "source": "pipeline-maintenance-workbook",
                "severity": message.severity
                if message.severity in ("critical", "warning", "info")
                else "error",
                "component": message.pipeline or None,
                "class": message.step or None,
                "custom_details": {
                    "notify": [r.label for r in recipients],
                    "step": message.step,
                    "runbook": message.runbook,
                    "details": message.body,
                },
            }
        return body

    def send(self, message: Message, recipients: Sequence[Recipient]) -> str:
        status, body = post_json(self.url, self.payload(message, recipients), timeout=self.timeout)
        return f"HTTP {status}"


class EmailChannel(BaseChannel):
    """Email over SMTP (``smtplib``): one mail per recipient with an address.

    Configured by a URL: ``smtp://[user[:password]@]host[:port][?starttls=true&from=addr]``
    (``smtps://`` for TLS from the first byte). Without ``starttls`` the session stays plain,
    which suits a local relay only.
    """

    name = "email"
    events = ("trigger", "renotify", "escalate", "cross_team", "resolve")

    def __init__(self, smtp_url: str, *, sender: str, timeout: float = 10.0) -> None:
        parts = urlsplit(smtp_url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError(
                f"{ENV_SMTP}: expected smtp://[user:password@]host[:port][?starttls=true], got a {parts.scheme or 'schemeless'} URL"
            )
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.host = parts.hostname
        self.ssl = parts.scheme == "smtps"
        self.port = parts.port or (465 if self.ssl else 25)
        self.user = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.starttls = query.get("starttls", "false").lower() in ("1", "true", "yes")
        self.sender = query.get("from", sender)
        self.timeout = timeout
        super().__init__(secrets=[self.password or "", smtp_url])

    def reaches(self, recipient: Recipient) -> bool:
        return bool(recipient.email)

    def send(self, message: Message, recipients: Sequence[Recipient]) -> str:
        mail = EmailMessage()
        mail["From"] = self.sender
        mail["To"] = ", ".join(r.email for r in recipients if r.email)
        mail["Subject"] = message.subject
        mail["X-Workbook-Alert"] = message.alert_id
        mail.set_content(plain_text(message, recipients))
        try:
            cls = smtplib.SMTP_SSL if self.ssl else smtplib.SMTP
            with cls(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls and not self.ssl:
                    smtp.starttls(context=ssl.create_default_context())
                if self.user:
                    smtp.login(self.user, self.password or "")
                refused = smtp.send_message(mail)
        except smtplib.SMTPResponseException as e:
            # 4xx: try later; 5xx: the server will not take it.
            raise DeliveryError(
                f"SMTP {e.smtp_code}: {e.smtp_error!r}", retryable=e.smtp_code < 500
            ) from None
        except smtplib.SMTPRecipientsRefused as e:
            raise DeliveryError(f"SMTP recipients refused: {sorted(e.recipients)}", retryable=False) from None
        except (smtplib.SMTPException, OSError) as e:
            raise DeliveryError(f"SMTP connection failed: {type(e).__name__}: {e}", retryable=True) from None
        if refused:
            raise DeliveryError(f"SMTP refused {sorted(refused)}", retryable=False)
        return f"sent via {self.host}:{self.port}"


def channels_from_env(cfg: NotifyConfig, env: Mapping[str, str] | None = None) -> list[Channel]:
    """The configured channels whose secrets are present in ``env`` (default ``os.environ``).

    Console and warehouse need none; Slack needs ``WORKBOOK_SLACK_WEBHOOK_URL``, email
    ``WORKBOOK_SMTP_URL``, PagerDuty ``WORKBOOK_PAGERDUTY_ROUTING_KEY`` (and optionally
    ``WORKBOOK_PAGERDUTY_URL``).
    """
    env = os.environ if env is None else env
    out: list[Channel] = []
    for name in cfg.channels:
        if name == "console":
            out.append(ConsoleChannel())
        elif name == "warehouse":
            out.append(WarehouseChannel())
        elif name == "slack" and env.get(ENV_SLACK):
            out.append(SlackChannel(env[ENV_SLACK], timeout=cfg.timeout_seconds))
        elif name == "email" and env.get(ENV_SMTP):
            out.append(EmailChannel(env[ENV_SMTP], sender=cfg.email_from, timeout=cfg.timeout_seconds))
        elif name == "pagerduty" and env.get(ENV_PD_KEY):
            out.append(
                PagerDutyChannel(
                    env[ENV_PD_KEY], url=env.get(ENV_PD_URL) or PAGERDUTY_URL, timeout=cfg.timeout_seconds
                )
            )
    return out
