"""Fault injection: each fault reaches the client as the right error, and a seed fixes the draws."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import httpx
import pytest

from cvekyc_async import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AsyncCVClient,
    CVError,
    InternalServerError,
    MalformedResponseError,
    RateLimitError,
)
from cvekyc_async.emulator import Faults, RunningEmulator, specimen_path
from cvekyc_async.emulator._state import FAULT_KINDS

pytestmark = pytest.mark.anyio
CARD = specimen_path("chip_front.jpg")


def no_retry_client(emu: RunningEmulator, **kwargs: object) -> AsyncCVClient:
    return emu.client(max_retries=0, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "cls", "detail"),
    [
        ("429", RateLimitError, "Retry-After: 1 s"),
        ("500", InternalServerError, "HTTP 500"),
        ("502", InternalServerError, "502 Bad Gateway"),
        ("503", InternalServerError, "503 Service Temporarily Unavailable"),
        ("504", InternalServerError, "504 Gateway Time-out"),
        ("drop", APIConnectionError, "could not reach the service"),
        ("malformed", MalformedResponseError, "not the expected JSON"),
    ],
)
async def test_each_fault_reaches_the_client_as_its_error(
    cv_emulator: RunningEmulator, kind: str, cls: type[CVError], detail: str
) -> None:
    cv_emulator.set_faults(**{f"rate_{kind}": 1.0})
    async with no_retry_client(cv_emulator) as client:
        with pytest.raises(CVError) as info:
            await client.extract_card(CARD)
    assert type(info.value) is cls
    assert detail in str(info.value)
    assert cv_emulator.stats()["faults"] == {kind: 1}


async def test_a_stall_ends_in_a_read_timeout(cv_emulator: RunningEmulator) -> None:
    cv_emulator.set_faults(rate_stall=1.0, stall_seconds=60)
    timeout = httpx.Timeout(5.0, read=0.3)
    async with no_retry_client(cv_emulator, timeout=timeout) as client:
        with pytest.raises(APITimeoutError) as info:
            await client.extract_card(CARD)
    assert info.value.kind == "read"


async def test_latency_past_the_read_timeout_times_out(cv_emulator: RunningEmulator) -> None:
    cv_emulator.set_faults(latency=1.0)
    async with no_retry_client(cv_emulator, timeout=httpx.Timeout(5.0, read=0.2)) as client:
        with pytest.raises(APITimeoutError):
            await client.extract_card(CARD)


async def _outcomes(emu: RunningEmulator, n: int) -> list[str]:
    out = []
    async with no_retry_client(emu) as client:
        for _ in range(n):
            try:
                await client.extract_card(CARD)
                out.append("ok")
            except CVError as exc:
                out.append(type(exc).__name__)
    return out


MIXED = Faults(
    seed=1234,
    rate_429=0.1,
    rate_500=0.1,
    rate_502=0.05,
    rate_503=0.05,
    rate_504=0.05,
    rate_drop=0.05,
    rate_malformed=0.05,
)


async def test_a_fixed_seed_gives_the_same_faults(cv_emulator: RunningEmulator) -> None:
    cv_emulator.set_faults(MIXED)
    first = await _outcomes(cv_emulator, 60)
    stats = cv_emulator.stats()
    cv_emulator.set_faults(MIXED)  # restarts the seeded draws
    cv_emulator.reset()
    second = await _outcomes(cv_emulator, 60)
    assert first == second
    assert cv_emulator.stats() == stats
    cv_emulator.set_faults(MIXED, seed=99)
    assert await _outcomes(cv_emulator, 60) != first


async def test_counts_account_for_every_request(cv_emulator: RunningEmulator) -> None:
    cv_emulator.set_faults(MIXED)
    outcomes = Counter(await _outcomes(cv_emulator, 80))
    stats = cv_emulator.stats()
    faults = stats["faults"]
    assert stats["requests"] == 80
    assert stats["faults_total"] == 80 - outcomes["ok"]
    assert set(faults) <= set(FAULT_KINDS)
    # The service did the work behind a dropped or truncated answer: those are billed too.
    assert stats["billed"] == outcomes["ok"] + faults.get("drop", 0) + faults.get("malformed", 0)
    assert outcomes["RateLimitError"] == faults.get("429", 0)


async def test_faults_are_set_and_read_over_http(cv_emulator: RunningEmulator) -> None:
    async with httpx.AsyncClient(base_url=cv_emulator.base_url) as http:
        r = await http.put("/_emulator/faults", json={"rate_500": 1.0, "seed": 7})
        assert r.json()["rate_500"] == 1.0
        bad = await http.put("/_emulator/faults", json={"rate_500": 2.0})
        assert bad.status_code == 400
        unknown = await http.put("/_emulator/faults", json={"rate_teapot": 1.0})
        assert unknown.status_code == 400
        settings = (await http.put("/_emulator/settings", json={"quota": 5})).json()
        assert settings["quota"] == 5
        assert settings["api_secret"] == "***"
    assert cv_emulator.state.faults.rate_500 == 1.0
    assert cv_emulator.state.settings.quota == 5
    async with no_retry_client(cv_emulator) as client:
        with pytest.raises(APIStatusError):
            await client.extract_card(CARD)
    async with httpx.AsyncClient(base_url=cv_emulator.base_url) as http:
        stats = (await http.get("/_emulator/stats")).json()
        assert stats["faults"] == {"500": 1}
        assert (await http.post("/_emulator/reset")).json()["requests"] == 0


def test_faults_refuse_impossible_rates() -> None:
    with pytest.raises(ValueError, match="sum to at most 1"):
        Faults(rate_500=0.7, rate_502=0.7).validate()
    with pytest.raises(ValueError, match="negative"):
        Faults(latency=-1).validate()


def test_python_dash_m_serves_the_emulator() -> None:
    cmd = [sys.executable, "-m", "cvekyc_async.emulator", "--port", "0", "--rate-503", "1"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env) as proc:
        try:
            assert proc.stderr is not None
            banner = proc.stderr.readline()
            assert "listening on http://127.0.0.1:" in banner
            base = banner.split("listening on ")[1].split()[0]
            auth = ("emulator-key", "emulator-secret")
            with httpx.Client(base_url=base, auth=auth, timeout=10) as http:
                r = http.post(
                    "/api/v2/ekyc/card?format_type=file", files={"img": CARD.read_bytes()}
                )
                assert r.status_code == 503
                assert http.get("/_emulator/stats").json()["faults"] == {"503": 1}
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def test_command_line_refuses_bad_rates() -> None:
    cmd = [sys.executable, "-m", "cvekyc_async.emulator", "--rate-500", "3"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert "sum to at most 1" in proc.stderr
