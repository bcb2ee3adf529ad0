"""The peer benchmark's report: the ratios, the Markdown table and the chart of a JSON record.

Run: python bench/peers/report.py JSON [--png docs/img/peers.png] [--markdown FILE]

Prints the Markdown table.  The chart needs matplotlib, which is in the peers'
environment (``var/peers-venv/bin/python bench/peers/report.py ...``); the rest
needs only the standard library, so the harness imports this module too.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

WORKLOAD = (
    "Drain: N no-op jobs are enqueued with no worker running (in batches where the "
    "library allows), then one worker process with T threads starts; jobs/s = (N - 1) / "
    "(last job start - first job start). Latency: SAMPLES jobs put one at a time, each "
    "INTERVAL_MS after the one before, from another process into the idle worker (its "
    "processes under a tenth of a core); put (committed or acknowledged) to job start. "
    "Every job appends one line (its start time) to a file "
    "with one os.write. Servers (Redis without persistence, PostgreSQL with default "
    "settings including fsync, ZEO) run on 127.0.0.1 on the same machine."
)

#: (key, numerator, denominator, what is compared); a side is ("target", NAME, FIGURE)
#: or ("raw", STORAGE).  FIGURE is "jobs_per_second" or "p50"/"p99" (latency, ms).
RATIOS: list[tuple[str, tuple[str, ...], tuple[str, ...], str]] = [
    (
        "embedded/huey",
        ("target", "zasync-embedded", "jobs_per_second"),
        ("target", "huey", "jobs_per_second"),
        "jobs/s",
    ),
    (
        "embedded/dramatiq",
        ("target", "zasync-embedded", "jobs_per_second"),
        ("target", "dramatiq", "jobs_per_second"),
        "jobs/s",
    ),
    (
        "zeo1/celery",
        ("target", "zasync-zeo-1", "jobs_per_second"),
        ("target", "celery", "jobs_per_second"),
        "jobs/s",
    ),
    (
        "zeo2/zeo1",
        ("target", "zasync-zeo-2", "jobs_per_second"),
        ("target", "zasync-zeo-1", "jobs_per_second"),
        "jobs/s",
    ),
    (
        "pg2/pg1",
        ("target", "zasync-pg-2", "jobs_per_second"),
        ("target", "zasync-pg-1", "jobs_per_second"),
        "jobs/s",
    ),
    (
        "pg1/procrastinate",
        ("target", "zasync-pg-1", "jobs_per_second"),
        ("target", "procrastinate", "jobs_per_second"),
        "jobs/s",
    ),
    (
        "pg1/dbos",
        ("target", "zasync-pg-1", "jobs_per_second"),
        ("target", "dbos", "jobs_per_second"),
        "jobs/s",
    ),
    (
        "embedded/raw-filestorage",
        ("target", "zasync-embedded", "jobs_per_second"),
        ("raw", "filestorage"),
        "jobs/s per raw commit/s",
    ),
    (
        "zeo1/raw-zeo",
        ("target", "zasync-zeo-1", "jobs_per_second"),
        ("raw", "zeo"),
        "jobs/s per raw commit/s",
    ),
    (
        "pg1/raw-relstorage-1conn",
        ("target", "zasync-pg-1", "jobs_per_second"),
        ("raw", "relstorage_1conn"),
        "jobs/s per raw commit/s",
    ),
    (
        "raw-relstorage-4conn/1conn",
        ("raw", "relstorage_4conn"),
        ("raw", "relstorage_1conn"),
        "commits/s",
    ),
    (
        "embedded-batch/huey",
        ("target", "zasync-embedded-batch", "jobs_per_second"),
        ("target", "huey", "jobs_per_second"),
        "jobs/s",
    ),
    (
        "embedded-batch/dramatiq",
        ("target", "zasync-embedded-batch", "jobs_per_second"),
        ("target", "dramatiq", "jobs_per_second"),
        "jobs/s",
    ),
    (
        "zeo1-batch/celery",
        ("target", "zasync-zeo-1-batch", "jobs_per_second"),
        ("target", "celery", "jobs_per_second"),
        "jobs/s",
    ),
    (
        "zeo2-batch/zeo1-batch",
        ("target", "zasync-zeo-2-batch", "jobs_per_second"),
        ("target", "zasync-zeo-1-batch", "jobs_per_second"),
        "jobs/s",
    ),
    (
        "pg1-batch/procrastinate",
        ("target", "zasync-pg-1-batch", "jobs_per_second"),
        ("target", "procrastinate", "jobs_per_second"),
        "jobs/s",
    ),
    (
        "pg1-batch/raw-relstorage-1conn",
        ("target", "zasync-pg-1-batch", "jobs_per_second"),
        ("raw", "relstorage_1conn"),
        "jobs/s per raw commit/s",
    ),
    (
        "latency p50 embedded/celery",
        ("target", "zasync-embedded", "p50"),
        ("target", "celery", "p50"),
        "p50 ms",
    ),
    (
        "latency p50 zeo1/celery",
        ("target", "zasync-zeo-1", "p50"),
        ("target", "celery", "p50"),
        "p50 ms",
    ),
    (
        "latency p50 embedded/huey",
        ("target", "zasync-embedded", "p50"),
        ("target", "huey", "p50"),
        "p50 ms",
    ),
    (
        "latency p50 pg1/procrastinate",
        ("target", "zasync-pg-1", "p50"),
        ("target", "procrastinate", "p50"),
        "p50 ms",
    ),
    (
        "latency p99 embedded/celery",
        ("target", "zasync-embedded", "p99"),
        ("target", "celery", "p99"),
        "p99 ms",
    ),
]


def figure(summary: dict[str, Any], side: tuple[str, ...]) -> float | None:
    """One figure of a summary (the ``median`` of a record), or None if missing or failed."""
    if side[0] == "raw":
        value = summary.get("raw_commits_per_second", {}).get(side[1])
    else:
        target = summary.get("targets", {}).get(side[1])
        if target is None or not str(target.get("status", "")).startswith("ok"):
            return None
        if side[2] in ("p50", "p99", "max"):
            value = (target.get("latency_ms") or {}).get(side[2])
        else:
            value = target.get(side[2])
    return float(value) if isinstance(value, int | float) else None


def ratios(summary: dict[str, Any]) -> dict[str, float | None]:
    """Every ratio of :data:`RATIOS` (None where a side is missing, failed or zero)."""
    out: dict[str, float | None] = {}
    for key, top, bottom, _ in RATIOS:
        a, b = figure(summary, top), figure(summary, bottom)
        out[key] = round(a / b, 3) if a is not None and b else None
    return out


def _number(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def target_rows(summary: dict[str, Any]) -> list[str]:
    """The per-target table of one summary (a run or the median), in Markdown."""
    rows = [
        "| target | backend | concurrency | jobs/s | drain s | spawn to last s "
        "| peak RSS MiB | p50 ms | p99 ms | max ms | put ms | status |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for name, t in summary["targets"].items():
        status = str(t.get("status"))
        if not status.startswith("ok"):
            reason = str(t.get("reason", "")).replace("|", "/")
            rows.append(
                f"| {name} | {t.get('backend', '')} | {t.get('concurrency', '')} "
                f"| - | - | - | - | - | - | - | - | failed: {reason} |"
            )
            continue
        latency = t.get("latency_ms") or {}
        rows.append(
            f"| {name} | {t.get('backend', '')} | {t.get('concurrency', '')} "
            f"| {_number(t.get('jobs_per_second'))} | {_number(t.get('drain_seconds'), 2)} "
            f"| {_number(t.get('spawn_to_last_seconds'), 2)} "
            f"| {_number(t.get('peak_rss_mb'))} | {_number(latency.get('p50'), 1)} "
            f"| {_number(latency.get('p99'), 1)} | {_number(latency.get('max'), 1)} "
            f"| {_number(latency.get('put_p50'), 1)} | {status} |"
        )
    return rows


def title(record: dict[str, Any]) -> str:
    """One line: jobs, threads, samples and the machine."""
    p, m = record["parameters"], record["machine"]
    return (
        f"{p['jobs']:,} no-op jobs, {p['threads']} threads per worker, "
        f"{p['samples']} latency samples {p['interval_ms']:g} ms apart; "
        f"{m.get('cpu_count')} CPUs ({m.get('cpu_model')}), Python {m.get('python')}"
    )


def markdown(record: dict[str, Any]) -> str:
    """The whole report of a record in Markdown: workload, tables, raw rates, ratios, versions."""
    median = record["median"]
    runs = record["runs"]
    lines = [
        f"### Peers benchmark {record['started']}",
        "",
        title(record),
        "",
        f"Workload: {record.get('workload', WORKLOAD)}",
        "",
        f"**{'Median of ' + str(len(runs)) + ' runs' if len(runs) > 1 else 'Results'}**",
        "",
        *target_rows(median),
        "",
        "jobs/s: (N - 1) / (last - first job start); drain s: that span; spawn to last s: from "
        "the worker's spawn to the last job's start; peak RSS: largest VmHWM in the worker's "
        "process tree; p50/p99/max: put to start; put ms: p50 of the put call itself, in the "
        "client (not part of put to start).",
        "",
    ]
    if len(runs) > 1:
        for k, run in enumerate(runs, 1):
            by_name = {t["target"]: t for t in run["targets"]}
            lines += [f"Run {k}", "", *target_rows({"targets": by_name}), ""]
    raw = median.get("raw_commits_per_second", {})
    lines += [
        "**Raw commit rates** (one small object changed per transaction)",
        "",
        "| storage | commits/s |",
        "|---|--:|",
        *(
            f"| {key} | {_number(v) if isinstance(v, int | float) else v} |"
            for key, v in raw.items()
        ),
        "",
        "**Ratios**",
        "",
        "| ratio | compares | value |",
        "|---|---|--:|",
    ]
    values = record.get("ratios") or ratios(median)
    for key, _, _, what in RATIOS:
        if values.get(key) is not None:  # the JSON lists them all, None where a side is missing
            lines.append(f"| {key} | {what} | {_number(values.get(key), 2)} |")
    versions = {**record["versions"].get("project", {}), **record["versions"].get("peers", {})}
    lines += [
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v is not None),
        "",
    ]
    return "\n".join(lines)


def draw(record: dict[str, Any], path: Path) -> None:
    """A PNG: jobs/s per target (horizontal bars), and p50/p99 latency beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = [
        (name, t)
        for name, t in record["median"]["targets"].items()
        if str(t.get("status")).startswith("ok")
    ]
    failed = [name for name, t in record["median"]["targets"].items() if (name, t) not in targets]
    names = [name for name, _ in targets][::-1]
    rates = [t["jobs_per_second"] for _, t in targets][::-1]
    # A log scale shows neither 0 nor a negative delay (a job can start a hair before the
    # putter reads its clock after the commit): 0.01 ms stands for them.
    p50 = [max(0.01, t["latency_ms"]["p50"]) for _, t in targets][::-1]
    p99 = [max(0.01, t["latency_ms"]["p99"]) for _, t in targets][::-1]
    colours = ["tab:blue" if n.startswith("zasync") else "tab:gray" for n in names]
    figure_, (left, right) = plt.subplots(1, 2, figsize=(12, 0.5 * len(names) + 2.2), sharey=True)
    positions = list(range(len(names)))
    left.barh(positions, rates, color=colours)
    for y, rate in zip(positions, rates, strict=True):
        left.text(rate, y, f" {rate:,.0f}", va="center", fontsize=8)
    left.margins(x=0.15)
    left.set_yticks(positions, names)
    left.set_xlabel("jobs/s draining a backlog (higher is better)")
    left.set_title("Throughput")
    height = 0.4
    right.barh([y + height / 2 for y in positions], p50, height, label="p50", color="tab:green")
    right.barh([y - height / 2 for y in positions], p99, height, label="p99", color="tab:orange")
    right.set_xscale("log")
    right.set_xlabel("put to start, ms (log scale; lower is better)")
    right.set_title("Latency into an idle worker")
    right.legend(loc="lower right")
    subtitle = title(record)
    if failed:
        subtitle += "\nfailed: " + ", ".join(failed)
    figure_.suptitle(f"zasync and its peers ({record['started']})\n{subtitle}", fontsize=9)
    figure_.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure_.savefig(path, dpi=110)
    plt.close(figure_)


def main(argv: list[str] | None = None) -> None:
    """Print the table of a record; write it and the chart where asked."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("record", type=Path, help="a bench/results/peers-*.json")
    parser.add_argument("--png", type=Path, help="draw the chart here (needs matplotlib)")
    parser.add_argument("--markdown", type=Path, help="write the Markdown here too")
    options = parser.parse_args(argv)
    record = json.loads(options.record.read_text())
    record["ratios"] = ratios(record["median"])
    text = markdown(record)
    print(text)
    if options.markdown is not None:
        options.markdown.write_text(text)
    if options.png is not None:
        draw(record, options.png)


if __name__ == "__main__":
    main()
