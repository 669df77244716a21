"""Delivering e-mails and phone OTPs: a pluggable sender.

The portal never talks to a mail server or an SMS gateway itself; it hands
messages to a :class:`Sender`. :class:`OutboxSender` appends them to a JSON
Lines file (the demo and QA read it), :class:`MemorySender` keeps them in a
list (tests).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Protocol

from vtoken.errors import StorageError

#: The outbox of a database ``<db>`` is ``<db>.outbox.jsonl`` (``vtoken portal`` and ``vtoken demo`` agree on it).
OUTBOX_SUFFIX = ".outbox.jsonl"


def outbox_path(db: str | os.PathLike[str]) -> Path:
    """The default outbox file of the database ``db``."""
    return Path(f"{os.fspath(db)}{OUTBOX_SUFFIX}")


@dataclasses.dataclass(frozen=True)
class Message:
    """One message: channel ``email``, ``sms`` or ``voice``."""

    channel: str
    to: str
    subject: str
    body: str
    sent_ns: int


class Sender(Protocol):
    """Where the portal's messages go."""

    def send(self, message: Message) -> None:
        """Deliver ``message`` (or raise)."""
        ...


class MemorySender:
    """Keeps every message in :attr:`sent`."""

    def __init__(self) -> None:
        self.sent: list[Message] = []

    def send(self, message: Message) -> None:
        self.sent.append(message)

    def last(self, channel: str, to: str) -> Message:
        """The latest message on ``channel`` to ``to``."""
        for message in reversed(self.sent):
            if message.channel == channel and message.to == to:
                return message
        raise LookupError(f"no {channel} message to {to}")


class OutboxSender:
    """Appends each message as one JSON line to a file (created with mode 0600)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def send(self, message: Message) -> None:
        line = json.dumps(dataclasses.asdict(message), sort_keys=True) + "\n"
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, line.encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise StorageError(f"cannot write outbox {self.path}: {exc.strerror}") from None

    def messages(self) -> list[Message]:
        """Every message in the outbox, oldest first."""
        if not self.path.exists():
            return []
        return [Message(**json.loads(line)) for line in self.path.read_text("utf-8").splitlines() if line.strip()]
