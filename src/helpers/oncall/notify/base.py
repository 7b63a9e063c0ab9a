"""What a notification is, who receives it, and what a channel must do.

A :class:`Channel` sends one :class:`Message` to a group of :class:`Recipient` s. A *broadcast*
channel (a Slack channel post, a PagerDuty event, the console) sends once per message naming
everyone; the others (email, the warehouse inbox) send once per recipient. A channel signals a
failed send by raising :class:`DeliveryError`, saying whether trying again may help (a 5xx or a
refused connection) or not (a 4xx: the URL or key is wrong).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

from helpers.core.secrets import redact

Event = Literal["trigger", "renotify", "escalate", "cross_team", "acknowledge", "resolve"]
EVENTS: tuple[str, ...] = ("trigger", "renotify", "escalate", "cross_team", "acknowledge", "resolve")


@dataclass(frozen=True)
class Recipient:
    """A person to notify: an engineer (``DE1``), the team lead (``lead``) or a contact (``contact:finance``)."""

    key: str
    name: str
    email: str | None = None
    slack: str | None = None
    role: str = ""  # why they get it: on_call, backup, owner, month_end, secondary, lead, cross_team

    @property
    def label(self) -> str:
        return f"{self.key} ({self.name})"

    @property
    def mention(self) -> str:
        """How a chat post names them: their Slack handle, else their name."""
        return self.slack or self.name


@dataclass(frozen=True)
class Message:
    """One notification about one alert: which ladder step, the text, and what PagerDuty needs."""

    alert_id: str
    event: str  # one of EVENTS
    subject: str
    body: str
    pipeline: str = ""
    severity: str = "warning"
    step: str = ""  # the timeline step key, e.g. "notify", "renotify:2", "secondary"
    runbook: str | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Message:
        return cls(**data)


class DeliveryError(Exception):
    """A send failed; ``retryable`` says whether another attempt may succeed."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class Channel(Protocol):
    """A way to reach people. ``send`` returns a short receipt or raises :class:`DeliveryError`."""

    name: str
    broadcast: bool

    def wants(self, message: Message) -> bool: ...

    def reaches(self, recipient: Recipient) -> bool: ...

    def send(self, message: Message, recipients: Sequence[Recipient]) -> str: ...

    def scrub(self, text: str) -> str: ...


class BaseChannel:
    """Defaults for channels: every event, every recipient, and scrubbing of the channel's secrets."""

    name = "base"
    broadcast = False
    events: tuple[str, ...] = EVENTS

    def __init__(self, *, secrets: Sequence[str] = ()) -> None:
        self._secrets = [s for s in secrets if s]

    def wants(self, message: Message) -> bool:
        return message.event in self.events

    def reaches(self, recipient: Recipient) -> bool:
        return True

    def send(self, message: Message, recipients: Sequence[Recipient]) -> str:  # pragma: no cover
        raise NotImplementedError

    def scrub(self, text: str) -> str:
        """``text`` without this channel's secrets (webhook URL, password, routing key)."""
        return redact(text, sorted(self._secrets, key=len, reverse=True))[0]


def plain_text(message: Message, recipients: Sequence[Recipient], *, mentions: bool = False) -> str:
    """The message as a few lines of text, naming who it is for."""
    who = ", ".join(r.mention if mentions else r.label for r in recipients)
    lines = [message.subject, f"for: {who}" if who else "", message.body]
    return "\n".join(line for line in lines if line)
