"""What only the synchronous client has: its own loop thread, many caller threads, callers that
run a loop of their own, plain iterators, and closing. Shared behaviour is tested through both
clients elsewhere (see tests/_flavours.py)."""

from __future__ import annotations

import _thread
import asyncio
import gc
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from cvekyc_async import BatchResult, ClientStateError, ConfigurationError, CVClient
from cvekyc_async.emulator import RunningEmulator, specimen_path, specimens

FRONT = specimen_path("chip_front.jpg")


def loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "cvekyc-client-loop"]


def test_many_threads_share_one_client(cv_emulator: RunningEmulator) -> None:
    cv_emulator.set_faults(latency=0.02)
    with cv_emulator.sync_client(max_concurrency=4) as client:
        with ThreadPoolExecutor(16) as pool:
            types = list(pool.map(lambda _: client.extract_card(FRONT).cards[0].type, range(64)))
        usage = client.usage
    assert Counter(types) == {"chip_id_card_front": 64}
    assert usage.answers == 64
    assert cv_emulator.stats()["peak_in_flight"] <= 4  # one limiter for every thread


def test_it_works_where_a_loop_is_already_running(cv_emulator: RunningEmulator) -> None:
    # A notebook cell, or sync code called from a coroutine: the caller's loop is not ours.
    with cv_emulator.sync_client() as client:

        async def cell() -> str:
            return client.extract_card(FRONT).cards[0].type

        assert asyncio.run(cell()) == "chip_id_card_front"


def test_batches_return_a_list_and_a_plain_iterator(cv_emulator: RunningEmulator) -> None:
    paths = sorted(specimens().values())
    with cv_emulator.sync_client() as client:
        listed = client.extract_many(paths, endpoint="ocr")
        assert [r.index for r in listed] == list(range(len(paths)))
        seen: list[BatchResult] = []
        for result in client.extract_as_completed(paths, endpoint="ocr", concurrency=2):
            seen.append(result)
            if len(seen) == 3:
                break  # leaving early stops the batch; the client goes on
        assert len(seen) == 3
        assert client.extract_card(FRONT).cards[0].type == "chip_id_card_front"
        assert sorted(r.index for r in client.extract_as_completed(paths, endpoint="ocr")) == list(
            range(len(paths))
        )


def test_closing_stops_the_thread_and_refuses_calls(cv_emulator: RunningEmulator) -> None:
    before = len(loop_threads())
    client = cv_emulator.sync_client()
    assert len(loop_threads()) == before + 1
    client.extract_card(FRONT)
    view = client.with_options(max_retries=0)
    view.close()  # a view's close leaves the client open
    assert client.extract_card(FRONT).cards[0].type == "chip_id_card_front"
    client.close()
    client.close()  # twice is harmless
    assert client.is_closed
    assert len(loop_threads()) == before
    for closed in (client, view):
        with pytest.raises(ClientStateError, match="closed"):
            closed.extract_card(FRONT)


def test_a_client_never_closed_is_closed_when_collected(cv_emulator: RunningEmulator) -> None:
    before = len(loop_threads())
    client = cv_emulator.sync_client()
    client.extract_card(FRONT)
    del client
    gc.collect()
    assert len(loop_threads()) == before


def test_a_view_keeps_its_client_open(cv_emulator: RunningEmulator) -> None:
    view = cv_emulator.sync_client().with_options(timeout=10)
    gc.collect()
    assert view.extract_card(FRONT).cards[0].type == "chip_id_card_front"


def test_an_unclosed_client_does_not_hold_the_interpreter_at_exit(
    cv_emulator: RunningEmulator,
) -> None:
    script = (
        "from cvekyc_async import CVClient\n"
        f"c = CVClient('{cv_emulator.api_key}', '{cv_emulator.api_secret}', "
        f"base_url='{cv_emulator.base_url}', trust_env=False)\n"
        f"print(c.extract_card({str(FRONT)!r}).cards[0].type)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "chip_id_card_front"
    assert proc.stderr == ""


def test_bad_options_fail_before_a_thread_starts() -> None:
    before = len(loop_threads())
    with pytest.raises(ConfigurationError, match="max_concurrency"):
        CVClient("k", "s", max_concurrency=0)
    with pytest.raises(ConfigurationError, match="backend"):
        CVClient("k", "s", backend="curio")  # type: ignore[arg-type]
    assert len(loop_threads()) == before


def test_trio_runs_the_loop_when_asked(cv_emulator: RunningEmulator) -> None:
    with cv_emulator.sync_client(backend="trio") as client:
        assert client.extract_card(FRONT).cards[0].type == "chip_id_card_front"
    assert "CVClient(" in repr(client)


@pytest.mark.parametrize("setting", [None, "0"])
def test_the_loop_is_uvloop_when_installed_unless_told_not(
    cv_emulator: RunningEmulator, monkeypatch: pytest.MonkeyPatch, setting: str | None
) -> None:
    pytest.importorskip("uvloop")
    if setting is not None:
        monkeypatch.setenv("CVEKYC_UVLOOP", setting)
    with cv_emulator.sync_client() as client:
        loop = client._loop.portal.call(asyncio.get_running_loop)
        assert client.extract_card(FRONT).billed
    assert type(loop).__module__.startswith("uvloop") is (setting is None)


def test_a_progress_callback_cannot_call_its_own_client(cv_emulator: RunningEmulator) -> None:
    errors: list[BaseException] = []
    with cv_emulator.sync_client() as client:

        def progress(_: object) -> None:
            try:
                client.extract_card(FRONT)
            except ClientStateError as exc:
                errors.append(exc)

        client.extract_many([FRONT], progress=progress)
    assert errors
    assert "own loop" in str(errors[0])


def test_closing_from_a_progress_callback_is_refused_and_leaves_the_client_whole(
    cv_emulator: RunningEmulator,
) -> None:
    before = len(loop_threads())
    errors: list[BaseException] = []
    client = cv_emulator.sync_client()

    def progress(_: object) -> None:
        try:
            client.close()
        except ClientStateError as exc:
            errors.append(exc)

    client.extract_many([FRONT, FRONT], progress=progress)
    assert errors
    assert "own loop" in str(errors[0])
    assert client.extract_card(FRONT).billed  # still open and working
    client.close()
    assert len(loop_threads()) == before  # closing after the call stops the thread


def test_closing_with_a_batch_still_open_is_prompt_and_leaves_no_thread(
    cv_emulator: RunningEmulator,
) -> None:
    before = len(loop_threads())
    client = cv_emulator.sync_client()
    results = client.extract_as_completed([FRONT] * 50, concurrency=2)
    next(results)
    started = time.monotonic()
    client.close()
    assert time.monotonic() - started < 5  # no wait for the batch's task
    assert len(loop_threads()) == before
    with pytest.raises(ClientStateError, match="closed"):
        next(results)


def test_a_batch_can_be_stopped_from_another_thread(cv_emulator: RunningEmulator) -> None:
    cv_emulator.set_faults(latency=0.05)
    with cv_emulator.sync_client() as client:
        results = client.extract_as_completed([FRONT] * 400, concurrency=2)
        seen: list[BatchResult] = []

        def consume() -> None:
            seen.extend(results)

        consumer = threading.Thread(target=consume)
        consumer.start()
        while not seen:
            time.sleep(0.01)
        results.close()
        consumer.join(10)
        assert not consumer.is_alive()
        assert cv_emulator.wait_idle(10)
        assert cv_emulator.stats()["requests"] < 400  # the rest was never sent
        assert client.extract_card(FRONT).cards[0].type == "chip_id_card_front"


def test_an_interrupted_call_is_cancelled_in_the_loop(cv_emulator: RunningEmulator) -> None:
    # KeyboardInterrupt in the waiting thread: the call stops sending and frees its slot.
    cv_emulator.set_faults(latency=0.05)
    with cv_emulator.sync_client(max_concurrency=2) as client:
        interrupt = threading.Timer(0.3, _thread.interrupt_main)
        interrupt.start()
        counted: list[int] = []

        def read_many() -> None:
            try:
                client.extract_many([FRONT] * 200)
            finally:
                counted.append(cv_emulator.stats()["requests"])

        with pytest.raises(KeyboardInterrupt):
            read_many()
        (at_interrupt,) = counted
        assert cv_emulator.wait_idle(10)
        time.sleep(0.3)  # nothing new goes out once the call is cancelled
        # The requests in flight when it was interrupted (two at most) may still land: a
        # request already written cannot be taken back, even under a loaded machine's delays.
        assert at_interrupt <= cv_emulator.stats()["requests"] <= at_interrupt + 2 < 200
        assert client.in_flight == 0
        assert client.extract_card(FRONT).cards[0].type == "chip_id_card_front"


def test_a_callers_own_error_in_a_batch_arrives_as_itself(cv_emulator: RunningEmulator) -> None:
    class Boom(Exception):
        pass

    def inputs() -> Iterator[str]:
        yield str(FRONT)
        raise Boom

    with cv_emulator.sync_client() as client:
        with pytest.raises(Boom):
            client.extract_many(inputs())
        with pytest.raises(Boom):
            client.extract_many([FRONT], progress=lambda _: (_ for _ in ()).throw(Boom()))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_forked_child_neither_hangs_nor_uses_the_parents_loop(
    cv_emulator: RunningEmulator,
) -> None:
    script = (
        "import os, sys\n"
        "from cvekyc_async import CVClient, ClientStateError\n"
        f"c = CVClient('{cv_emulator.api_key}', '{cv_emulator.api_secret}', "
        f"base_url='{cv_emulator.base_url}', trust_env=False)\n"
        f"c.extract_card({str(FRONT)!r})\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    try:\n"
        f"        c.extract_card({str(FRONT)!r})\n"
        "    except ClientStateError:\n"
        "        os._exit(7)\n"
        "    os._exit(1)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "print(os.waitstatus_to_exitcode(status))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "7"
