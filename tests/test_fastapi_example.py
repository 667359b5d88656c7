"""``examples/fastapi_app.py`` against the emulator: answers, error mapping, a saturated client,
and (slow tier) 200 concurrent requests through a real server."""

from __future__ import annotations

import importlib.util
import statistics
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import httpx
import pytest
import uvicorn

from cvekyc_async.emulator import RunningEmulator, specimen_path

pytestmark = pytest.mark.anyio

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "fastapi_app.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fastapi_app", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def example(cv_emulator: RunningEmulator, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("CVEKYC_BASE_URL", cv_emulator.base_url)
    monkeypatch.setenv("CVEKYC_API_KEY", cv_emulator.api_key)
    monkeypatch.setenv("CVEKYC_API_SECRET", cv_emulator.api_secret)
    return load_example()


@asynccontextmanager
async def served(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as http,
    ):
        yield http


def upload(path: Path | bytes, name: str = "card.jpg") -> dict[str, Any]:
    data = path if isinstance(path, bytes) else path.read_bytes()
    return {"files": {"image": (name, data, "image/jpeg")}}


async def test_a_card_is_read_and_assessed(example: ModuleType) -> None:
    async with served(example.create_app()) as http:
        answer = await http.post("/cards/read", **upload(specimen_path("chip_front.jpg")))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["cards"][0]["type"] == "chip_id_card_front"
    assert body["verdict"] in ("accept", "review", "reject")


@pytest.mark.parametrize(
    ("sent", "faults", "status", "code"),
    [
        (specimen_path("blank.jpg"), {}, 422, "no_document"),
        (b"just some text, not an image", {}, 422, "unreadable_upload"),
        (specimen_path("chip_front.jpg"), {"rate_429": 1.0}, 503, "busy"),
        (specimen_path("chip_front.jpg"), {"rate_500": 1.0}, 502, "upstream"),
        (specimen_path("chip_front.jpg"), {"rate_stall": 1.0, "stall_seconds": 5}, 504, "timeout"),
    ],
)
async def test_errors_become_http_answers(
    example: ModuleType,
    cv_emulator: RunningEmulator,
    sent: Path | bytes,
    faults: dict[str, Any],
    status: int,
    code: str,
) -> None:
    cv_emulator.set_faults(**faults)
    app = example.create_app(max_retries=0, total_timeout=0.5)
    async with served(app) as http:
        answer = await http.post("/cards/read", **upload(sent))
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["code"] == code
    if status == 503:
        assert int(answer.headers["retry-after"]) >= 1


async def test_wrong_credentials_are_logged_not_shown(
    example: ModuleType, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CVEKYC_API_SECRET", "wrong")
    async with served(example.create_app()) as http:
        answer = await http.post("/cards/read", **upload(specimen_path("chip_front.jpg")))
    assert answer.status_code == 502
    assert "api_key" not in answer.text
    assert "errorCode 5" in caplog.text


async def test_a_saturated_client_answers_503_at_once(
    example: ModuleType, cv_emulator: RunningEmulator
) -> None:
    cv_emulator.set_faults(rate_stall=1.0, stall_seconds=1)
    app = example.create_app(max_concurrency=1, queue_timeout=0.2, max_retries=0)
    statuses: list[int] = []
    async with served(app) as http:

        async def one() -> None:
            answer = await http.post("/cards/read", **upload(specimen_path("chip_front.jpg")))
            statuses.append(answer.status_code)

        async with anyio.create_task_group() as tg:
            tg.start_soon(one)
            await anyio.to_thread.run_sync(cv_emulator.state.wait_for_count, "requests", 1, 10)
            await one()  # the only slot is taken: this one is refused within queue_timeout
            assert statuses == [503]
    assert sorted(statuses) == [502, 503]  # the held one ends in the emulator's 504
    assert cv_emulator.stats()["requests"] == 1


# -- load --------------------------------------------------------------------------------------


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # runs in a thread
        pass


@pytest.fixture
def running_app(example: ModuleType) -> Iterator[str]:
    config = uvicorn.Config(
        example.create_app(), host="127.0.0.1", port=0, log_level="warning", lifespan="on"
    )
    server = _Server(config)
    thread = threading.Thread(target=server.run, name="fastapi-app", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.01)
    assert server.started
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_concurrent_requests_through_a_real_server_all_succeed(
    running_app: str, cv_emulator: RunningEmulator, slow_tier: bool
) -> None:
    n = 200 if slow_tier else 40
    cv_emulator.set_faults(latency=0.05, jitter=0.05, seed=11)
    data = specimen_path("chip_front.jpg").read_bytes()
    timings: list[float] = []
    statuses: Counter[int] = Counter()
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(base_url=running_app, timeout=60, limits=limits) as http:

        async def one() -> None:
            started = time.perf_counter()
            answer = await http.post(
                "/cards/read", files={"image": ("card.jpg", data, "image/jpeg")}
            )
            timings.append(time.perf_counter() - started)
            statuses[answer.status_code] += 1

        async with anyio.create_task_group() as tg:
            for _ in range(n):
                tg.start_soon(one)
    timings.sort()
    p50 = statistics.median(timings)
    p99 = timings[min(len(timings) - 1, int(len(timings) * 0.99))]
    print(
        f"\n{n} concurrent uploads through FastAPI: statuses {dict(statuses)}, "
        f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
        f"service peak in flight {cv_emulator.stats()['peak_in_flight']}"
    )
    assert statuses == {200: n}
    assert cv_emulator.stats()["billed"] == n


async def test_bad_requests_are_answered_without_echoing_what_was_sent(
    example: ModuleType,
) -> None:
    secret_text = "NGUYEN VAN AN 001099012345"
    async with served(example.create_app()) as http:
        as_text = await http.post("/cards/read", data={"image": secret_text})
        too_big = await http.post(
            "/cards/read", files={"image": ("big.jpg", b"\xff" * (11 * 1024 * 1024), "image/jpeg")}
        )
    assert as_text.status_code == 422
    assert as_text.json()["error"]["code"] == "bad_request"
    assert secret_text not in as_text.text
    assert too_big.status_code == 413
