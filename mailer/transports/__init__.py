"""Transports: where messages go. One small async protocol, two implementations."""

from mailer.transports.base import Channel, ChannelBroken, Reply, Transport

__all__ = ["Channel", "ChannelBroken", "Reply", "Transport"]
