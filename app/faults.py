"""Fault injection for crash tests: exit abruptly at a named point, like a SIGKILL there.

Off unless ``SLUICE_FAULT_INJECTION='<point>:<n>'`` is set; then the n-th time the worker reaches
``<point>`` it ends with ``os._exit`` (no cleanup, no commit, no leave-group).
"""

from __future__ import annotations

import logging
import os
from collections import Counter

from app.settings import get_settings

logger = logging.getLogger(__name__)

_reached: Counter[str] = Counter()


def _target() -> tuple[str, int] | None:
    spec = get_settings().fault_injection
    if not spec:
        return None
    point, _, n = spec.partition(":")
    return point, int(n or 1)


def checkpoint(point: str) -> None:
    target = _target()
    if target is None or target[0] != point:
        return
    _reached[point] += 1
    if _reached[point] >= target[1]:
        logger.critical("fault injection: exiting abruptly at %s (#%d)", point, _reached[point])
        logging.shutdown()
        os._exit(137)
