"""The library's log lines and ``CVEKYC_LOG``.

``CVEKYC_LOG`` is read when ``cvekyc_async`` is imported, so it is tested in fresh interpreters
(a fault run against the emulator, its stderr read back); ``setup_logging`` and the lines'
records are tested here too, the logger's state put back after each test."""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from cvekyc_async import InternalServerError, RetryPolicy
from cvekyc_async._logs import setup_logging
from cvekyc_async.testing import specimen_personal_data
from tests import samples
from tests._flavours import flavoured

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
PATH = "/api/v2/ekyc/card"
KEY = "log-key-5d1c9e"
SECRET = "log-secret-88a0f3b2"
TOKEN = "tok-4e9b1d7a2c"
SEED = 5
CALLS = 24

# A fault run in a fresh interpreter, with CVEKYC_LOG as the test sets it: sequential calls
# (so a fixed seed gives the same faults every time) against an emulator answering 503 half the
# time, with a retry budget small enough to run dry. Prints what a test needs, as JSON, on
# stdout; the log lines go to stderr. With no calls, only the import is looked at.
SCRIPT = r"""
import json, sys, warnings

warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    import cvekyc_async

import logging

import msgspec

key, secret, token, seed, calls = json.loads(sys.argv[1])
logger = logging.getLogger("cvekyc_async")
out = {
    "warnings": [[w.category.__name__, str(w.message)] for w in caught],
    "level": logger.level,
    "handlers": [type(h).__module__ + "." + type(h).__name__ for h in logger.handlers],
    "calls": [],
}
if calls:  # else only the import is looked at
    from cvekyc_async import CVError, RetryPolicy
    from cvekyc_async.emulator import EmulatorSettings, serve_emulator, specimens

    paths = [p for p in specimens().values() if p.suffix != ".pdf"]
    policy = RetryPolicy(
        max_retries=1, backoff_base=0.0, budget_capacity=10, retry_cost=5, success_refund=1
    )
    with serve_emulator(settings=EmulatorSettings(api_key=key, api_secret=secret)) as emu:
        emu.set_faults(rate_503=0.5, seed=seed, retry_after="0")
        with emu.sync_client(retry=policy) as client:
            for i in range(calls):
                if i % 4 == 3:  # an image by URL, signed
                    name = paths[i % len(paths)].name
                    image = emu.specimen_url(name) + "?sig=" + token
                else:
                    image = paths[i % len(paths)]
                try:
                    res = client.extract_card(image)
                    out["calls"].append([res.request_id, res.attempts, None])
                except CVError as exc:
                    out["calls"].append([exc.request_id, exc.attempts, type(exc).__name__])
            out["usage"] = msgspec.to_builtins(client.usage)
        out["stats"] = emu.stats()
print(json.dumps(out))
"""

LINE = re.compile(
    r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<level>[A-Z]+) (?P<name>cvekyc_async)\] "
    r"(?P<message>call (?P<id>[0-9a-f-]{36}): (?P<rest>.*))$"
)


# Each value of CVEKYC_LOG run (None: unset), and how many calls its run makes.
VALUES: dict[str | None, int] = {
    "debug": CALLS,
    "info": CALLS,
    "warning": CALLS,
    None: 0,
    "loud": 0,
}


class Runs:
    """The fault run under each value of ``CVEKYC_LOG`` (unset for ``None``), all started at
    once (each is a fresh interpreter with an emulator of its own)."""

    def __init__(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CVEKYC_")}
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
            env.pop(name, None)
            env.pop(name.lower(), None)
        self._running: dict[str | None, subprocess.Popen[str]] = {}
        for value, calls in VALUES.items():
            args = [sys.executable, "-c", SCRIPT, json.dumps([KEY, SECRET, TOKEN, SEED, calls])]
            own = dict(env)
            if value is not None:
                own["CVEKYC_LOG"] = value
            self._running[value] = subprocess.Popen(
                args,
                env=own,
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )

    def result(self, value: str | None) -> tuple[dict[str, Any], list[re.Match[str]]]:
        """The run's report, and its stderr's lines (each must be one of the library's log
        lines)."""
        process = self._running[value]
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr[-3000:]
        lines = [line for line in stderr.splitlines() if line.strip()]
        matched = [LINE.match(line) for line in lines]
        strays = [line for line, m in zip(lines, matched, strict=True) if m is None]
        assert strays == [], "stderr holds lines other than the library's"
        return json.loads(stdout), [m for m in matched if m is not None]

    def close(self) -> None:
        for process in self._running.values():
            if process.poll() is None:
                process.kill()
            process.communicate()


@pytest.fixture(scope="module")
def runs() -> Iterator[Runs]:
    started = Runs()
    try:
        yield started
    finally:
        started.close()


def personal_values() -> set[str]:
    """The names and ID numbers of every specimen's cards, as printed and folded."""
    values = specimen_personal_data()
    assert len(values) > 10
    return values


def secrets() -> set[str]:
    """What no log line may hold: the credentials (and their Basic token), the URL's token."""
    basic = base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
    return {KEY, SECRET, basic, TOKEN}


# -- CVEKYC_LOG, in a fresh interpreter ------------------------------------------------------


def check_report(report: dict[str, Any]) -> tuple[dict[str, Any], list[list[Any]]]:
    usage, calls = report["usage"], report["calls"]
    # The seed gives a run with retries, an empty budget and failures after retrying: every
    # kind of INFO line has something to show.
    assert usage["retries"] > 0
    assert usage["budget_exhausted"] > 0
    assert any(error and attempts == 2 for _, attempts, error in calls)
    assert usage["requests"] == report["stats"]["requests"]
    return usage, calls


def test_info_shows_retries_an_empty_budget_and_failures_after_retrying(runs: Runs) -> None:
    report, lines = runs.result("info")
    usage, calls = check_report(report)
    assert report["level"] == logging.INFO
    assert report["handlers"] == ["cvekyc_async._logs._Handler"]
    assert report["warnings"] == []
    assert {m["level"] for m in lines} == {"INFO"}
    ids = {call_id for call_id, _, _ in calls}
    assert {m["id"] for m in lines} <= ids
    retrying = [m for m in lines if "; retrying in " in m["rest"]]
    budget = [m for m in lines if "the retry budget is empty" in m["rest"]]
    failed = [m for m in lines if " failed after " in m["rest"]]
    assert len(retrying) + len(budget) + len(failed) == len(lines)
    assert len(retrying) == usage["retries"]
    assert len(budget) == usage["budget_exhausted"]
    gave_up = [(i, a) for i, a, error in calls if error is not None and a > 1]
    assert [(m["id"], 2) for m in failed] == gave_up
    for m in retrying:
        assert re.fullmatch(
            r"(POST|GET) /api/v2/ekyc/card attempt 1 failed \(http_503\); retrying in 0\.000 s",
            m["rest"],
        )
    for m in budget:
        assert re.fullmatch(
            r"(POST|GET) /api/v2/ekyc/card attempt 1 failed \(http_503\); the retry budget is "
            r"empty, so it is not retried",
            m["rest"],
        )
    for m in failed:
        assert re.fullmatch(
            r"(POST|GET) /api/v2/ekyc/card failed after 2 attempts \(http_503\)", m["rest"]
        )
    # The image given by URL is logged by method and path: its query and token never.
    assert any(m["rest"].startswith("GET ") for m in lines)
    assert [m.string for m in lines if any(s in m.string for s in secrets())] == []


def test_debug_adds_one_line_per_attempt_and_leaks_nothing(runs: Runs) -> None:
    report, lines = runs.result("debug")
    usage, calls = check_report(report)
    assert report["level"] == logging.DEBUG
    debug = [m for m in lines if m["level"] == "DEBUG"]
    info = [m for m in lines if m["level"] == "INFO"]
    assert len(debug) + len(info) == len(lines)
    assert len(debug) == usage["requests"]
    assert len(info) == usage["retries"] + usage["budget_exhausted"] + sum(
        1 for _, a, error in calls if error is not None and a > 1
    )
    # Each call's attempts, numbered, with their outcome, in the order they were made.
    attempts: dict[str, list[int]] = {}
    for m in debug:
        found = re.fullmatch(
            r"(?:POST|GET) /api/v2/ekyc/card attempt (\d) -> (200|503) in \d+\.\d{3} s",
            m["rest"],
        )
        assert found is not None, m["rest"]
        attempts.setdefault(m["id"], []).append(int(found[1]))
    assert attempts == {call_id: list(range(1, n + 1)) for call_id, n, _ in calls}
    stats = report["stats"]
    assert Counter(m["rest"].split(" -> ")[1][:3] for m in debug) == {
        "503": stats["faults"]["503"],
        "200": stats["requests"] - stats["faults_total"],
    }
    leaked = [m.string for m in lines if any(v in m.string for v in personal_values())]
    assert leaked == []
    assert [m.string for m in lines if any(s in m.string for s in secrets())] == []


def test_warning_shows_none_of_the_retries(runs: Runs) -> None:
    report, lines = runs.result("warning")
    check_report(report)
    assert report["level"] == logging.WARNING
    assert report["handlers"] == ["cvekyc_async._logs._Handler"]
    assert lines == []


def test_without_cvekyc_log_the_logger_is_left_alone(runs: Runs) -> None:
    report, lines = runs.result(None)
    assert (report["level"], report["handlers"], report["warnings"]) == (logging.NOTSET, [], [])
    assert lines == []


def test_an_unknown_value_warns_and_is_ignored(runs: Runs) -> None:
    report, lines = runs.result("loud")
    assert report["warnings"] == [
        ["RuntimeWarning", "CVEKYC_LOG must be debug, info or warning; 'loud' is ignored"]
    ]
    assert (report["level"], report["handlers"]) == (logging.NOTSET, [])
    assert lines == []


# -- setup_logging, in this interpreter ------------------------------------------------------


@pytest.fixture
def library_logger() -> Iterator[logging.Logger]:
    """The library's logger, put back as it was after the test."""
    logger = logging.getLogger("cvekyc_async")
    level, handlers, propagate = logger.level, list(logger.handlers), logger.propagate
    try:
        yield logger
    finally:
        for handler in list(logger.handlers):
            if handler not in handlers:
                logger.removeHandler(handler)
                handler.close()
        logger.setLevel(level)
        logger.propagate = propagate


def own_handlers(logger: logging.Logger) -> list[logging.Handler]:
    return [h for h in logger.handlers if type(h).__module__ == "cvekyc_async._logs"]


def test_setup_logging_is_idempotent(library_logger: logging.Logger) -> None:
    assert own_handlers(library_logger) == []
    setup_logging({"CVEKYC_LOG": "info"})
    setup_logging({"CVEKYC_LOG": "info"})
    [handler] = own_handlers(library_logger)
    assert library_logger.level == logging.INFO
    assert isinstance(handler, logging.StreamHandler)
    # Another level changes the level, and keeps the one handler; case and spaces are forgiven.
    setup_logging({"CVEKYC_LOG": " DEBUG "})
    assert own_handlers(library_logger) == [handler]
    assert library_logger.level == logging.DEBUG
    # Unset or empty: nothing changes.
    setup_logging({})
    setup_logging({"CVEKYC_LOG": "  "})
    assert (own_handlers(library_logger), library_logger.level) == ([handler], logging.DEBUG)


@pytest.mark.parametrize("value", ["everything", "10", "trace", "error", "debug,info"])
def test_setup_logging_warns_of_an_unknown_value(
    library_logger: logging.Logger, value: str
) -> None:
    level = library_logger.level
    with pytest.warns(RuntimeWarning, match=f"CVEKYC_LOG .* {re.escape(repr(value))} is ignored"):
        setup_logging({"CVEKYC_LOG": value})
    assert (own_handlers(library_logger), library_logger.level) == ([], level)


def test_setup_logging_reads_the_environment(
    library_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CVEKYC_LOG", "warning")
    setup_logging()
    assert library_logger.level == logging.WARNING
    assert len(own_handlers(library_logger)) == 1


# -- the lines' records ----------------------------------------------------------------------


def unavailable() -> httpx.Response:
    return httpx.Response(503, headers={"Retry-After": "2"}, text="<html>busy</html>")


def ok() -> httpx.Response:
    return httpx.Response(200, content=samples.answer(samples.CHIP_FRONT))


async def test_info_lines_carry_the_call_id_as_a_record_attribute(
    mock: respx.MockRouter,
    sleeps: list[float],
    caplog: pytest.LogCaptureFixture,
    flavour: str,
) -> None:
    caplog.set_level(logging.INFO, logger="cvekyc_async")
    route = mock.post(PATH).mock(side_effect=[unavailable(), unavailable(), unavailable()])
    policy = RetryPolicy(max_retries=2, budget_capacity=5, retry_cost=5)
    client = flavoured(
        flavour, samples.API_KEY, samples.API_SECRET, base_url=samples.BASE_URL, retry=policy
    )
    async with client as c:
        # One retry, then a failure after two attempts (max_retries allows a second retry, but
        # the budget of 5 paid for the first only), then one not retried at all.
        with pytest.raises(InternalServerError) as first:
            await c.extract_card(samples.JPEG)
        with pytest.raises(InternalServerError) as second:
            await c.extract_card(samples.JPEG)
    assert (first.value.attempts, second.value.attempts) == (2, 1)
    assert sleeps == [2.0]
    assert route.call_count == 3
    records = [r for r in caplog.records if r.name == "cvekyc_async"]
    one, two = first.value.request_id, second.value.request_id
    assert [(r.levelno, r.getMessage()) for r in records] == [
        (logging.INFO, f"call {one}: POST {PATH} attempt 1 failed (http_503); retrying in 2.000 s"),
        (
            logging.INFO,
            f"call {one}: POST {PATH} attempt 2 failed (http_503); the retry budget is empty, "
            "so it is not retried",
        ),
        (logging.INFO, f"call {one}: POST {PATH} failed after 2 attempts (http_503)"),
        (
            logging.INFO,
            f"call {two}: POST {PATH} attempt 1 failed (http_503); the retry budget is empty, "
            "so it is not retried",
        ),
    ]
    assert [r.cvekyc_request_id for r in records] == [one, one, one, two]  # type: ignore[attr-defined]


async def test_at_info_no_attempt_line_is_made(
    mock: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cvekyc_async")
    mock.post(PATH).mock(return_value=ok())
    client = flavoured("async", samples.API_KEY, samples.API_SECRET, base_url=samples.BASE_URL)
    async with client as c:
        await c.extract_card(samples.JPEG)
    assert [r for r in caplog.records if r.name.startswith("cvekyc_async")] == []


async def test_debug_lines_of_an_image_url_show_neither_the_url_nor_the_secrets(
    mock: respx.MockRouter, sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="cvekyc_async")
    route = mock.get(PATH).mock(side_effect=[unavailable(), ok()])
    image = f"https://bucket.example/kyc/front.jpg?sig={TOKEN}"
    client = flavoured("async", samples.API_KEY, samples.API_SECRET, base_url=samples.BASE_URL)
    async with client as c:
        res = await c.extract_card(image)
    assert all(TOKEN in str(call.request.url) for call in route.calls)
    records = [r for r in caplog.records if r.name == "cvekyc_async"]
    assert [r.levelno for r in records] == [logging.DEBUG, logging.INFO, logging.DEBUG]
    texts = [r.getMessage() for r in records]
    assert all(text.startswith(f"call {res.request_id}: GET {PATH} ") for text in texts)
    watched = {
        TOKEN,
        "bucket.example",
        samples.API_KEY,
        samples.API_SECRET,
        samples.CHIP_FRONT["info"]["id"],
        samples.CHIP_FRONT["info"]["name"],
    }
    assert [t for t in texts if any(w in t for w in watched)] == []
    assert all(isinstance(r.args, tuple) for r in records)
    # Nor do the records' arguments (a structured handler may show them apart).
    assert [a for r in records for a in r.args or () if any(w in str(a) for w in watched)] == []
