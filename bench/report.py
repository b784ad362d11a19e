"""The human table and the one-line JSON summary of a run."""

from __future__ import annotations

import json
from typing import Any

KEYS = (
    "startup_s",
    "snapshot_rows_per_s",
    "cdc_events_per_s",
    "latency_ms_p50",
    "latency_ms_p99",
    "failover_s",
    "baseline_select_rows_per_s",
    "baseline_binlog_rows_per_s",
    "baseline_produce_msgs_per_s",
    "baseline_copy_rows_per_s",
    "peak_rss_mb",
    "rss_growth_pct",
    "correct",
)

# name, how it is computed, the target it must meet
TARGETS: tuple[tuple[str, str, str], ...] = (
    ("snapshot_vs_select", "snapshot_rows_per_s / baseline_select_rows_per_s", ">= 0.5"),
    ("cdc_vs_binlog", "cdc_events_per_s / baseline_binlog_rows_per_s", ">= 0.8"),
    ("latency_ms_p99", "at the latency rate", "< 500"),
    ("failover_s", "SIGKILL of the job runner until changes flow", "< 15"),
    ("rss_growth_pct", "workers over the soak", "<= 10"),
)


def _ratio(a: Any, b: Any) -> float | None:
    return round(a / b, 3) if isinstance(a, int | float) and b else None


def _meets(value: Any, rule: str) -> bool | None:
    if value is None:
        return None
    op, _, limit = rule.partition(" ")
    x = float(limit)
    return {">=": value >= x, "<": value < x, "<=": value <= x}[op]


def summary(
    results: dict[str, Any],
    correct: dict[str, bool],
    peak_rss: dict[str, float],
    profiles: dict[str, Any],
    extra: dict[str, Any],
) -> dict[str, Any]:
    out: dict[str, Any] = {k: results.get(k) for k in KEYS}
    out["peak_rss_mb"] = {k: round(v, 1) for k, v in peak_rss.items()} or None
    out["peak_rss_mb_max"] = round(max(peak_rss.values()), 1) if peak_rss else None
    out["correct"] = bool(correct) and all(correct.values()) and not extra.get("error")
    out["correct_by_phase"] = correct
    out["snapshot_vs_select"] = _ratio(
        results.get("snapshot_rows_per_s"), results.get("baseline_select_rows_per_s")
    )
    out["cdc_vs_binlog"] = _ratio(
        results.get("cdc_events_per_s"), results.get("baseline_binlog_rows_per_s")
    )
    out["snapshot_vs_copy"] = _ratio(
        results.get("snapshot_rows_per_s"), results.get("baseline_copy_rows_per_s")
    )
    out["failover_survivor_crashed"] = results.get("failover_survivor_crashed")
    out["targets_met"] = {name: _meets(out.get(name), rule) for name, _, rule in TARGETS}
    if out["failover_survivor_crashed"]:
        out["targets_met"]["failover_s"] = False  # it flowed again only after a restart
    out["us_per_record_by_part"] = {
        phase: p.get("us_per_record") for phase, p in profiles.items() if "us_per_record" in p
    } or None
    out.update(extra)
    return out


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    if isinstance(v, dict):
        return ", ".join(f"{k} {_fmt(x)}" for k, x in v.items())
    return str(v)


def table(out: dict[str, Any], details: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str]] = [("metric", "value", "target / note")]
    verdict = {True: "ok", False: "MISSED", None: ""}
    notes = {name: f"{rule}  {verdict[out['targets_met'].get(name)]}" for name, _, rule in TARGETS}
    for k in KEYS:
        rows.append((k, _fmt(out.get(k)), notes.get(k, "")))
    for k in ("snapshot_vs_select", "cdc_vs_binlog", "snapshot_vs_copy", "peak_rss_mb_max"):
        rows.append((k, _fmt(out.get(k)), notes.get(k, "")))
    lat = details.get("latency") or {}
    if lat:
        rows.append(("latency rate achieved", _fmt(lat.get("rate_achieved")), "changes/s"))
        rows.append(("latency changes not seen", _fmt(lat.get("missing")), ""))
    for phase, parts in (out.get("us_per_record_by_part") or {}).items():
        rows.append((f"{phase} CPU µs/record by part", _fmt(parts), "worker process"))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    lines = [f"{a:<{w0}}  {b:>{w1}}  {c}" for a, b, c in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def json_line(out: dict[str, Any]) -> str:
    return json.dumps(out, separators=(",", ":"), default=str)
