"""Web views of each worker (JSON): health, status, and partition progress.

- ``GET /sluice/health`` → 200 when this worker is ready (joined, recovered), else 503.
- ``GET /sluice/status`` → readiness, assigned partitions, this worker's source jobs (phase,
  position, counts) and sinks (changes applied, dead letters, retries).
- ``GET /sluice/progress`` → the partition-progress table rows held by this worker.
Read-only; views that change anything will require ``SLUICE_ADMIN_TOKEN``.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from faust.web import Request, Response, View

from app.main import app
from app.status import STATUS


def is_ready() -> bool:
    recovery: Any = app.tables.recovery  # type: ignore[attr-defined]
    return (
        app.in_worker
        and not app.rebalancing
        and recovery.completed.is_set()
        and not recovery.in_recovery
    )


def assignment() -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    try:
        for tp in app.consumer.assignment():
            out[tp.topic].append(tp.partition)
    except Exception:  # consumer not started yet
        return {}
    return {t: sorted(p) for t, p in sorted(out.items())}


@app.page("/sluice/health")
class Health(View):
    async def get(self, request: Request) -> Response:
        ready = is_ready()
        return self.json({"ready": ready}, status=200 if ready else 503)


@app.page("/sluice/status")
class Status(View):
    async def get(self, request: Request) -> Response:
        body: dict[str, Any] = {
            "ready": is_ready(),
            "app_id": app.conf.id,
            "worker": app.conf.canonical_url.human_repr() if app.conf.canonical_url else None,
            "processing_guarantee": str(app.conf.processing_guarantee.value),
            "assignment": assignment(),
            "jobs": {name: s.to_json() for name, s in STATUS.jobs.items()},
            "sinks": {name: s.to_json() for name, s in STATUS.sinks.items()},
        }
        return self.json(body)


@app.page("/sluice/progress")
class Progress(View):
    async def get(self, request: Request) -> Response:
        from tables.partition_progress import partition_progress

        return self.json({k: v for k, v in partition_progress.items()})
