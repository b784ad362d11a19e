"""The sluice Faust app: ``faust -A app worker`` runs a worker; start more to scale out.

``app.app`` (the ``faust.App``) is built on first use by app/main.py, so importing a helper module
such as ``app.errors`` or ``app.broker`` neither reads the pipeline file nor builds the app.
Agents, tables and views import what they need from app.main.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import faust

    app: faust.App


def __getattr__(name: str) -> Any:
    if name == "app":
        from app import main

        return main.app
    raise AttributeError(f"module 'app' has no attribute {name!r}")
