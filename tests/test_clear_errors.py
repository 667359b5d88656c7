"""Clear errors: the wrong kind of ``http_client``, a caller's ``httpx.Client`` under
``CVClient``, messages that name the class the caller holds, the URL of a 404, the seconds of a
timeout, one warning for a client never closed, ``cvekyc --version`` and help for every
option."""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest
import respx

import cvekyc_async
from cvekyc_async import (
    APIConnectionError,
    APITimeoutError,
    AsyncCVClient,
    ClientStateError,
    ConfigurationError,
    CVClient,
    NotFoundError,
    ResponseTooLargeError,
    RetryPolicy,
)
from cvekyc_async.cli.main import build_parser
from cvekyc_async.emulator import RunningEmulator, specimen_path
from cvekyc_async.emulator.__main__ import build_parser as build_emulator_parser
from tests import samples
from tests._flavours import flavoured

PATH = "/api/v2/ekyc/card"
URL = samples.BASE_URL + PATH
FRONT = specimen_path("chip_front.jpg")
BACK = specimen_path("chip_back.jpg")


def client(flavour: str = "async", **kwargs: Any) -> Any:
    kwargs.setdefault("base_url", samples.BASE_URL)
    kwargs.setdefault("max_retries", 0)
    return flavoured(flavour, samples.API_KEY, samples.API_SECRET, **kwargs)


def loop_threads() -> int:
    return sum(t.name == "cvekyc-client-loop" for t in threading.enumerate())


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    # No base_url: routes name their host, so that views on other origins are answered too.
    with respx.mock(assert_all_called=False) as router:
        yield router


# -- the wrong kind of http_client ------------------------------------------------------------


def test_an_async_client_refuses_a_sync_http_client() -> None:
    with httpx.Client() as http, pytest.raises(ConfigurationError) as caught:
        AsyncCVClient("k", "s", http_client=http)  # type: ignore[arg-type]
    text = str(caught.value)
    assert "AsyncCVClient sends through an httpx.AsyncClient" in text
    assert "pass http_client=httpx.AsyncClient(...)" in text
    assert "use CVClient, which takes an httpx.Client" in text
    assert isinstance(caught.value, ValueError)


def test_a_sync_client_refuses_an_async_http_client_before_starting_a_thread() -> None:
    before = loop_threads()
    with pytest.raises(ConfigurationError) as caught:
        CVClient("k", "s", http_client=httpx.AsyncClient())  # type: ignore[arg-type]
    text = str(caught.value)
    assert "CVClient sends through an httpx.Client" in text
    assert "pass http_client=httpx.Client(...)" in text
    assert "use AsyncCVClient, which takes an httpx.AsyncClient" in text
    assert loop_threads() == before


@pytest.mark.parametrize(
    ("kind", "expected"), [(AsyncCVClient, "httpx.AsyncClient"), (CVClient, "httpx.Client")]
)
@pytest.mark.parametrize(
    "given",
    ["https://api.test", object(), httpx.MockTransport(lambda request: httpx.Response(200))],
)
def test_anything_else_as_http_client_is_named(
    kind: type[AsyncCVClient] | type[CVClient], expected: str, given: object
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        kind("k", "s", http_client=given)  # type: ignore[arg-type]
    assert str(caught.value) == (f"http_client must be an {expected}, not {type(given).__name__}")


# -- a caller's httpx.Client under CVClient ----------------------------------------------------


def test_a_sync_http_client_carries_every_call_to_the_emulator(
    cv_emulator: RunningEmulator,
) -> None:
    seen: list[tuple[str, str, str]] = []

    def on_request(request: httpx.Request) -> None:
        seen.append(("request", request.method, request.url.host + request.url.path))

    def on_response(response: httpx.Response) -> None:
        seen.append(("response", str(response.status_code), response.request.url.path))

    other = cv_emulator.base_url.replace("127.0.0.1", "localhost")
    http = httpx.Client(
        event_hooks={"request": [on_request], "response": [on_response]}, trust_env=False
    )
    with http, cv_emulator.sync_client(http_client=http) as c:
        assert c.extract_card(FRONT).cards[0].type == "chip_id_card_front"
        assert len(c.extract_cards(FRONT, BACK).cards) == 2
        assert c.ocr_card(cv_emulator.specimen_url("passport.jpg")).cards[0].type == "passport"
        raw = c.with_raw_response.extract_card(FRONT)
        assert raw.status_code == 200
        # A view on another origin goes through the same httpx.Client.
        there = c.with_options(base_url=other)
        assert there.extract_card(FRONT).cards[0].type == "chip_id_card_front"
        assert c.usage.answers == 5
        c.close()
        # The caller's client is the caller's: left open, and still usable.
        assert not http.is_closed
        stats = http.get(cv_emulator.base_url + "/_emulator/stats").json()
    assert stats["requests"] == 5
    paths = [
        PATH,
        "/api/v2/ekyc/cards",
        "/api/v2/ocr/card",
        PATH,
        PATH,
    ]
    hosts = ["127.0.0.1"] * 4 + ["localhost"]
    assert [s for s in seen if s[0] == "request"][:5] == [
        ("request", "GET" if "ocr" in p else "POST", h + p)
        for p, h in zip(paths, hosts, strict=True)
    ]
    assert [s for s in seen if s[0] == "response"][:5] == [("response", "200", p) for p in paths]


def test_a_sync_http_client_is_mocked_like_any_httpx_client(
    mock: respx.MockRouter, jpeg_file: Path
) -> None:
    route = mock.post(URL).respond(200, content=samples.answer(samples.CHIP_FRONT))
    fired: list[str] = []
    with httpx.Client(event_hooks={"request": [lambda r: fired.append(r.url.path)]}) as http:
        with CVClient(
            samples.API_KEY,
            samples.API_SECRET,
            base_url=samples.BASE_URL,
            http_client=http,
            default_headers={"X-Tenant": "acme"},
        ) as c:
            result = c.extract_card(jpeg_file)
        assert not http.is_closed
    assert result.cards[0].type == "chip_id_card_front"
    request = route.calls.last.request
    assert request.headers["X-Tenant"] == "acme"
    assert request.headers["X-Request-ID"] == result.request_id
    assert request.headers["Authorization"].startswith("Basic ")
    assert request.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    assert samples.JPEG in request.content
    assert fired == [PATH]


def test_a_sync_http_client_gets_the_clients_read_timeout(
    mock: respx.MockRouter, jpeg_file: Path
) -> None:
    mock.post(URL).mock(side_effect=httpx.ReadTimeout("slow"))
    with (
        httpx.Client() as http,
        CVClient(
            samples.API_KEY,
            samples.API_SECRET,
            base_url=samples.BASE_URL,
            http_client=http,
            max_retries=0,
            timeout=httpx.Timeout(5, read=1.5),
        ) as c,
        pytest.raises(APITimeoutError) as caught,
    ):
        c.extract_card(jpeg_file)
    assert caught.value.kind == "read"
    assert "read timeout of 1.5 s" in str(caught.value)


def test_a_sync_http_client_times_out_as_the_client_says(cv_emulator: RunningEmulator) -> None:
    # The answer comes after 0.6 s; the client's read timeout is 0.1 s, the httpx.Client's 60 s:
    # the client's timeout applies to every request it sends, through the caller's client too.
    cv_emulator.set_faults(latency=0.6)
    with (
        httpx.Client(timeout=60, trust_env=False) as http,
        cv_emulator.sync_client(
            http_client=http, max_retries=0, timeout=httpx.Timeout(5, read=0.1)
        ) as c,
    ):
        with pytest.raises(APITimeoutError) as caught:
            c.extract_card(FRONT)
        assert not http.is_closed
    assert caught.value.kind == "read"
    assert "no answer from the service within the read timeout of 0.1 s" in str(caught.value)
    assert caught.value.elapsed < 0.5


# A caller's httpx.Client whose transport blocks: a thread in it cannot be interrupted, so the
# client has to let go of it (on total_timeout, on close()) rather than wait.


class _HeldBody(httpx.SyncByteStream):
    def __init__(self, transport: _Blocking) -> None:
        self._transport = transport

    def __iter__(self) -> Iterator[bytes]:
        body = samples.answer(samples.CHIP_FRONT)
        yield body[:10]
        self._transport.entered.set()
        self._transport.release.wait(10)  # (the bound is a failure guard)
        yield body[10:]


class _Blocking(httpx.BaseTransport):
    """A synchronous transport that blocks until ``release`` is set: before the answer, or
    half-way through its body."""

    def __init__(self, release: threading.Event, where: str) -> None:
        self.release = release
        self.where = where
        self.entered = threading.Event()
        self.requests = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if self.where == "body":
            return httpx.Response(200, stream=_HeldBody(self))
        self.entered.set()
        self.release.wait(10)  # (the bound is a failure guard)
        return httpx.Response(200, content=samples.answer(samples.CHIP_FRONT))


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Set at teardown: lets the transport's threads the client let go of end."""
    event = threading.Event()
    yield event
    event.set()


@pytest.mark.parametrize("where", ["answer", "body"])
def test_total_timeout_lets_go_of_a_blocked_sync_http_client(
    release: threading.Event, jpeg_file: Path, where: str
) -> None:
    transport = _Blocking(release, where)
    with httpx.Client(transport=transport) as http:
        c = CVClient(
            samples.API_KEY,
            samples.API_SECRET,
            base_url=samples.BASE_URL,
            http_client=http,
            total_timeout=0.3,
            max_retries=0,
        )
        try:
            started = time.perf_counter()
            with pytest.raises(APITimeoutError) as caught:
                c.extract_card(jpeg_file)
            elapsed = time.perf_counter() - started
            in_flight = c.in_flight  # right after: the slot is free, the thread still blocked
            assert transport.entered.wait(10)
            assert not release.is_set()
        finally:
            started = time.perf_counter()
            c.close()
            closing = time.perf_counter() - started
        assert not http.is_closed
    assert caught.value.kind == "total"
    assert "total_timeout=0.3 s" in str(caught.value)
    assert elapsed < 2
    assert in_flight == 0
    assert closing < 2
    assert transport.requests == 1


@pytest.mark.parametrize("where", ["answer", "body"])
def test_close_mid_call_lets_go_of_a_blocked_sync_http_client(
    release: threading.Event, jpeg_file: Path, where: str
) -> None:
    transport = _Blocking(release, where)
    outcome: list[BaseException] = []
    with httpx.Client(transport=transport) as http:
        c = CVClient(
            samples.API_KEY, samples.API_SECRET, base_url=samples.BASE_URL, http_client=http
        )

        def call() -> None:
            try:
                c.extract_card(jpeg_file)
            except BaseException as exc:  # what the caller met is the point
                outcome.append(exc)

        caller = threading.Thread(target=call, daemon=True)
        caller.start()
        try:
            assert transport.entered.wait(10)
            started = time.perf_counter()
            c.close()
            closing = time.perf_counter() - started
            caller.join(10)
            assert not caller.is_alive()
        finally:
            c.close()
        assert not release.is_set()  # the transport's thread is still blocked: let go of
        assert not http.is_closed
    assert closing < 2
    assert c.is_closed
    [error] = outcome
    assert isinstance(error, ClientStateError)
    assert "closed while this call was in progress" in str(error)


class AuditSinkDown(Exception):
    """An exception of the application's own, raised by its httpx event hook."""


@pytest.mark.parametrize("kind", ["request", "response"])
def test_an_error_of_the_callers_own_from_its_httpx_event_hook_is_sent_once(
    mock: respx.MockRouter, jpeg_file: Path, kind: str
) -> None:
    # Not a network failure the client knows to be passing: resending would only meet it
    # again (and, after an answer, be billed again).
    route = mock.post(URL).respond(200, content=samples.answer(samples.CHIP_FRONT))
    fired: list[str] = []

    def audit(message: object) -> None:
        fired.append(kind)
        raise AuditSinkDown("audit sink unavailable at 10.0.0.7")

    with (
        httpx.Client(event_hooks={kind: [audit]}) as http,
        CVClient(
            samples.API_KEY,
            samples.API_SECRET,
            base_url=samples.BASE_URL,
            http_client=http,
            retry=RetryPolicy(max_retries=2, backoff_base=0.0, budget_capacity=None),
        ) as c,
    ):
        with pytest.raises(APIConnectionError) as caught:
            c.extract_card(jpeg_file)
        usage = c.usage
        assert c.in_flight == 0
    error = caught.value
    assert error.kind == "unknown"
    assert error.attempts == 1
    assert fired == [kind]
    assert route.call_count == (0 if kind == "request" else 1)
    assert (usage.requests, usage.retries) == (1, 0)
    assert "AuditSinkDown" in str(error)
    assert "10.0.0.7" not in str(error)  # named by its class, not its text


# -- messages name the class the caller holds -----------------------------------------------------


@pytest.mark.parametrize("kind", [AsyncCVClient, CVClient])
def test_missing_credentials_name_the_class_held(
    kind: type[AsyncCVClient] | type[CVClient],
) -> None:
    before = loop_threads()
    with pytest.raises(ConfigurationError) as caught:
        kind()
    assert f"pass them to {kind.__name__}(...) or set CVEKYC_API_KEY" in str(caught.value)
    if kind is CVClient:
        assert "AsyncCVClient" not in str(caught.value)
    assert loop_threads() == before


@pytest.mark.anyio
async def test_an_answer_too_large_names_the_class_held(
    mock: respx.MockRouter, jpeg_file: Path, flavour: str
) -> None:
    mock.route().respond(200, content=samples.answer(samples.CHIP_FRONT))
    named = "CVClient" if flavour == "sync" else "AsyncCVClient"
    async with client(flavour, max_response_size=100) as c:
        for view in (c, c.with_options(base_url="https://other.test", api_key="t", api_secret="s")):
            with pytest.raises(ResponseTooLargeError) as caught:
                await view.extract_card(jpeg_file)
            assert f"raise it with {named}(max_response_size=...)" in str(caught.value)
            assert "max_response_size=100 bytes" in str(caught.value)


def test_an_answer_too_large_through_a_sync_http_client_names_cvclient(
    mock: respx.MockRouter, jpeg_file: Path
) -> None:
    mock.post(URL).respond(200, content=samples.answer(samples.CHIP_FRONT))
    with (
        httpx.Client() as http,
        CVClient("k", "s", base_url=samples.BASE_URL, http_client=http, max_response_size=100) as c,
        pytest.raises(ResponseTooLargeError, match=r"CVClient\(max_response_size=\.\.\.\)"),
    ):
        c.extract_card(jpeg_file)


# -- a 404 names the URL asked ----------------------------------------------------------------


@pytest.mark.anyio
async def test_a_404_names_the_url_asked_and_says_to_check_base_url(
    cv_emulator: RunningEmulator, flavour: str
) -> None:
    wrong = cv_emulator.base_url + "/v1"
    image_url = cv_emulator.specimen_url("passport.jpg") + "?X-Signature=t0ken"
    made = flavoured(
        flavour,
        cv_emulator.api_key,
        cv_emulator.api_secret,
        base_url=wrong + "/",
        trust_env=False,
        max_retries=3,
    )
    async with made as c:
        calls = [
            (c.extract_card, (FRONT,), "/api/v2/ekyc/card"),
            (c.extract_cards, (FRONT, BACK), "/api/v2/ekyc/cards"),
            (c.ocr_card, (image_url,), "/api/v2/ocr/card"),
        ]
        for method, args, path in calls:
            with pytest.raises(NotFoundError) as caught:
                await method(*args)
            error = caught.value
            text = str(error)
            assert error.url == wrong + path
            assert f"nothing answers at {wrong + path};" in text
            assert "check base_url" in text
            assert "with no /api or /v1" in text
            # The URL without its query: neither the options nor an image URL's token.
            assert "?" not in text
            assert "format_type" not in text
            assert "t0ken" not in text
            assert "passport.jpg" not in text
            assert error.attempts == 1  # a wrong address is not retried
    assert cv_emulator.stats()["requests"] == 0  # the API itself was never reached


@pytest.mark.anyio
async def test_a_404_from_a_view_names_the_views_url(
    mock: respx.MockRouter, jpeg_file: Path, flavour: str
) -> None:
    mock.route().respond(404, json={"detail": "Not Found"})
    async with client(flavour) as c:
        view = c.with_options(base_url="https://api.test/tenant-a")
        with pytest.raises(NotFoundError, match=r"nothing answers at https://api\.test/tenant-a/"):
            await view.extract_card(jpeg_file)
        with pytest.raises(NotFoundError, match=r"nothing answers at https://api\.test/api/"):
            await c.extract_card(jpeg_file)


# -- timeouts give their seconds --------------------------------------------------------------

TIMEOUT = httpx.Timeout(5, connect=0.25, read=1.5, write=2.5, pool=7)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("exc", "kind", "shown"),
    [
        (httpx.ConnectTimeout, "connect", "could not connect to the service within the connect "),
        (httpx.ReadTimeout, "read", "no answer from the service within the read timeout of 1.5 s"),
        (httpx.WriteTimeout, "write", "did not finish within the write timeout of 2.5 s"),
        (httpx.PoolTimeout, "pool", "no connection came free within the pool timeout of 7 s"),
    ],
)
async def test_timeout_messages_give_the_seconds(
    mock: respx.MockRouter,
    jpeg_file: Path,
    flavour: str,
    exc: type[httpx.TimeoutException],
    kind: str,
    shown: str,
) -> None:
    mock.post(URL).mock(side_effect=exc("timed out"))
    async with client(flavour, timeout=TIMEOUT) as c:
        with pytest.raises(APITimeoutError) as caught:
            await c.extract_card(jpeg_file)
        error = caught.value
        assert error.kind == kind
        assert shown in str(error)
        assert "(change it with timeout=)" in str(error)
        if kind == "connect":
            assert "connect timeout of 0.25 s" in str(error)
        # A view's own timeout is the one named.
        with pytest.raises(APITimeoutError) as caught:
            await c.with_options(timeout=0.75).extract_card(jpeg_file)
        assert f"{kind} timeout of 0.75 s" in str(caught.value)


@pytest.mark.anyio
async def test_a_read_timeout_names_its_seconds(
    mock: respx.MockRouter, jpeg_file: Path, flavour: str
) -> None:
    mock.post(URL).mock(side_effect=httpx.ReadTimeout("slow"))
    async with client(flavour, timeout=httpx.Timeout(5, read=1.5)) as c:
        with pytest.raises(APITimeoutError, match=r"read timeout of 1\.5 s"):
            await c.extract_card(jpeg_file)


@pytest.mark.anyio
async def test_a_timeout_without_a_limit_says_none(
    mock: respx.MockRouter, jpeg_file: Path, flavour: str
) -> None:
    mock.post(URL).mock(side_effect=httpx.ReadTimeout("slow"))
    async with client(flavour, timeout=httpx.Timeout(5, read=None)) as c:
        with pytest.raises(APITimeoutError) as caught:
            await c.extract_card(jpeg_file)
    text = str(caught.value)
    assert "no answer from the service within the read timeout (change it with timeout=)" in text
    assert "None" not in text


@pytest.mark.anyio
async def test_the_overall_deadline_gives_its_seconds(
    mock: respx.MockRouter, jpeg_file: Path
) -> None:
    never = anyio.Event()

    async def silent(request: httpx.Request) -> httpx.Response:
        await never.wait()
        raise AssertionError("never answered")

    mock.post(URL).mock(side_effect=silent)
    async with client(total_timeout=0.05) as c:
        with anyio.fail_after(10), pytest.raises(APITimeoutError) as caught:
            await c.extract_card(jpeg_file)
    assert caught.value.kind == "total"
    assert "no answer within total_timeout=0.05 s" in str(caught.value)


# -- a client never closed warns once -------------------------------------------------------

# Run in a process of its own with ``-W default``: MODE and TRANSPORT come from the command line.
# Each client or view is dropped on a line of its own (``-W default`` shows a warning once per
# line), inside the running loop, then collected.
UNCLOSED = """
import asyncio
import gc
import sys

from cvekyc_async.emulator import serve_emulator, specimen_path

FRONT = specimen_path("chip_front.jpg")
mode, transport = sys.argv[1], sys.argv[2]


async def main(emu):
    c = emu.client(transport=None if transport == "auto" else transport)
    if mode == "view only":
        # The client itself is never kept: only a view of it, made at once.
        c = c.with_options(max_retries=0)
    if mode != "unused":
        await c.extract_card(FRONT)
    if mode == "root dropped":
        # The client, used, is dropped while a view of it is kept and used on.
        root, c = c, c.with_options(max_retries=0)
        del root
        gc.collect()
        await c.extract_card(FRONT)
    if mode in ("views", "closed"):
        view = c.with_options(max_retries=0)
        tenant = c.with_options(api_key="t", api_secret="s")
        there = c.with_options(base_url=emu.base_url.replace("127.0.0.1", "localhost"))
        await view.extract_card(FRONT)
        await there.extract_card(FRONT)
        del view
        gc.collect()
        del tenant
        gc.collect()
        del there
        gc.collect()
    if mode == "closed":
        await c.aclose()
    print("dropping", file=sys.stderr, flush=True)
    del c
    gc.collect()
    await asyncio.sleep(0)


with serve_emulator() as emu:
    asyncio.run(main(emu))
    gc.collect()
print("done", flush=True)
"""


@pytest.mark.parametrize("transport", ["auto", "sharded"])
@pytest.mark.parametrize(
    ("mode", "warnings"),
    [
        ("used", 1),
        ("views", 1),
        ("unused", 0),
        ("closed", 0),
        # Only a view is kept (the client's pool lives on in it): one warning, when the view
        # is dropped, and none while the client was.
        ("view only", 1),
        ("root dropped", 1),
    ],
)
def test_a_client_never_closed_warns_once(
    tmp_path: Path, transport: str, mode: str, warnings: int
) -> None:
    script = tmp_path / "unclosed.py"
    script.write_text(UNCLOSED, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-W", "default", str(script), mode, transport],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "done\n"
    err = proc.stderr
    assert "Traceback" not in err
    before, _, after = err.partition("dropping\n")
    # Views never warn; only the client does, and only once it is dropped.
    assert "ResourceWarning" not in before, err
    ours = [
        line
        for line in after.splitlines()
        if "ResourceWarning: unclosed AsyncCVClient: close it with 'async with' or aclose()" in line
    ]
    assert len(ours) == warnings, err
    # Nothing of aiohttp's own.
    assert "Unclosed client session" not in err
    assert "Unclosed connector" not in err
    assert "aiohttp" not in err
    if transport == "auto":
        # aiohttp's connections are dropped quietly: the client's warning is the only one.
        shown = [
            line
            for line in err.splitlines()
            if "ResourceWarning:" in line and "Enable tracemalloc" not in line
        ]
        assert len(shown) == warnings, err


# -- the command line: its version, and help for every option ----------------------------------


def test_the_command_line_prints_its_version() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "cvekyc_async.cli", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"cvekyc {cvekyc_async.__version__}\n"
    assert cvekyc_async.__version__


def _unhelped(parser: argparse.ArgumentParser, where: str) -> Iterator[str]:
    """Every option (and positional) of ``parser`` and its subcommands without help text."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helped = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                if not (helped.get(name) or "").strip():
                    yield f"{where} {name} (the command itself)"
                yield from _unhelped(sub, f"{where} {name}")
            continue
        text = action.help
        if not isinstance(text, str) or not text.strip() or text == argparse.SUPPRESS:
            yield f"{where} {'/'.join(action.option_strings) or action.dest}"


def test_every_option_of_every_command_has_help() -> None:
    parser = build_parser()
    subcommands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert subcommands
    assert {"extract", "batch", "emulator"} <= set(subcommands[0].choices)
    options = sum(len(sub._actions) for sub in subcommands[0].choices.values())
    assert options > 50  # the walk does reach the options
    assert list(_unhelped(parser, "cvekyc")) == []


def test_every_option_of_the_emulator_has_help() -> None:
    parser = build_emulator_parser()
    assert len(parser._actions) > 10
    assert list(_unhelped(parser, "emulator")) == []
