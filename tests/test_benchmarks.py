"""Every benchmark runs in its quick mode, so none of them can rot. No timing is asserted here:
speed is judged by the full runs in benchmarks/README.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("name", "keys"),
    [
        ("bench_decode", {"results"}),
        ("bench_wire", {"results"}),
        ("bench_memory", {"batches", "ratio"}),
        ("bench_big_answers", {"results", "calls"}),
        ("bench_throughput", {"samples", "summary", "requests_loop"}),
        ("bench_latency", {"samples", "summary", "requests_loop"}),
        ("bench_client", {"cells", "summary", "targets"}),
        ("bench_adaptive", {"sweep", "auto", "best_fixed", "auto_over_best"}),
        ("bench_adaptive_servers", {"servers"}),
        ("bench_results", {"batch", "exports", "report"}),
        ("bench_prepare", {"photos", "summary"}),
    ],
)
def test_benchmark_runs_in_quick_mode(name: str, keys: set[str], tmp_path: Path) -> None:
    out = tmp_path / f"{name}.json"
    proc = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "|" in proc.stdout  # printed its table
    data = json.loads(out.read_text(encoding="utf-8"))
    assert keys <= set(data)
    assert data["environment"]["cores"] >= 1
