"""The sync error tree: one root, specific subclasses carrying the facts."""

from __future__ import annotations


class SyncError(Exception):
    """Root of every error raised by cloud_sync."""


class MessageRefused(SyncError):
    """A message was not used: unknown version, bad signature, wrong topic, malformed body."""

    def __init__(self, topic: str, reason: str) -> None:
        super().__init__(f"message on {topic} refused: {reason}")
        self.topic = topic
        self.reason = reason


class BatchError(SyncError):
    """An op batch cannot be put on the wire (not one contiguous, linked run of one chain)."""


class StoreError(SyncError):
    """The cloud store refused or failed an operation."""


class ConfigError(SyncError):
    """A settings file is missing, unreadable or invalid."""


class ActionRefused(SyncError):
    """An operator action was refused (unknown account, receipt used elsewhere, a move a card
    may not make...): nothing was written."""
