"""Notifications through pluggable channels, retried with backoff and recorded in ``notifications``.

Channels: console/log and the warehouse inbox (always on), a Slack incoming webhook, email over
SMTP, and the PagerDuty Events API v2, each enabled by its secret in the environment
(:func:`channels_from_env`). :class:`Notifier` sends one message on every channel that wants it.
"""

from helpers.oncall.notify.base import BaseChannel, Channel, DeliveryError, Message, Recipient
from helpers.oncall.notify.channels import (
    ConsoleChannel,
    EmailChannel,
    PagerDutyChannel,
    SlackChannel,
    WarehouseChannel,
    channels_from_env,
)
from helpers.oncall.notify.delivery import (
    Attempt,
    Delivery,
    Notifier,
    backoff_seconds,
    deliver,
    list_notifications,
    notifications,
)

__all__ = [
    "Attempt",
    "BaseChannel",
    "Channel",
    "ConsoleChannel",
    "Delivery",
    "DeliveryError",
    "EmailChannel",
    "Message",
    "Notifier",
    "PagerDutyChannel",
    "Recipient",
    "SlackChannel",
    "WarehouseChannel",
    "backoff_seconds",
    "channels_from_env",
    "deliver",
    "list_notifications",
    "notifications",
]
