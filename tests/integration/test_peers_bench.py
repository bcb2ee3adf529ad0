"""The peer benchmark (bench/peers): its zasync-embedded target end to end, and its report.

The harness runs as the lead engineer runs it, with tiny numbers and the one
target that needs neither the peers' environment nor Redis nor PostgreSQL.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
PEERS = ROOT / "bench" / "peers"


def load_bench_module(name: str) -> ModuleType:
    """bench/peers/NAME.py as a module of its own name (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"peers_{name}", PEERS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_report() -> ModuleType:
    return load_bench_module("report")


@pytest.mark.slow
def test_the_embedded_target_drains_and_measures_latency(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            str(PEERS / "run.py"),
            "--targets",
            "zasync-embedded",
            "--jobs",
            "50",
            "--samples",
            "5",
            "--interval-ms",
            "5",
            "--raw-commits",
            "50",
            "--threads",
            "2",
            "--timeout",
            "60",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (path,) = tmp_path.glob("peers-*.json")
    record = json.loads(path.read_text())
    (result,) = record["runs"][0]["targets"]
    assert result["status"] == "ok", result
    assert result["target"] == "zasync-embedded"
    assert result["lines"] == 50
    assert result["jobs_per_second"] > 0
    # Put to start can be below zero: the embedded worker may start a job before
    # the putting client has read its clock after the commit returned.
    latency = result["latency_ms"]
    assert -1000 < latency["p50"] <= latency["p99"] <= latency["max"] < 10_000
    assert result["latency_ms"]["samples"] == 5
    assert 0 < result["idle_wait_seconds"] < 60
    assert isinstance(result["machine_idle"], bool)
    assert record["median"]["targets"]["zasync-embedded"]["jobs_per_second"] > 0
    assert record["median"]["raw_commits_per_second"]["filestorage"] > 0
    # No peer was selected: no peers' environment asked for, no Redis nor PostgreSQL.
    assert record["versions"]["peers"] == {}
    assert "creating the peers' environment" not in done.stdout
    assert "relstorage_1conn" not in record["median"]["raw_commits_per_second"]
    markdown = path.with_suffix(".md").read_text()
    assert "| zasync-embedded |" in markdown
    assert "| embedded/raw-filestorage |" in markdown


def hand_made_record() -> dict:
    def target(name: str, rate: float, p50: float, p99: float) -> dict:
        return {
            "target": name,
            "backend": "b",
            "concurrency": "1 process x 8 threads",
            "worker_processes": 1,
            "status": "ok",
            "jobs_per_second": rate,
            "drain_seconds": 1.0,
            "spawn_to_last_seconds": 2.0,
            "peak_rss_mb": 50.0,
            "latency_ms": {"p50": p50, "p99": p99, "max": p99, "put_p50": 1.0},
        }

    targets = {
        "zasync-embedded": target("zasync-embedded", 1200.0, 2.0, 8.0),
        "huey": target("huey", 800.0, 100.0, 140.0),
        "zasync-zeo-1": target("zasync-zeo-1", 500.0, 10.0, 20.0),
        "zasync-zeo-2": target("zasync-zeo-2", 900.0, 12.0, 30.0),
        "celery": target("celery", 1000.0, 4.0, 6.0),
        "zasync-pg-1": target("zasync-pg-1", 300.0, 20.0, 40.0),
        "procrastinate": target("procrastinate", 600.0, 5.0, 9.0),
        "dramatiq": {
            "target": "dramatiq",
            "backend": "Redis",
            "concurrency": "1 process x 8 threads",
            "worker_processes": 1,
            "status": "failed",
            "reason": "worker 0 exited (1): boom | bang",
        },
    }
    raw = {"filestorage": 3000.0, "zeo": 400.0, "relstorage_1conn": 250.0, "relstorage_4conn": 500}
    summary = {"targets": targets, "raw_commits_per_second": raw}
    return {
        "started": "20260101-000000",
        "machine": {"cpu_count": 2, "cpu_model": "Test CPU", "python": "3.11.7"},
        "versions": {"project": {"zasync": "0.1.0"}, "peers": {"huey": "3.5.4"}},
        "parameters": {"jobs": 10000, "threads": 8, "samples": 200, "interval_ms": 20},
        "runs": [
            {"targets": list(targets.values()), "raw_commits_per_second": raw},
        ],
        "median": summary,
    }


def test_ratios_of_a_hand_made_record():
    report = load_report()
    record = hand_made_record()
    ratios = report.ratios(record["median"])
    assert ratios["embedded/huey"] == 1.5
    assert ratios["embedded/dramatiq"] is None  # dramatiq failed
    assert ratios["zeo1/celery"] == 0.5
    assert ratios["zeo2/zeo1"] == 1.8
    assert ratios["pg1/procrastinate"] == 0.5
    assert ratios["pg1/raw-relstorage-1conn"] == 1.2
    assert ratios["embedded/raw-filestorage"] == 0.4
    assert ratios["raw-relstorage-4conn/1conn"] == 2.0
    assert ratios["latency p50 embedded/celery"] == 0.5
    assert ratios["latency p50 zeo1/celery"] == 2.5
    assert ratios["latency p50 pg1/procrastinate"] == 4.0
    assert ratios["pg1/dbos"] is None  # no dbos in the record


def test_markdown_of_a_hand_made_record():
    report = load_report()
    record = hand_made_record()
    record["ratios"] = report.ratios(record["median"])
    text = report.markdown(record)
    assert "10,000 no-op jobs, 8 threads per worker" in text
    assert "| zasync-embedded | b | 1 process x 8 threads | 1,200 |" in text
    # A failure is one row, and a | in its reason does not break the table.
    assert "| dramatiq | Redis | 1 process x 8 threads | - |" in text
    assert "failed: worker 0 exited (1): boom / bang |" in text
    assert "| zeo2/zeo1 | jobs/s | 1.80 |" in text
    assert "embedded/dramatiq" not in text  # a ratio that cannot be computed is left out
    assert "| relstorage_4conn | 500 |" in text


def test_the_chart_is_drawn_as_a_png(tmp_path):
    report = load_report()
    record = hand_made_record()
    report.draw(record, tmp_path / "peers.png")
    assert (tmp_path / "peers.png").read_bytes()[:4] == b"\x89PNG"


def load_run() -> ModuleType:
    return load_bench_module("run")  # it puts bench/peers on the path for its own imports


def test_the_latency_phase_waits_for_idle_workers_and_not_for_busy_ones():
    run = load_run()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    spinner = None
    try:
        waited, _machine_idle = run.wait_idle([sleeper.pid], timeout=60)
        assert waited < 60
        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        with pytest.raises(RuntimeError, match="still busy after 2 s"):
            run.wait_idle([sleeper.pid, spinner.pid], timeout=2)
        # A busy machine (the spinner is no worker) is waited for, then reported.
        waited, machine_idle = run.wait_idle([sleeper.pid], timeout=60, machine_patience=1)
        assert 1 < waited < 60 and machine_idle is False
        assert run.cpu_seconds(spinner.pid) > 0 and run.machine_busy_seconds() > 0
    finally:
        for process in (sleeper, spinner):
            if process is not None:
                process.kill()
                process.wait()
