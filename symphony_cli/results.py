"""Per-message results and the run summary."""

from __future__ import annotations

import dataclasses
import enum
import time
from collections import Counter


class Status(enum.StrEnum):
    """The outcome of one message."""

    SENT = "sent"
    WOULD_SEND = "would-send"  # dry run: the message would be inserted
    DUPLICATE = "duplicate"  # the key is active for the same content; message_id is the existing one
    REJECTED = "rejected"  # a duplicate, reported as an error because reject_duplicates is on
    CONFLICT = "conflict"  # the key is active for different content; nothing was inserted
    INVALID = "invalid"  # the message failed validation; nothing was sent
    FAILED = "failed"  # the store rejected the message or the chunk could not be written


# Statuses that leave the run's exit status at 0.
OK_STATUSES = frozenset({Status.SENT, Status.DUPLICATE, Status.WOULD_SEND})


@dataclasses.dataclass(slots=True)
class Result:
    """The outcome for one input message, matched to it by line (or API index)."""

    line: int
    status: Status
    message_id: int | None = None
    idempotency_key: str | None = None
    transport: str | None = None
    type: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in OK_STATUSES

    def to_dict(self) -> dict[str, object]:
        """Return the result as the JSON object that `--format jsonl` prints."""
        return {
            "line": self.line,
            "status": self.status.value,
            "message_id": self.message_id,
            "idempotency_key": self.idempotency_key,
            "transport": self.transport,
            "type": self.type,
            "error": self.error,
        }


@dataclasses.dataclass
class RunSummary:
    """Counts per status and why a run stopped early, if it did."""

    counts: Counter[Status] = dataclasses.field(default_factory=Counter)
    started: float = dataclasses.field(default_factory=time.monotonic)
    elapsed: float = 0.0
    stopped_reason: str | None = None  # set when the run ended before the end of the input
    last_line: int = 0

    def add(self, result: Result) -> None:
        self.counts[result.status] += 1
        self.last_line = max(self.last_line, result.line)

    def finish(self) -> None:
        self.elapsed = time.monotonic() - self.started

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def all_ok(self) -> bool:
        return all(status in OK_STATUSES for status, count in self.counts.items() if count)

    @property
    def error_count(self) -> int:
        return sum(count for status, count in self.counts.items() if status not in OK_STATUSES)
