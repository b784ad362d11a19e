"""Web views of each worker (JSON): health, status, and partition progress.

- ``GET /sluice/health`` → 200 when this worker is ready (joined, recovered), else 503.
- ``GET /sluice/status`` → readiness, assigned partitions, this worker's source jobs (phase,
  position, counts) and sinks (changes applied, dead letters, retries).
- ``GET /sluice/progress`` → the partition-progress table rows held by this worker.
- ``POST /sluice/resnapshot`` (``Authorization: Bearer $SLUICE_ADMIN_TOKEN``) with
  ``{"source": ..., "table": "db.table", "from": [key...], "to": [key...]}`` (bounds optional,
  inclusive) → 202: the job reads those rows again while it streams (sources/resnapshot.py); its
  progress shows in the status view under ``jobs.<source>.on_demand``. Without a configured token
  every changing view answers 403; with a wrong or missing one, 401.
"""

from __future__ import annotations

import hmac
from collections import defaultdict
from typing import Any

import orjson
from faust.web import Request, Response, View

from app.errors import ConfigError
from app.main import app, pipeline, settings
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


def refusal(request: Request) -> tuple[int, str] | None:
    """Why a changing request is refused (status, reason), or None when its token is right."""
    if settings.admin_token is None:
        return 403, "changing views are off: set SLUICE_ADMIN_TOKEN on the workers"
    given = request.headers.get("Authorization", "")
    expected = f"Bearer {settings.admin_token.get_secret_value()}"
    if not hmac.compare_digest(given.encode(), expected.encode()):
        return 401, "a valid 'Authorization: Bearer <SLUICE_ADMIN_TOKEN>' header is needed"
    return None


@app.page("/sluice/resnapshot")
class Resnapshot(View):
    async def post(self, request: Request) -> Response:
        from agents.jobs import send_command
        from sources.resnapshot import ResnapshotRequest

        refused = refusal(request)
        if refused is not None:
            return self.json({"error": refused[1]}, status=refused[0])
        try:
            wanted = ResnapshotRequest.from_json(orjson.loads(await request.read()), pipeline)
        except (ConfigError, orjson.JSONDecodeError) as exc:
            return self.json({"error": str(exc)}, status=400)
        await send_command(wanted)
        return self.json({"accepted": wanted.name, "from": wanted.key_from, "to": wanted.key_to},
                         status=202)  # fmt: skip
