"""In-process status of this worker's jobs and sinks, read by the web views."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SinkStatus:
    name: str
    batches: int = 0
    changes_applied: int = 0
    dead_letters: int = 0
    last_write_at: float | None = None
    last_error: str | None = None
    retries: int = 0

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class WorkerStatus:
    jobs: dict[str, Any] = field(default_factory=dict)  # name -> sources.job.JobStatus
    sinks: dict[str, SinkStatus] = field(default_factory=dict)


STATUS = WorkerStatus()
