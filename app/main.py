"""Builds the Faust app from typed settings (app/settings.py) and the pipeline file
(app/pipeline.py). The agents, tables and web views register themselves on import at the bottom
of this module; ``import app`` exposes the result lazily (app/__init__.py).
"""

from __future__ import annotations

import faust

from app.errors import ConfigError
from app.faust_compat import apply_faust_fixes
from app.pipeline import Pipeline, load_pipeline
from app.settings import Settings, get_settings

settings: Settings = get_settings()
if settings.embedded_broker:
    from app.kafka_compat import enable_tansu_compat

    enable_tansu_compat()
apply_faust_fixes(fetch_max_wait_ms=settings.worker_fetch_max_wait_ms)

pipeline: Pipeline = load_pipeline(settings.pipeline_file)
_unknown = {n.strip() for n in (settings.sinks or "").split(",") if n.strip()} - {
    s.name for s in pipeline.sinks
}
if _unknown:
    raise ConfigError(
        f"SLUICE_SINKS names sinks not in {settings.pipeline_file}: {sorted(_unknown)}"
    )

app = faust.App(
    settings.app_id,
    broker=settings.broker_url,
    store=settings.store,
    processing_guarantee=settings.processing_guarantee,
    topic_partitions=settings.topic_partitions,
    topic_replication_factor=1,
    broker_session_timeout=settings.session_timeout_s,
    broker_heartbeat_interval=settings.heartbeat_interval_s,
    broker_commit_interval=settings.commit_interval_s,
    consumer_auto_offset_reset="earliest",
    stream_wait_empty=True,
    web_enabled=True,
    # Table contents are served by our own views; the built-in ones expose everything.
    web_tables_enabled=False,
)

from agents import changes, delivery, discovery, jobs  # noqa: E402,F401  (register agents)
from app import views  # noqa: E402,F401  (register web views)

__all__ = ["app", "pipeline", "settings"]
