"""Environment proxies, as httpx honours them: through a real proxy process, on every transport."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme

from cvekyc_async import APIConnectionError, APITimeoutError, AsyncCVClient, ConfigurationError
from cvekyc_async._transport import environment_proxy
from cvekyc_async.emulator import EmulatorApp, EmulatorState, RunningEmulator, specimen_path
from cvekyc_async.emulator._server import _Server, bind_socket, uvicorn_config
from tests._raw import silent_server

pytestmark = pytest.mark.anyio
CARD = specimen_path("chip_front.jpg")
ROOT = Path(__file__).resolve().parent.parent


class Proxy:
    """The proxy process and the request lines it has printed."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests._proxy"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.proc.stdout is not None
        banner = self.proc.stdout.readline()
        assert banner.startswith("listening on "), banner
        self.url = f"http://127.0.0.1:{banner.split()[-1]}"
        self._lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.append(line.strip())

    def stop(self) -> list[str]:
        if self.proc.returncode is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
            self._reader.join(timeout=30)
            assert self.proc.stdout is not None
            self.proc.stdout.close()
        return list(self._lines)


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    p = Proxy()
    yield p
    p.stop()


TRANSPORTS = ["sharded", "pool", "aiohttp"]


def skip_aiohttp_on_trio(transport: str, anyio_backend: str) -> None:
    if transport == "aiohttp" and anyio_backend == "trio":
        pytest.skip("the aiohttp transport runs under asyncio only")


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy", "ALL_PROXY"])
async def test_requests_go_through_the_proxy_the_environment_names(
    cv_emulator: RunningEmulator,
    proxy: Proxy,
    monkeypatch: pytest.MonkeyPatch,
    anyio_backend: str,
    transport: str,
    variable: str,
) -> None:
    skip_aiohttp_on_trio(transport, anyio_backend)
    monkeypatch.setenv(variable, proxy.url)
    async with cv_emulator.client(trust_env=True, transport=transport) as client:
        res = await client.extract_card(CARD)
        await client.extract_card(CARD)
    assert res.cards[0].type == "chip_id_card_front"
    seen = proxy.stop()
    path = f"POST {cv_emulator.base_url}/api/v2/ekyc/card?format_type=file&get_thumb=false"
    assert seen == [path, path]
    assert cv_emulator.stats()["requests"] == 2


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "*", "localhost,127.0.0.1"])
async def test_no_proxy_and_trust_env_false_go_direct(
    cv_emulator: RunningEmulator,
    proxy: Proxy,
    monkeypatch: pytest.MonkeyPatch,
    anyio_backend: str,
    transport: str,
    no_proxy: str,
) -> None:
    skip_aiohttp_on_trio(transport, anyio_backend)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", no_proxy)
    async with cv_emulator.client(trust_env=True, transport=transport) as client:
        await client.extract_card(CARD)
    monkeypatch.delenv("NO_PROXY")
    async with cv_emulator.client(trust_env=False, transport=transport) as client:
        await client.extract_card(CARD)
    assert proxy.stop() == []
    assert cv_emulator.stats()["requests"] == 2


async def test_the_emulators_client_ignores_environment_proxies(
    cv_emulator: RunningEmulator, proxy: Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The emulator is always on this machine: its ready-made client never goes through a proxy.
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    async with cv_emulator.client() as client:
        await client.extract_card(CARD)
    assert proxy.stop() == []


@pytest.fixture(scope="module")
def tls_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningEmulator, str]]:
    """An emulator served over TLS for ``localhost``, and the CA file that trusts it."""
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    folder = tmp_path_factory.mktemp("tls")
    ca_file, cert_file = folder / "ca.pem", folder / "cert.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    state = EmulatorState()
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    config = uvicorn_config(
        EmulatorApp(state), "127.0.0.1", port, ssl_certfile=str(cert_file), ssl_keyfile=None
    )
    server = _Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    assert server.ready.wait(30)
    try:
        yield RunningEmulator(f"https://localhost:{port}", state), str(ca_file)
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_https_goes_through_a_connect_tunnel(
    tls_emulator: tuple[RunningEmulator, str],
    proxy: Proxy,
    monkeypatch: pytest.MonkeyPatch,
    anyio_backend: str,
    transport: str,
) -> None:
    skip_aiohttp_on_trio(transport, anyio_backend)
    emulator, ca_file = tls_emulator
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)  # trusted as httpx reads it
    async with emulator.client(trust_env=True, transport=transport) as client:
        res = await client.extract_card(CARD)
    assert res.cards[0].type == "chip_id_card_front"
    port = emulator.base_url.rsplit(":", 1)[1]
    assert proxy.stop() == [f"CONNECT localhost:{port}"]


async def test_without_the_ca_the_tls_emulator_is_refused(
    tls_emulator: tuple[RunningEmulator, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator, ca_file = tls_emulator
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)
    # trust_env=False also stops reading SSL_CERT_FILE: the certificate is not trusted.
    async with emulator.client(trust_env=False, max_retries=0) as client:
        with pytest.raises(APIConnectionError) as info:
            await client.extract_card(CARD)
    assert info.value.kind == "connect"


async def test_proxy_credentials_never_show_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    # A closed port: the connection to the proxy fails.
    monkeypatch.setenv("HTTPS_PROXY", "http://user:pa55word@127.0.0.1:9")
    async with AsyncCVClient("k", "s", max_retries=0) as client:
        with pytest.raises(APIConnectionError) as info:
            await client.extract_card(CARD)
        shown = [str(info.value), repr(info.value), repr(client)]
    assert not any("pa55word" in s for s in shown)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_proxy_that_never_answers_times_out(
    transport: str, anyio_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    skip_aiohttp_on_trio(transport, anyio_backend)
    with silent_server() as port:
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
        async with AsyncCVClient(
            "k",
            "s",
            max_retries=0,
            timeout=httpx.Timeout(0.3),
            transport=transport,  # type: ignore[arg-type]
        ) as client:
            with pytest.raises(APITimeoutError) as info:
                await client.extract_card(CARD)
    # The request never reached the service; httpcore calls the wait for CONNECT's answer a
    # read, aiohttp part of making the connection.
    assert info.value.kind in {"connect", "read"}


def test_a_socks_proxy_without_socksio_is_a_configuration_error_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("aiohttp")
    try:
        import socksio  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("socksio is installed")
    monkeypatch.setenv("ALL_PROXY", "socks5://user:pa55word@127.0.0.1:1080")
    with pytest.raises(ConfigurationError, match="socksio") as info:
        AsyncCVClient("k", "s")  # transport="auto": only the httpx pools take SOCKS
    assert "pa55word" not in str(info.value)


def test_an_invalid_proxy_url_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "ftp://user:pa55word@proxy:21")
    with pytest.raises(ConfigurationError) as info:
        AsyncCVClient("k", "s")
    assert "pa55word" not in str(info.value)
    assert "trust_env=False" in str(info.value)
    AsyncCVClient("k", "s", trust_env=False)  # and it can be turned off


def test_trust_env_must_be_a_bool() -> None:
    with pytest.raises(ConfigurationError, match="trust_env must be True or False"):
        AsyncCVClient("k", "s", trust_env="no")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("environment", "url", "expected"),
    [
        ({"HTTPS_PROXY": "http://p:3128"}, "https://a.example", "http://p:3128"),
        ({"HTTPS_PROXY": "p:3128"}, "https://a.example", "http://p:3128"),
        # the lower-case variable wins, as in httpx and urllib
        (
            {"https_proxy": "http://p:1", "HTTPS_PROXY": "http://p:2"},
            "https://a.example",
            "http://p:1",
        ),
        ({"ALL_PROXY": "http://p:3128"}, "https://a.example", "http://p:3128"),
        ({"HTTP_PROXY": "http://p:3128"}, "https://a.example", None),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "*"}, "https://a.example", None),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "example"}, "https://a.example", None),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "b.example"}, "https://a.example", "http://p:1"),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "https://a.example"}, "https://a.example", None),
        (
            {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "http://a.example"},
            "https://a.example",
            "http://p:1",
        ),
        ({"HTTP_PROXY": "http://p:1", "NO_PROXY": "127.0.0.1:8000"}, "http://127.0.0.1:8000", None),
        (
            {"HTTP_PROXY": "http://p:1", "NO_PROXY": "127.0.0.1:9"},
            "http://127.0.0.1:8000",
            "http://p:1",
        ),
    ],
)
def test_environment_proxy_reads_the_variables_as_httpx_does(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], url: str, expected: str | None
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    proxy = environment_proxy(url)
    assert (None if proxy is None else str(proxy.url).rstrip("/")) == expected
