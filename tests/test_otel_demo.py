"""``examples/otel_demo.py``: the FastAPI example under uvicorn with the OpenTelemetry SDK, run
small. Its own checks (retries by reason equal to the faults injected, no card data in any span,
metric or log line) decide its exit status; the output is read for the trace's shape."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parent.parent / "examples" / "otel_demo.py"


def test_the_demo_shows_one_trace_and_retries_equal_to_the_faults_and_no_card_data() -> None:
    done = subprocess.run(
        [sys.executable, str(DEMO), "--requests", "30", "--calls", "150", "--seed", "3"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    # Every request's call span is in the driver's trace, with at least one attempt each.
    assert re.search(r"^\s+30 x cvekyc\.extract_card \(internal\)$", out, re.M), out
    found = re.search(r"^\s+(\d+) x POST /api/v2/ekyc/card \(client\)$", out, re.M)
    assert found is not None, out
    attempts = int(found.group(1))
    assert attempts >= 30
    # The printed tree nests server span > call span > attempt spans.
    tree = out.split("one request", 1)[1].split("== fault run", 1)[0]
    depth = {name: len(line) - len(line.lstrip()) for line in tree.splitlines()
             for name in ("POST /cards/read", "cvekyc.extract_card", "POST /api/v2/ekyc/card")
             if line.strip().startswith(name + " [")}  # fmt: skip
    assert (
        depth["POST /cards/read"] < depth["cvekyc.extract_card"] < depth["POST /api/v2/ekyc/card"]
    )
    assert re.search(r"^total\s+(\d+)\s+\1  equal: True$", out, re.M), out
    assert re.search(r": 0 hits$", out, re.M), out
