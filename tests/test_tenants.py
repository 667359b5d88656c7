"""Tenants (``with_options`` with other credentials, base URL or headers), ``default_headers``
and call ids (``X-Request-ID``), through both clients where the behaviour is shared."""

from __future__ import annotations

import base64
import contextlib
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest
import respx

from cvekyc_async import (
    APIStatusError,
    APITimeoutError,
    AsyncCVClient,
    AuthenticationError,
    ClientStateError,
    ConfigurationError,
    CVClient,
    CVError,
    InvalidInputError,
    NotFoundError,
    QueueTimeoutError,
)
from cvekyc_async._attempts import Engine
from cvekyc_async.emulator import RunningEmulator, specimen_path
from tests import samples
from tests._flavours import SyncDriven, flavoured
from tests.test_cli import env_for, lines, make_images, run

PATH = "/api/v2/ekyc/card"
URL = samples.BASE_URL + PATH
OTHER = "https://other.test"
OK = httpx.Response(200, content=samples.answer(samples.CHIP_FRONT))
TENANT_KEY, TENANT_SECRET = "tenant-a-key", "tenant-a-s3cr3t-value"


def basic(key: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()


CLIENT_AUTH = basic(samples.API_KEY, samples.API_SECRET)
TENANT_AUTH = basic(TENANT_KEY, TENANT_SECRET)


def client(flavour: str = "async", **kwargs: Any) -> Any:
    kwargs.setdefault("base_url", samples.BASE_URL)
    kwargs.setdefault("max_retries", 0)
    return flavoured(flavour, samples.API_KEY, samples.API_SECRET, **kwargs)


def engine_of(c: Any) -> Engine:
    """The engine (pool, limiter) behind an ``AsyncCVClient``, a ``CVClient`` or a driven one."""
    if isinstance(c, SyncDriven):
        c = c.sync
    if isinstance(c, CVClient):
        c = c._async
    engine: Engine = c._engine
    return engine


def is_uuid4(text: object) -> bool:
    if not isinstance(text, str):
        return False
    try:
        return uuid.UUID(text).version == 4 and str(uuid.UUID(text)) == text
    except ValueError:
        return False


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    # No base_url: routes name their host, so that views on other origins can be told apart.
    with respx.mock(assert_all_called=False) as router:
        yield router


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    import cvekyc_async._attempts as attempts

    async def instant(delay: float) -> None:
        await anyio.lowlevel.checkpoint()

    monkeypatch.setattr(attempts, "_sleep", instant)


def sent(router: respx.MockRouter, name: str) -> list[str | None]:
    """The value of one header on every request the router saw, in order."""
    return [call.request.headers.get(name) for call in router.calls]


async def _usage(c: Any) -> Any:
    # ``usage`` is a property; through a driven CVClient it is reached in a worker thread.
    if isinstance(c, SyncDriven):
        return await anyio.to_thread.run_sync(lambda: c.sync.usage)
    return c.usage


# -- tenants: credentials and usage counts ---------------------------------------------------


@pytest.mark.anyio
async def test_a_tenant_sends_its_own_credentials_and_keeps_its_own_counts(
    mock: respx.MockRouter, jpeg_file: Path, flavour: str
) -> None:
    mock.post(URL).mock(return_value=OK)
    async with client(flavour) as c:
        tenant = c.with_options(api_key=TENANT_KEY, api_secret=TENANT_SECRET)
        await c.extract_card(jpeg_file)
        await tenant.extract_card(jpeg_file)
        await tenant.extract_card(jpeg_file)
        assert sent(mock, "Authorization") == [CLIENT_AUTH, TENANT_AUTH, TENANT_AUTH]
        # Each set of credentials counts its own calls: neither includes the other's.
        client_usage, tenant_usage = await _usage(c), await _usage(tenant)
        assert (client_usage.requests, client_usage.billed) == (1, 1)
        assert (tenant_usage.requests, tenant_usage.billed) == (2, 2)
        # Views that keep the credentials keep the counts: of the client, of the tenant.
        fast = c.with_options(timeout=3, default_headers={"X-Shard": "1"}, base_url=OTHER)
        tenant_view = tenant.with_options(max_retries=1, request_id_header="X-Trace-Id")
        mock.post(OTHER + PATH).mock(return_value=OK)
        await fast.extract_card(jpeg_file)
        await tenant_view.extract_card(jpeg_file)
        assert sent(mock, "Authorization")[3:] == [CLIENT_AUTH, TENANT_AUTH]
        assert (await _usage(c)).requests == (await _usage(fast)).requests == 2
        assert (await _usage(tenant)).requests == (await _usage(tenant_view)).requests == 3


@pytest.mark.anyio
async def test_a_view_given_the_clients_own_credentials_shares_its_counts(
    mock: respx.MockRouter, jpeg_file: Path
) -> None:
    mock.post(URL).mock(return_value=OK)
    async with client() as c:
        same = c.with_options(api_key=samples.API_KEY, api_secret=samples.API_SECRET)
        await same.extract_card(jpeg_file)
        assert c.usage.requests == 1


@pytest.mark.anyio
async def test_views_given_the_same_credentials_share_counts(
    mock: respx.MockRouter, jpeg_file: Path
) -> None:
    mock.post(URL).mock(return_value=OK)
    async with client() as c:
        first = c.with_options(api_key=TENANT_KEY, api_secret=TENANT_SECRET)
        second = c.with_options(api_key=TENANT_KEY, api_secret=TENANT_SECRET)
        await first.extract_card(jpeg_file)
        await second.extract_card(jpeg_file)
        assert first.usage.requests == second.usage.requests == 2


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"api_key": TENANT_KEY}, "api_key and api_secret together"),
        ({"api_secret": TENANT_SECRET}, "api_key and api_secret together"),
        (
            {"api_key": "", "api_secret": TENANT_SECRET},
            r"missing api_key: give both to with_options\(",
        ),
        ({"api_key": "a:b", "api_secret": TENANT_SECRET}, "must not contain ':'"),
        ({"api_key": TENANT_KEY, "api_secret": "x\r\ny"}, "line breaks"),
        ({"base_url": "http://other.test"}, "plain http"),
    ],
)
@pytest.mark.parametrize("kind", [AsyncCVClient, CVClient])
def test_a_tenants_credentials_are_checked(
    kind: type[AsyncCVClient] | type[CVClient], options: dict[str, str], message: str
) -> None:
    c = kind(samples.API_KEY, samples.API_SECRET, base_url=samples.BASE_URL)
    try:
        with pytest.raises(ConfigurationError, match=message) as caught:
            c.with_options(**options)  # type: ignore[arg-type]
    finally:
        if isinstance(c, CVClient):
            c.close()
    text = str(caught.value)
    assert TENANT_SECRET not in text
    if "missing" in message:
        assert "CVEKYC_API_KEY" not in text  # the environment plays no part in a view


# -- tenants: the pool and the concurrency limit ----------------------------------------------


@pytest.mark.anyio
async def test_a_tenant_on_the_same_origin_shares_the_pool(
    mock: respx.MockRouter, jpeg_file: Path, flavour: str
) -> None:
    mock.post(url__startswith=samples.BASE_URL).mock(return_value=OK)
    async with client(flavour) as c:
        tenant = c.with_options(api_key=TENANT_KEY, api_secret=TENANT_SECRET)
        prefixed = tenant.with_options(base_url=samples.BASE_URL + "/tenant-a/")
        explicit_port = c.with_options(base_url="https://api.test:443")
        for view in (tenant, prefixed, explicit_port):
            assert engine_of(view) is engine_of(c)
        assert prefixed.base_url == samples.BASE_URL + "/tenant-a"
        await prefixed.extract_card(jpeg_file)
    assert str(mock.calls.last.request.url).startswith(samples.BASE_URL + "/tenant-a" + PATH + "?")
    assert mock.calls.last.request.headers["Authorization"] == TENANT_AUTH


@pytest.mark.anyio
async def test_a_tenants_call_waits_for_the_clients_call_in_flight(
    mock: respx.MockRouter, jpeg_file: Path
) -> None:
    entered, release = anyio.Event(), anyio.Event()
    seen: list[str] = []

    async def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Authorization"])
        if len(seen) == 1:
            entered.set()
            await release.wait()
        return httpx.Response(200, content=samples.answer(samples.CHIP_FRONT))

    mock.post(URL).mock(side_effect=answer)
    async with client(max_concurrency=1) as c:
        tenant = c.with_options(api_key=TENANT_KEY, api_secret=TENANT_SECRET)
        impatient = tenant.with_options(queue_timeout=0)
        assert engine_of(tenant) is engine_of(c)
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(c.extract_card, jpeg_file)
                await entered.wait()
                tg.start_soon(tenant.extract_card, jpeg_file)
                limiter = engine_of(c)._limiter
                assert limiter is not None
                while limiter.statistics().tasks_waiting == 0:
                    await anyio.lowlevel.checkpoint()
                # The client's call holds the only slot: the tenant's waits, unsent.
                assert seen == [CLIENT_AUTH]
                assert c.in_flight == tenant.in_flight == 1
                with pytest.raises(QueueTimeoutError):
                    await impatient.extract_card(jpeg_file)
                release.set()
        assert seen == [CLIENT_AUTH, TENANT_AUTH]
        assert c.usage.requests == 1
        assert tenant.usage.requests == 1


@pytest.mark.anyio
async def test_another_origin_gets_its_own_pool_made_once_and_closed_with_the_client(
    mock: respx.MockRouter, jpeg_file: Path
) -> None:
    entered, release = anyio.Event(), anyio.Event()

    async def held(request: httpx.Request) -> httpx.Response:
        entered.set()
        await release.wait()
        return httpx.Response(200, content=samples.answer(samples.CHIP_FRONT))

    mock.post(URL).mock(side_effect=held)
    elsewhere = mock.post(OTHER + "/v2" + PATH).mock(return_value=OK)
    c = client(max_concurrency=1)
    tenant = c.with_options(api_key=TENANT_KEY, api_secret=TENANT_SECRET)
    there = c.with_options(base_url=OTHER + "/v2")
    again = tenant.with_options(base_url=OTHER + "/")
    other_port = c.with_options(base_url=OTHER + ":8443")
    # One pool per origin, made once, whoever asks for it; none for the client's own origin.
    assert engine_of(there) is engine_of(again) is engine_of(there.with_options(max_retries=3))
    assert engine_of(there) is not engine_of(c)
    assert engine_of(other_port) not in (engine_of(c), engine_of(there))
    assert engine_of(there.with_options(base_url=samples.BASE_URL)) is engine_of(c)
    assert there.max_concurrency == 1
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(c.extract_card, jpeg_file)
            await entered.wait()
            # The client's only slot is taken; the other origin has slots of its own.
            result = await there.with_options(queue_timeout=0).extract_card(jpeg_file)
            release.set()
    assert result.cards[0].type == "chip_id_card_front"
    assert elsewhere.call_count == 1
    assert elsewhere.calls.last.request.headers["Authorization"] == CLIENT_AUTH
    pool = engine_of(there)
    await c.aclose()
    assert pool.closed
    assert there.is_closed
    assert other_port.is_closed
    assert isinstance(pool.http, httpx.AsyncClient)
    assert pool.http.is_closed
    with pytest.raises(ClientStateError, match="closed"):
        await there.extract_card(jpeg_file)
    with pytest.raises(ClientStateError, match="closed"):
        c.with_options(base_url="https://third.test")
    assert elsewhere.call_count == 1


@pytest.mark.anyio
async def test_another_origin_against_the_emulator(
    cv_emulator: RunningEmulator, flavour: str
) -> None:
    front = specimen_path("chip_front.jpg")
    other = cv_emulator.base_url.replace("127.0.0.1", "localhost")
    made = flavoured(
        flavour,
        cv_emulator.api_key,
        cv_emulator.api_secret,
        base_url=cv_emulator.base_url,
        trust_env=False,
    )
    async with made as c:
        there = c.with_options(base_url=other)
        for _ in range(2):
            assert (await c.extract_card(front)).cards[0].type == "chip_id_card_front"
            assert (await there.extract_card(front)).cards[0].type == "chip_id_card_front"
        assert engine_of(there) is not engine_of(c)
        assert there.base_url == other
    assert engine_of(there).closed
    assert engine_of(c).closed
    stats = cv_emulator.stats()
    assert stats["requests"] == 4
    # One connection per origin, each reused: the view's pool is its own, and kept.
    assert stats["connections"] == 2


def test_views_made_from_many_threads_share_one_pool_per_origin() -> None:
    # CVClient may be shared across threads, and with_options runs in the caller's thread. The
    # first thread to build the other origin's pool waits there for the second to arrive: with
    # a lock the second never does (the wait then gives up), without one both build a pool.
    with CVClient(samples.API_KEY, samples.API_SECRET, base_url=samples.BASE_URL) as c:
        root = engine_of(c)
        spawn = root.spawn
        assert spawn is not None
        both_inside = threading.Barrier(2, timeout=0.5)

        def meeting_spawn(url: str) -> Engine:
            with contextlib.suppress(threading.BrokenBarrierError):
                both_inside.wait()
            return spawn(url)

        root.spawn = meeting_spawn
        views: list[CVClient] = []
        threads = [
            threading.Thread(target=lambda: views.append(c.with_options(base_url=OTHER)))
            for _ in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        pools = [engine_of(view) for view in views]
    assert len(pools) == 2
    assert [pool.closed for pool in pools] == [True, True]
    assert pools[0] is pools[1]


# -- what never shows ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_credentials_and_header_values_are_never_in_a_repr(
    mock: respx.MockRouter, jpeg_file: Path, flavour: str
) -> None:
    mock.post(url__startswith=samples.BASE_URL).mock(return_value=OK)
    headers = {"X-Tenant-Token": "tok-HEADER-VALUE-42"}
    async with client(flavour, default_headers=headers) as c:
        tenant = c.with_options(
            api_key=TENANT_KEY, api_secret=TENANT_SECRET, default_headers={"X-Other": "VAL-99"}
        )
        views = [c, tenant, tenant.with_options(base_url=OTHER), c.with_options(max_retries=1)]
        await c.extract_card(jpeg_file)
        await tenant.extract_card(jpeg_file)
        texts = []
        for view in views:
            inner = view.sync if isinstance(view, SyncDriven) else view
            texts += [repr(view), str(view), repr(vars(inner))]
            if isinstance(inner, CVClient):
                texts.append(repr(vars(inner._async)))
    assert "view" in repr(tenant)
    for text in texts:
        for hidden in (
            samples.API_KEY,
            samples.API_SECRET,
            TENANT_KEY,
            TENANT_SECRET,
            CLIENT_AUTH.split()[1],
            TENANT_AUTH.split()[1],
            "tok-HEADER-VALUE-42",
            "VAL-99",
        ):
            assert hidden not in text


# -- default_headers ------------------------------------------------------------------------


def _setup(
    flavour: str, pool: str, **kwargs: Any
) -> tuple[Any, httpx.Client | httpx.AsyncClient | None]:
    """A client of ``flavour`` on its own pool, or on a caller's ``http_client`` (an
    ``httpx.AsyncClient`` for ``AsyncCVClient``, an ``httpx.Client`` for ``CVClient``)."""
    kwargs.setdefault("base_url", samples.BASE_URL)
    http: httpx.Client | httpx.AsyncClient | None = None
    if pool == "http_client":
        headers = {"X-From-Http": "1"}
        http = (
            httpx.Client(headers=headers)
            if flavour == "sync"
            else httpx.AsyncClient(headers=headers)
        )
        kwargs["http_client"] = http
    return flavoured(flavour, samples.API_KEY, samples.API_SECRET, **kwargs), http


async def _close(http: httpx.Client | httpx.AsyncClient | None) -> None:
    if isinstance(http, httpx.Client):
        http.close()
    elif http is not None:
        await http.aclose()


POOLS = ["own pool", "http_client"]


@pytest.mark.anyio
@pytest.mark.parametrize("pool", POOLS)
async def test_default_headers_are_sent_on_every_request(
    mock: respx.MockRouter, jpeg_file: Path, flavour: str, pool: str
) -> None:
    mock.post(URL).mock(side_effect=[httpx.Response(503), OK, OK])
    mock.get(URL).mock(return_value=OK)
    headers = {"X-Tenant": "acme", "X-Api-Version": "2024-01"}
    c, http = _setup(flavour, pool, default_headers=headers, max_retries=1)
    async with c:
        await c.extract_card(jpeg_file)  # a retried call: both attempts
        await c.with_raw_response.extract_card(jpeg_file)
        await c.extract_card("https://images.test/card.jpg")  # a GET, the image in the query
    assert [call.request.method for call in mock.calls] == ["POST", "POST", "POST", "GET"]
    assert sent(mock, "X-Tenant") == ["acme"] * 4
    assert sent(mock, "X-Api-Version") == ["2024-01"] * 4
    assert sent(mock, "Authorization") == [CLIENT_AUTH] * 4
    if http is not None:
        # The caller's client adds its own headers; the client's own go out with them.
        assert sent(mock, "X-From-Http") == ["1"] * 4
        assert not http.is_closed
    await _close(http)


@pytest.mark.anyio
@pytest.mark.parametrize("pool", POOLS)
async def test_a_default_header_replaces_a_header_of_the_same_name(
    mock: respx.MockRouter, jpeg_file: Path, flavour: str, pool: str
) -> None:
    mock.post(URL).mock(return_value=OK)
    c, http = _setup(
        flavour, pool, default_headers={"User-Agent": "acme-kyc/3", "x-from-http": "mine"}
    )
    async with c:
        await c.extract_card(jpeg_file)
    request = mock.calls.last.request
    assert request.headers.get_list("User-Agent") == ["acme-kyc/3"]
    if http is not None:
        assert request.headers.get_list("X-From-Http") == ["mine"]
    await _close(http)


@pytest.mark.anyio
async def test_a_views_default_headers_replace_the_clients(
    mock: respx.MockRouter, jpeg_file: Path, flavour: str
) -> None:
    mock.post(URL).mock(return_value=OK)
    async with client(flavour, default_headers={"X-A": "client"}) as c:
        tenant = c.with_options(api_key=TENANT_KEY, api_secret=TENANT_SECRET)
        replaced = c.with_options(default_headers={"X-B": "view"})
        cleared = c.with_options(default_headers=None)
        for view in (c, tenant, replaced, cleared, replaced.with_options(max_retries=1)):
            await view.extract_card(jpeg_file)
    # A tenant's view (other credentials) starts without the client's headers: they often
    # carry the tenant's own token.
    assert sent(mock, "X-A") == ["client", None, None, None, None]
    assert sent(mock, "X-B") == [None, None, "view", None, "view"]


@pytest.mark.anyio
async def test_a_tenant_keeps_the_headers_it_was_given_with_its_credentials(
    mock: respx.MockRouter, jpeg_file: Path
) -> None:
    mock.post(URL).mock(return_value=OK)
    async with client(default_headers={"X-Sub-Token": "client-token"}) as c:
        a = c.with_options(
            api_key="tenant-a", api_secret="sa", default_headers={"X-Sub-Token": "a"}
        )
        b = a.with_options(api_key="tenant-b", api_secret="sb")
        for view in (a, a.with_options(max_retries=0), b):
            await view.extract_card(jpeg_file)
    assert sent(mock, "X-Sub-Token") == ["a", "a", None]  # never one tenant's token for another


@pytest.mark.anyio
async def test_a_cookie_one_tenants_answer_set_in_the_callers_jar_goes_out_with_no_request(
    mock: respx.MockRouter, jpeg_file: Path, flavour: str
) -> None:
    # A gateway in front of the service sets a session cookie on tenant A's answer; the
    # caller's http_client keeps it in its jar. It must not go out with tenant B's request
    # (nor with any other of the client's): the service sets none, and it is A's session.
    set_cookie = httpx.Response(
        200,
        content=samples.answer(samples.CHIP_FRONT),
        headers={"Set-Cookie": "gw_session=issued-to-tenant-a; Path=/"},
    )
    route = mock.post(URL).mock(side_effect=[set_cookie, OK, OK, OK, OK])
    mock.get(samples.BASE_URL + "/health").mock(return_value=httpx.Response(204))
    c, http = _setup(flavour, "http_client")
    assert http is not None
    async with c:
        a = c.with_options(api_key=TENANT_KEY, api_secret=TENANT_SECRET)
        b = c.with_options(api_key="tenant-b-key", api_secret="tenant-b-secret")
        own_cookie = c.with_options(
            api_key="tenant-c-key",
            api_secret="tenant-c-secret",
            default_headers={"Cookie": "pref=c"},
        )
        await a.extract_card(jpeg_file)
        assert http.cookies.get("gw_session") == "issued-to-tenant-a"  # the jar has it
        await b.extract_card(jpeg_file)
        await c.extract_card(jpeg_file)
        await a.extract_card(jpeg_file)
        await own_cookie.extract_card(jpeg_file)
    assert sent(mock, "Authorization")[:3] == [
        TENANT_AUTH,
        basic("tenant-b-key", "tenant-b-secret"),
        CLIENT_AUTH,
    ]
    assert [call.request.headers.get_list("Cookie") for call in route.calls] == [
        [],  # tenant A's first call: nothing in the jar yet
        [],  # tenant B's
        [],  # the client's own
        [],  # tenant A's next: the client's requests carry no jar cookie at all
        ["pref=c"],  # a Cookie given in default_headers still goes, as given
    ]
    # The caller's own requests through its client still get the jar's cookie: it is kept,
    # only left out of the client's requests.
    if isinstance(http, httpx.Client):
        await anyio.to_thread.run_sync(http.get, samples.BASE_URL + "/health")
    else:
        await http.get(samples.BASE_URL + "/health")
    assert mock.calls.last.request.headers.get("Cookie") == "gw_session=issued-to-tenant-a"
    await _close(http)


@pytest.mark.parametrize(
    "name",
    [
        "Authorization",
        "authorization",
        "Host",
        "Content-Type",
        "content-length",
        "Transfer-Encoding",
        "X-Request-ID",
        "x-request-id",
    ],
)
@pytest.mark.parametrize("where", ["AsyncCVClient", "CVClient", "view", "sync view"])
def test_headers_the_client_sets_cannot_be_defaults(name: str, where: str) -> None:
    value = "Bearer v4lue-never-shown"
    with pytest.raises(ConfigurationError) as caught:
        _with_headers(where, {name: value})
    text = str(caught.value)
    assert repr(name) in text
    assert "v4lue" not in text


@pytest.mark.parametrize(
    "value",
    [
        "a\r\nX-Injected: 1",
        "line\nbreak",
        "carriage\rreturn",
        "nul\0byte",
        "bell\x07",
    ],
)
@pytest.mark.parametrize("where", ["AsyncCVClient", "CVClient", "view", "sync view"])
def test_header_values_with_line_breaks_are_refused_without_being_quoted(
    value: str, where: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        _with_headers(where, {"X-Tenant": "tok3n-" + value})
    text = str(caught.value)
    assert "'X-Tenant'" in text
    assert "tok3n" not in text
    assert "\r" not in text
    assert "\n" not in text


@pytest.mark.parametrize("value", ["caf\u00e9", "Nguy\u1ec5n", "\u00a0spaced"])
@pytest.mark.parametrize("where", ["AsyncCVClient", "CVClient", "view", "sync view"])
def test_header_values_beyond_ascii_are_refused_at_construction(value: str, where: str) -> None:
    # httpx sends header values as ASCII and failed at the first request with a bare
    # UnicodeEncodeError; aiohttp sent UTF-8: refused alike, before anything is sent.
    with pytest.raises(ConfigurationError) as caught:
        _with_headers(where, {"X-Tenant": "tok3n-" + value})
    text = str(caught.value)
    assert "'X-Tenant'" in text
    assert "cannot carry" in text
    assert "tok3n" not in text


PASTED_LINES = ["X-Api-Key: sk_live_abc", "X-Api-Key:sk_live_abc", "X-Api-Key sk_live_abc"]


@pytest.mark.parametrize("line", PASTED_LINES)
@pytest.mark.parametrize("where", ["AsyncCVClient", "CVClient", "view", "sync view"])
def test_a_header_line_pasted_as_a_default_headers_name_is_refused_without_its_value(
    line: str, where: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        _with_headers(where, {line: ""})
    error = caught.value
    for shown in (str(error), repr(error), repr(error.args)):
        assert "sk_live_abc" not in shown
    assert "default_headers" in str(error)
    assert "not a header name" in str(error)


@pytest.mark.parametrize("line", PASTED_LINES)
@pytest.mark.parametrize("where", ["AsyncCVClient", "CVClient", "view", "sync view"])
def test_a_header_line_pasted_as_request_id_header_is_refused_without_its_value(
    line: str, where: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        _with_request_id_header(where, line)
    error = caught.value
    for shown in (str(error), repr(error), repr(error.args)):
        assert "sk_live_abc" not in shown
    assert "request_id_header" in str(error)


def test_a_custom_request_id_header_is_reserved_too() -> None:
    with pytest.raises(ConfigurationError, match="'x-corr'"):
        AsyncCVClient("k", "s", request_id_header="X-Corr", default_headers={"x-corr": "1"})
    c = AsyncCVClient("k", "s", default_headers={"X-Corr": "1"})
    with pytest.raises(ConfigurationError, match="'X-Corr'"):
        c.with_options(request_id_header="X-Corr")
    # Once the id goes in another header, X-Request-ID is a header like any other.
    AsyncCVClient("k", "s", request_id_header="X-Corr", default_headers={"X-Request-ID": "1"})


def _with_request_id_header(where: str, name: str) -> None:
    if where == "AsyncCVClient":
        AsyncCVClient("k", "s", request_id_header=name)
    elif where == "CVClient":
        CVClient("k", "s", request_id_header=name)
    elif where == "view":
        AsyncCVClient("k", "s").with_options(request_id_header=name)
    else:
        with CVClient("k", "s") as c:
            c.with_options(request_id_header=name)


def _with_headers(where: str, headers: dict[str, str]) -> None:
    if where == "AsyncCVClient":
        AsyncCVClient("k", "s", default_headers=headers)
    elif where == "CVClient":
        CVClient("k", "s", default_headers=headers)
    elif where == "view":
        AsyncCVClient("k", "s").with_options(default_headers=headers)
    else:
        with CVClient("k", "s") as c:
            c.with_options(default_headers=headers)


# -- request ids --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_each_call_sends_a_fresh_request_id_kept_on_all_its_attempts(
    mock: respx.MockRouter, jpeg_file: Path, flavour: str
) -> None:
    mock.post(URL).mock(side_effect=[httpx.Response(503), httpx.Response(502), OK, OK, OK])
    async with client(flavour, max_retries=2) as c:
        first = await c.extract_card(jpeg_file)
        second = await c.extract_card(jpeg_file)
        raw = await c.with_raw_response.extract_card(jpeg_file)
    ids = sent(mock, "X-Request-ID")
    assert first.attempts == 3
    assert ids[:3] == [first.request_id] * 3  # one id for every attempt of a call
    assert ids[3:] == [second.request_id, raw.request_id]
    assert raw.parse().request_id == raw.request_id
    assert len({first.request_id, second.request_id, raw.request_id}) == 3
    assert all(is_uuid4(i) for i in ids)
    assert first.to_dict()["request_id"] == first.request_id


@pytest.mark.anyio
async def test_every_error_carries_its_calls_request_id(
    mock: respx.MockRouter, jpeg_file: Path, flavour: str
) -> None:
    route = mock.post(URL)
    async with client(flavour, max_retries=1) as c:
        # Refused before sending: the id was never sent, but the error still has one.
        with pytest.raises(InvalidInputError) as refused:
            await c.extract_card(b"not an image")
        assert is_uuid4(refused.value.request_id)
        assert mock.calls.call_count == 0
        cases: list[tuple[Any, type[CVError]]] = [
            ([httpx.ReadTimeout("slow"), httpx.ReadTimeout("slow")], APITimeoutError),
            ([httpx.Response(503), httpx.Response(503)], APIStatusError),
            ([httpx.Response(404)], NotFoundError),
            ([httpx.Response(200, content=samples.answer([], code="5"))], AuthenticationError),
        ]
        for effects, kind in cases:
            route.mock(side_effect=effects)
            before = mock.calls.call_count
            with pytest.raises(kind) as caught:
                await c.extract_card(jpeg_file)
            ids = sent(mock, "X-Request-ID")[before:]
            assert len(ids) == len(effects)
            assert ids == [caught.value.request_id] * len(effects), kind
            assert is_uuid4(caught.value.request_id)
            assert caught.value.request_id != refused.value.request_id


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"X-Request-Id": "svc-1"}, "svc-1"),
        ({"Request-Id": "svc-2"}, "svc-2"),
        ({"X-Correlation-Id": "corr:3/4+="}, "corr:3/4+="),
        # The first of them, in that order, is taken.
        ({"X-Correlation-Id": "c", "Request-Id": "r", "X-Request-Id": "x"}, "x"),
        ({"X-Correlation-Id": "c", "Request-Id": "r"}, "r"),
        # Only opaque tokens: not text that could carry anything.
        ({"X-Request-Id": "name: Nguyen Van A"}, None),
        ({"X-Request-Id": "<script>", "X-Correlation-Id": "ok-5"}, "ok-5"),
        ({"X-Trace-Id": "t-1"}, None),
    ],
)
async def test_the_services_own_request_id_is_kept_apart_from_the_calls(
    mock: respx.MockRouter,
    jpeg_file: Path,
    flavour: str,
    headers: dict[str, str],
    expected: str | None,
) -> None:
    route = mock.post(URL).respond(200, content=samples.answer(samples.CHIP_FRONT), headers=headers)
    async with client(flavour) as c:
        result = await c.extract_card(jpeg_file)
        raw = await c.with_raw_response.extract_card(jpeg_file)
        route.respond(500, content=b"", headers=headers)
        with pytest.raises(APIStatusError) as caught:
            await c.extract_card(jpeg_file)
    ids = sent(mock, "X-Request-ID")
    assert (result.request_id, raw.request_id, caught.value.request_id) == tuple(ids)
    assert result.service_request_id == raw.service_request_id == expected
    assert caught.value.service_request_id == expected


@pytest.mark.anyio
async def test_the_request_id_header_can_be_renamed_or_left_out(
    mock: respx.MockRouter, jpeg_file: Path, flavour: str
) -> None:
    mock.post(URL).mock(return_value=OK)
    async with client(flavour, request_id_header="X-Correlation-ID") as c:
        renamed = await c.extract_card(jpeg_file)
        await c.with_options(request_id_header=None).extract_card(jpeg_file)
        tenant = c.with_options(api_key=TENANT_KEY, api_secret=TENANT_SECRET)
        tenants = await tenant.extract_card(jpeg_file)  # keeps the client's name for it
        back = await tenant.with_options(request_id_header="X-Request-ID").extract_card(jpeg_file)
    assert sent(mock, "X-Correlation-ID") == [renamed.request_id, None, tenants.request_id, None]
    assert sent(mock, "X-Request-ID") == [None, None, None, back.request_id]
    headers = mock.calls[1].request.headers
    assert not any(is_uuid4(v) for v in headers.values())
    async with client(flavour, request_id_header=None) as c:
        await c.extract_card(jpeg_file)
    assert not any(is_uuid4(v) for v in mock.calls.last.request.headers.values())


@pytest.mark.parametrize(
    "name", ["X Request", "X-Request-ID:", "Authorization", "content-type", "", 42, "x\r\ny"]
)
@pytest.mark.parametrize("where", ["client", "view"])
def test_a_bad_request_id_header_is_refused(name: Any, where: str) -> None:
    def make() -> object:
        if where == "client":
            return AsyncCVClient("k", "s", request_id_header=name)
        return AsyncCVClient("k", "s").with_options(request_id_header=name)

    with pytest.raises(ConfigurationError, match="request_id_header"):
        make()


def test_batch_records_carry_the_request_ids(cv_emulator: RunningEmulator, tmp_path: Path) -> None:
    make_images(tmp_path / "imgs", 3)
    blank = tmp_path / "imgs" / "blank.jpg"
    blank.write_bytes(specimen_path("blank.jpg").read_bytes())
    out = tmp_path / "out.jsonl"
    proc = run("batch", str(tmp_path / "imgs"), "-o", str(out), env=env_for(cv_emulator))
    assert proc.returncode == 1, proc.stderr  # the blank page fails
    records = lines(out)
    assert len(records) == 4
    assert [r["ok"] for r in records].count(False) == 1
    for record in records:
        assert is_uuid4(record["request_id"]), record
        # The emulator names no request of its own: the field is there, empty.
        assert "service_request_id" in record
        assert record["service_request_id"] is None
    assert len({r["request_id"] for r in records}) == 4
