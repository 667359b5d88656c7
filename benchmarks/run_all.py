"""Run every benchmark once, then refresh every figure from that run: the tables in
``benchmarks/README.md`` (each script's printed output, between ``<!-- run:NAME -->`` markers),
the summary in the top-level ``README.md`` (between ``<!-- bench:summary -->`` markers), and the
plots in ``benchmarks/results/*.png`` (matplotlib, the ``bench`` extra).

    python -m benchmarks.run_all [--quick] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks._harness import RESULTS_DIR

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = (
    "bench_throughput",
    "bench_latency",
    "bench_client",
    "bench_adaptive",
    "bench_adaptive_servers",
    "bench_memory",
    "bench_wire",
    "bench_decode",
    "bench_big_answers",
    "bench_results",
    "bench_prepare",
)


def _replace(text: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- {re.escape(name)} -->\n).*?(\n<!-- /{re.escape(name)} -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"no <!-- {name} --> markers to refresh")
    return pattern.sub(lambda m: m.group(1) + body.strip("\n") + m.group(2), text)


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((RESULTS_DIR / f"{name}.json").read_text(encoding="utf-8"))
    return data


def summary() -> str:
    """The README's summary, from the results of the run."""
    client, ada, mem = _load("client"), _load("adaptive"), _load("memory")
    # The speed figures come from the light server: the emulator decodes every image and is
    # the bound near 1,000 requests/s, which would hide what the client itself costs.
    cells = {
        (cell["latency"], cell["in_flight"]): cell
        for cell in client["summary"].values()
        if cell["warm"] and not cell["tls"]
    }
    env = client["environment"]
    lines = [
        f"Measured on {env['cores']} cores, Python {env['python']}, {env['loop']}, against a "
        "light server (uvicorn + httptools, a fixed JSON answer, no image decoding) in its own "
        "process on its own core, so that the client and not the server is the bound; each run "
        "a fresh client process on the other core (100 KB uploads, warm connections; "
        "`benchmarks/README.md` has every table: TLS, cold connections, and the runs against "
        "the emulator, which decodes each image and tops out near 1,000 requests/s):",
        "",
        "| in flight | latency | contender | requests/s | of ideal | CPU us/request "
        "| rate / raw aiohttp | CPU / raw aiohttp |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for latency, k in ((0.0, 16), (0.0, 256), (0.1, 256), (0.1, 1024)):
        cell = cells.get((latency, k))
        if cell is None:  # a quick run has fewer cells
            continue
        at = f"{latency * 1000:.0f} ms" if latency else "0"
        for who, shown in (
            ("cvekyc", "`AsyncCVClient()` (auto: aiohttp)"),
            ("cvekyc sharded", '`transport="sharded"` (httpx, trio)'),
            ("raw httpx", "raw httpx"),
            ("raw aiohttp", "raw aiohttp"),
        ):
            f = cell["contenders"][who]
            if f["rate"] is None or f["rate_ratio"] is None:  # its runs (or the baseline's) crashed
                lines.append(f"| {k} | {at} | {shown} | n/a | | | | |")
                continue
            share = f"{f['share_of_ideal']:.0%}" if f["share_of_ideal"] is not None else ""
            lines.append(
                f"| {k} | {at} | {shown} | "
                f"{f['rate']['median']:,.0f} | {share} | {f['cpu_us']['median']:,.0f} | "
                f"{f['rate_ratio']:.2f} | {f['cpu_ratio']:.2f} |"
            )
    by_target: dict[str, list[dict[str, Any]]] = {}
    for goal in client["targets"]:
        by_target.setdefault(goal["target"], []).append(goal)
    lines += [
        "",
        "- Targets for the client's own cost on the light server, cell by cell (HTTP and TLS, "
        "warm and cold; reported, not asserted): "
        + "; ".join(
            f"{target}: met in {sum(g['met'] for g in goals)} of {len(goals)}"
            + (f" ({goals[0]['figure']})" if len(goals) == 1 else "")
            for target, goals in by_target.items()
        )
        + ".",
    ]
    best = ada["best_fixed"]
    auto = ada["auto"]
    lines += [
        f"- Adaptive concurrency, against a service that takes 32 at once and queues 16: the best "
        f"fixed setting of a sweep ({best['in_flight']} in flight) gave {best['rate']:,.0f} "
        f'answers/s; `max_concurrency="auto"` gave {auto["rate"]:,.0f}/s over '
        f"{auto['elapsed']:.0f} s ({ada['auto_over_best']:.0%}), with "
        f"{auto['busy'] / max(1, auto['requests']):.2%} of requests answered 429, every second at "
        f"90 % of the best fixed or more from t = {ada['converged_after_s']} s.",
    ]
    servers = _load("adaptive_servers")["servers"]
    lines.append(
        "- Adaptive concurrency against five services written apart from the emulator, as a "
        "share of the best fixed setting of a sweep: "
        + "; ".join(
            f"{s['title']} {s['auto_over_best']:.0%} "
            f"({s['auto']['share_429'] + s['auto']['share_503']:.1%} answered 429 or 503)"
            for s in servers.values()
        )
        + "."
    )
    most = max(b["inputs"] for b in mem["batches"])
    least = min(b["inputs"] for b in mem["batches"])
    peak = {b["helper"]: b["peak_rss_mb"] for b in mem["batches"] if b["inputs"] == most}
    lines.append(
        f"- Memory: `extract_as_completed` is bounded by the concurrency ({most:,} inputs peak at "
        f"{peak['extract_as_completed']:.0f} MB, {mem['ratio']:.2f} x the peak of {least:,}). "
        f"`extract_many` returns a list, so it keeps every result until the batch ends "
        f"({peak['extract_many']:.0f} MB): use `extract_as_completed` (or `cvekyc batch`) for "
        "big batches."
    )
    lines.append(
        f"- Figures from the run of {datetime.date.today().isoformat()}; refresh them all with "
        "`python -m benchmarks.run_all` (extra `bench` for the plots)."
    )
    return "\n".join(lines)


def plots() -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): no plots", file=sys.stderr)
        return []
    made = []
    for name, title in (("throughput", "zero latency"), ("latency", "100 ms server latency")):
        data = _load(name)
        fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
        for ax, mode in zip(axes, ("warm", "cold"), strict=True):
            for who in data["contenders"]:
                ks = data["in_flight"]
                rates = [data["summary"][mode][who][str(k)]["rate"]["median"] for k in ks]
                ax.plot(ks, rates, marker="o", label=who)
            if data["latency"]:
                ks = data["in_flight"]
                ax.plot(ks, [k / data["latency"] for k in ks], "k:", label="ideal")
            ax.set_xscale("log", base=2)
            ax.set_xticks(data["in_flight"], [str(k) for k in data["in_flight"]])
            ax.set_xlabel("requests in flight")
            ax.set_title(f"{title}, {mode} connections")
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("requests/s")
        axes[1].legend(fontsize=8)
        fig.tight_layout()
        path = RESULTS_DIR / f"{name}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        made.append(path)
    ada = _load("adaptive")
    fig, ax = plt.subplots(figsize=(8, 4))
    per_second = ada["auto"]["per_second"]
    ax.plot(range(len(per_second)), per_second, label="auto: answers/s")
    ax.axhline(ada["best_fixed"]["rate"], color="k", linestyle=":", label="best fixed")
    ax2 = ax.twinx()
    levels = ada["auto"]["levels"][: len(per_second)]
    ax2.plot(range(len(levels)), levels, color="tab:orange", label="auto: concurrency")
    ax2.set_ylabel("concurrency")
    ax.set_xlabel("seconds")
    ax.set_ylabel("answers/s")
    ax.set_title("max_concurrency='auto' on a service taking 32 at once")
    fig.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path = RESULTS_DIR / "adaptive.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    made.append(path)
    return made


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="each script's smoke run")
    p.add_argument("--no-write", action="store_true", help="leave the READMEs as they are")
    p.add_argument(
        "--resume-from",
        choices=SCRIPTS,
        help="take the scripts before this one from their saved output (results/NAME.txt)",
    )
    args = p.parse_args()
    bench_readme = ROOT / "benchmarks" / "README.md"
    text = bench_readme.read_text(encoding="utf-8")
    skip = SCRIPTS.index(args.resume_from) if args.resume_from else 0
    for name in SCRIPTS[:skip]:
        text = _replace(text, f"run:{name}", (RESULTS_DIR / f"{name}.txt").read_text("utf-8"))
    for name in SCRIPTS[skip:]:
        cmd = [sys.executable, "-m", f"benchmarks.{name}", *(["--quick"] if args.quick else [])]
        print(f"$ {' '.join(cmd[1:])}", flush=True)
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"{name} failed:\n{proc.stdout}\n{proc.stderr}")
        shown = "\n".join(
            line for line in proc.stdout.splitlines() if not line.startswith("raw numbers:")
        )
        print(shown, flush=True)
        (RESULTS_DIR / f"{name}.txt").write_text(shown + "\n", encoding="utf-8")
        text = _replace(text, f"run:{name}", shown)
    env = _load("throughput")["environment"]
    text = _replace(
        text,
        "run:environment",
        f"Run of {datetime.date.today().isoformat()}: {env['cores']} cores ({env['machine']}), "
        f"Python {env['python']}, {env['loop']}, httpx {env['httpx']}, httpcore "
        f"{env['httpcore']}, aiohttp {env['aiohttp']}, anyio {env['anyio']}, msgspec "
        f"{env['msgspec']}, uvicorn {env['uvicorn']}.",
    )
    made = plots()
    if args.no_write:
        return
    bench_readme.write_text(text, encoding="utf-8")
    readme = ROOT / "README.md"
    readme.write_text(
        _replace(readme.read_text(encoding="utf-8"), "bench:summary", summary()), encoding="utf-8"
    )
    print(f"refreshed {bench_readme}, {readme}" + "".join(f", {m}" for m in made))


if __name__ == "__main__":
    main()
