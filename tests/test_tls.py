"""TLS settings: ``verify`` (which certificates the client trusts) and ``cert`` (the client
certificate it shows), against real HTTPS emulators whose certificates trustme issues, on every
transport and through ``CVClient`` too."""

from __future__ import annotations

import os
import pty
import select
import shutil
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cvekyc_async import APIConnectionError, AsyncCVClient, ConfigurationError, CVClient
from cvekyc_async.emulator import EmulatorApp, EmulatorState, RunningEmulator, specimen_path
from cvekyc_async.emulator._server import _Server, bind_socket, uvicorn_config
from tests._flavours import SyncDriven

pytestmark = pytest.mark.anyio
CARD = specimen_path("chip_front.jpg")
ROOT = Path(__file__).resolve().parent.parent
TRANSPORTS = ["sharded", "pool", "aiohttp"]
KEY_PASSWORD = "k3y-pa55word-5e1f"
WRONG_PASSWORD = "not-the-pa55word-77c2"
NOT_PEM = "no certificates in here, only text-9a41\n"


@dataclass(frozen=True)
class Pki:
    """The files of two trustme CAs: one issued the servers' certificate, one the client's."""

    ca_file: Path  # the private CA that issued the servers' certificate
    ca_folder: Path | None  # the same CA, in a hashed folder (None without the openssl tool)
    ca_pem: str
    server_file: Path  # the servers' certificate and key (for ``localhost``)
    server_pem: str
    client_ca_file: Path  # the CA that issued the client's certificate
    client_cert: Path
    client_key: Path
    client_combined: Path  # the key and certificate in one PEM file
    client_key_encrypted: Path  # the key, encrypted with KEY_PASSWORD
    client_key_pem: str
    other_key: Path  # a key that is not the client certificate's
    not_pem: Path
    der_ca: Path  # the private CA's certificate in DER, not PEM


def _hashed_folder(ca_file: Path, folder: Path) -> Path | None:
    """A CA folder as OpenSSL's ``capath`` reads it (``<subject hash>.0``)."""
    tool = shutil.which("openssl")
    if tool is None:
        return None
    digest = subprocess.run(
        [tool, "x509", "-hash", "-noout", "-in", str(ca_file)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    folder.mkdir()
    shutil.copy(ca_file, folder / f"{digest}.0")
    return folder


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca, client_ca = trustme.CA(), trustme.CA()
    server = ca.issue_cert("localhost")
    client = client_ca.issue_cert("client.example.test")
    other = client_ca.issue_cert("someone-else.example.test")
    files = {
        name: folder / f"{name}.pem"
        for name in (
            "ca",
            "server",
            "client_ca",
            "client_cert",
            "client_key",
            "client_combined",
            "client_key_encrypted",
            "other_key",
            "not_pem",
        )
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    server.private_key_and_cert_chain_pem.write_to_path(str(files["server"]))
    client_ca.cert_pem.write_to_path(str(files["client_ca"]))
    client.cert_chain_pems[0].write_to_path(str(files["client_cert"]))
    client.private_key_pem.write_to_path(str(files["client_key"]))
    client.private_key_and_cert_chain_pem.write_to_path(str(files["client_combined"]))
    other.private_key_pem.write_to_path(str(files["other_key"]))
    key = serialization.load_pem_private_key(client.private_key_pem.bytes(), password=None)
    files["client_key_encrypted"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(KEY_PASSWORD.encode()),
        )
    )
    files["not_pem"].write_text(NOT_PEM)
    der_ca = folder / "ca.der"
    der_ca.write_bytes(
        x509.load_pem_x509_certificate(ca.cert_pem.bytes()).public_bytes(serialization.Encoding.DER)
    )
    return Pki(
        ca_file=files["ca"],
        ca_folder=_hashed_folder(files["ca"], folder / "cas"),
        ca_pem=ca.cert_pem.bytes().decode(),
        server_file=files["server"],
        server_pem=server.cert_chain_pems[0].bytes().decode(),
        client_ca_file=files["client_ca"],
        client_cert=files["client_cert"],
        client_key=files["client_key"],
        client_combined=files["client_combined"],
        client_key_encrypted=files["client_key_encrypted"],
        client_key_pem=client.private_key_pem.bytes().decode(),
        other_key=files["other_key"],
        not_pem=files["not_pem"],
        der_ca=der_ca,
    )


@contextmanager
def _serve_tls(pki: Pki, **tls: Any) -> Iterator[RunningEmulator]:
    """An emulator served over TLS for ``localhost`` with the certificate ``pki`` issued."""
    state = EmulatorState()
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    config = uvicorn_config(
        EmulatorApp(state),
        "127.0.0.1",
        port,
        ssl_certfile=str(pki.server_file),
        ssl_keyfile=None,
        **tls,
    )
    server = _Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    assert server.ready.wait(30)
    try:
        yield RunningEmulator(f"https://localhost:{port}", state)
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@pytest.fixture(scope="module")
def private_ca_emulator(pki: Pki) -> Iterator[RunningEmulator]:
    """HTTPS with a certificate no public store trusts."""
    with _serve_tls(pki) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def mtls_emulator(pki: Pki) -> Iterator[RunningEmulator]:
    """HTTPS that also requires a client certificate issued by ``pki``'s client CA."""
    with _serve_tls(
        pki, ssl_ca_certs=str(pki.client_ca_file), ssl_cert_reqs=ssl.CERT_REQUIRED
    ) as emulator:
        yield emulator


@pytest.fixture(autouse=True)
def _no_ca_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # The machine's SSL_CERT_FILE / SSL_CERT_DIR must not decide a test: those that use them
    # set them.
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)


def skip_aiohttp_on_trio(transport: str, anyio_backend: str) -> None:
    if transport == "aiohttp" and anyio_backend == "trio":
        pytest.skip("the aiohttp transport runs under asyncio only")


def client_of(emulator: RunningEmulator, flavour: str, **kwargs: Any) -> Any:
    """An ``AsyncCVClient`` of ``emulator``, or a ``CVClient`` driven through threads."""
    kwargs.setdefault("max_retries", 0)
    if flavour == "sync":
        return SyncDriven(emulator.sync_client(**kwargs))
    return emulator.client(**kwargs)


async def extract_once(client: Any) -> None:
    async with client:
        res = await client.extract_card(CARD)
    assert res.cards[0].type == "chip_id_card_front"


async def refused(client: Any) -> APIConnectionError:
    async with client:
        with pytest.raises(APIConnectionError) as info:
            await client.extract_card(CARD)
    return info.value


def pem_body(pem: str) -> list[str]:
    """The base64 lines of a PEM block."""
    return [line for line in pem.splitlines() if line and not line.startswith("-----")]


def assert_quotes_no_pem(error: BaseException, *pems: str) -> None:
    shown = f"{error}\n{error!r}"
    assert "-----BEGIN" not in shown
    for pem in pems:
        assert not any(line in shown for line in pem_body(pem))


# -- verify: a private CA ---------------------------------------------------------------------

VERIFY_FORMS: dict[str, Callable[[Pki], object]] = {
    "str": lambda pki: str(pki.ca_file),
    "path": lambda pki: pki.ca_file,
    "folder": lambda pki: pki.ca_folder,
    "context": lambda pki: ssl.create_default_context(cafile=pki.ca_file),
}


def verify_of(form: str, pki: Pki) -> object:
    verify = VERIFY_FORMS[form](pki)
    if verify is None:
        pytest.skip("a hashed CA folder needs the openssl tool")
    return verify


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("form", list(VERIFY_FORMS))
async def test_verify_trusts_a_private_ca(
    private_ca_emulator: RunningEmulator,
    pki: Pki,
    anyio_backend: str,
    flavour: str,
    transport: str,
    form: str,
) -> None:
    skip_aiohttp_on_trio(transport, anyio_backend)
    before = private_ca_emulator.stats()["requests"]
    client = client_of(
        private_ca_emulator, flavour, verify=verify_of(form, pki), transport=transport
    )
    await extract_once(client)
    assert private_ca_emulator.stats()["requests"] == before + 1


@pytest.mark.parametrize("transport", [*TRANSPORTS, "auto"])
async def test_a_verify_context_is_the_one_every_connection_uses(
    private_ca_emulator: RunningEmulator, pki: Pki, anyio_backend: str, transport: str
) -> None:
    skip_aiohttp_on_trio(transport, anyio_backend)
    context = ssl.create_default_context(cafile=pki.ca_file)
    assert context.session_stats()["connect"] == 0
    await extract_once(client_of(private_ca_emulator, "async", verify=context, transport=transport))
    # The handshake went through the caller's own context, not a copy.
    assert context.session_stats()["connect"] >= 1


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_default_verify_refuses_a_private_ca_as_a_connect_failure(
    private_ca_emulator: RunningEmulator,
    pki: Pki,
    anyio_backend: str,
    flavour: str,
    transport: str,
) -> None:
    skip_aiohttp_on_trio(transport, anyio_backend)
    before = private_ca_emulator.stats()["requests"]
    error = await refused(
        client_of(private_ca_emulator, flavour, trust_env=False, transport=transport)
    )
    # The request never left: a connect failure (safe to resend), never one that may be billed.
    assert error.kind == "connect"
    assert error.attempts == 1
    assert_quotes_no_pem(error, pki.ca_pem, pki.server_pem)
    assert private_ca_emulator.stats()["requests"] == before


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_verify_checks_the_host_name_too(
    private_ca_emulator: RunningEmulator, pki: Pki, anyio_backend: str, transport: str
) -> None:
    # The certificate is for ``localhost``: the same server by its address is refused, though
    # its CA is trusted.
    skip_aiohttp_on_trio(transport, anyio_backend)
    by_address = private_ca_emulator.base_url.replace("localhost", "127.0.0.1")
    error = await refused(
        client_of(
            private_ca_emulator,
            "async",
            base_url=by_address,
            verify=pki.ca_file,
            transport=transport,
        )
    )
    assert error.kind == "connect"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_verify_false_connects_without_checking(
    private_ca_emulator: RunningEmulator, anyio_backend: str, flavour: str, transport: str
) -> None:
    skip_aiohttp_on_trio(transport, anyio_backend)
    by_address = private_ca_emulator.base_url.replace("localhost", "127.0.0.1")
    for base_url in (private_ca_emulator.base_url, by_address):
        client = client_of(
            private_ca_emulator, flavour, base_url=base_url, verify=False, transport=transport
        )
        await extract_once(client)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_trust_env_false_ignores_ssl_cert_file(
    private_ca_emulator: RunningEmulator,
    pki: Pki,
    monkeypatch: pytest.MonkeyPatch,
    anyio_backend: str,
    transport: str,
) -> None:
    skip_aiohttp_on_trio(transport, anyio_backend)
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca_file))
    error = await refused(
        client_of(private_ca_emulator, "async", trust_env=False, transport=transport)
    )
    assert error.kind == "connect"


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("by_address", [False, True], ids=["untrusted", "wrong-host"])
async def test_a_certificate_failure_is_named_as_one(
    private_ca_emulator: RunningEmulator,
    pki: Pki,
    anyio_backend: str,
    transport: str,
    by_address: bool,
) -> None:
    skip_aiohttp_on_trio(transport, anyio_backend)
    base_url = private_ca_emulator.base_url
    if by_address:
        base_url = base_url.replace("localhost", "127.0.0.1")
    verify = pki.ca_file if by_address else True
    error = await refused(
        client_of(
            private_ca_emulator,
            "async",
            base_url=base_url,
            verify=verify,
            trust_env=False,
            transport=transport,
        )
    )
    assert "Operation not permitted" not in str(error)
    assert "certificate" in str(error).lower()


# -- the default stays httpx's: SSL_CERT_FILE / SSL_CERT_DIR with trust_env -------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("variable", ["SSL_CERT_FILE", "SSL_CERT_DIR"])
async def test_default_verify_reads_the_environments_ca_with_trust_env(
    private_ca_emulator: RunningEmulator,
    pki: Pki,
    monkeypatch: pytest.MonkeyPatch,
    anyio_backend: str,
    flavour: str,
    transport: str,
    variable: str,
) -> None:
    skip_aiohttp_on_trio(transport, anyio_backend)
    where = pki.ca_file if variable == "SSL_CERT_FILE" else pki.ca_folder
    if where is None:
        pytest.skip("a hashed CA folder needs the openssl tool")
    monkeypatch.setenv(variable, str(where))
    await extract_once(client_of(private_ca_emulator, flavour, trust_env=True, transport=transport))


async def test_a_verify_path_wins_over_ssl_cert_file(
    private_ca_emulator: RunningEmulator, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The environment names a CA that is not the server's: the one given is used.
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.client_ca_file))
    error = await refused(client_of(private_ca_emulator, "async", trust_env=True))
    assert error.kind == "connect"
    await extract_once(client_of(private_ca_emulator, "async", trust_env=True, verify=pki.ca_file))


# -- cert: mutual TLS -------------------------------------------------------------------------

CERT_FORMS: dict[str, Callable[[Pki], object]] = {
    "pair": lambda pki: (str(pki.client_cert), str(pki.client_key)),
    "path pair": lambda pki: (pki.client_cert, pki.client_key),
    "combined": lambda pki: str(pki.client_combined),
    "combined path": lambda pki: pki.client_combined,
    "encrypted key": lambda pki: (pki.client_cert, pki.client_key_encrypted, KEY_PASSWORD),
    "encrypted key, bytes password": lambda pki: (
        pki.client_cert,
        pki.client_key_encrypted,
        KEY_PASSWORD.encode(),
    ),
    "no password": lambda pki: (pki.client_cert, pki.client_key, None),
}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_mutual_tls_without_a_client_certificate_is_refused(
    mtls_emulator: RunningEmulator, pki: Pki, anyio_backend: str, flavour: str, transport: str
) -> None:
    skip_aiohttp_on_trio(transport, anyio_backend)
    before = mtls_emulator.stats()["requests"]
    error = await refused(
        client_of(mtls_emulator, flavour, verify=pki.ca_file, transport=transport)
    )
    # (Under TLS 1.3 the server refuses after the client's handshake has finished and the
    # request is on its way: the client sees a reset, kind "transport", not "connect".)
    assert_quotes_no_pem(error, pki.ca_pem, pki.server_pem)
    assert mtls_emulator.stats()["requests"] == before


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_mutual_tls_with_a_certificate_of_another_ca_is_refused(
    mtls_emulator: RunningEmulator, pki: Pki, anyio_backend: str, transport: str
) -> None:
    # The servers' own certificate is valid, but not issued by the CA the server asks for.
    skip_aiohttp_on_trio(transport, anyio_backend)
    client = client_of(
        mtls_emulator, "async", verify=pki.ca_file, cert=pki.server_file, transport=transport
    )
    await refused(client)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("form", list(CERT_FORMS))
async def test_mutual_tls_with_a_client_certificate_succeeds(
    mtls_emulator: RunningEmulator,
    pki: Pki,
    anyio_backend: str,
    flavour: str,
    transport: str,
    form: str,
) -> None:
    skip_aiohttp_on_trio(transport, anyio_backend)
    before = mtls_emulator.stats()["requests"]
    client = client_of(
        mtls_emulator, flavour, verify=pki.ca_file, cert=CERT_FORMS[form](pki), transport=transport
    )
    await extract_once(client)
    assert mtls_emulator.stats()["requests"] == before + 1


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_mutual_tls_with_the_certificate_loaded_into_a_verify_context(
    mtls_emulator: RunningEmulator, pki: Pki, anyio_backend: str, transport: str
) -> None:
    skip_aiohttp_on_trio(transport, anyio_backend)
    context = ssl.create_default_context(cafile=pki.ca_file)
    context.load_cert_chain(pki.client_cert, pki.client_key_encrypted, KEY_PASSWORD)
    await extract_once(client_of(mtls_emulator, "async", verify=context, transport=transport))


@pytest.mark.parametrize("transport", ["sharded", "pool"])
def test_a_cvclient_on_trio_shows_its_certificate(
    mtls_emulator: RunningEmulator, pki: Pki, transport: str
) -> None:
    cert = (pki.client_cert, pki.client_key_encrypted, KEY_PASSWORD)
    with mtls_emulator.sync_client(
        verify=pki.ca_file, cert=cert, transport=transport, backend="trio", max_retries=0
    ) as client:
        res = client.extract_card(CARD)
    assert res.cards[0].type == "chip_id_card_front"


async def test_a_view_on_another_host_shows_the_same_client_certificate(
    private_ca_emulator: RunningEmulator, mtls_emulator: RunningEmulator, pki: Pki
) -> None:
    # A base_url on another origin gets a pool of its own, with the client's one SSL context.
    async with private_ca_emulator.client(
        verify=pki.ca_file, cert=pki.client_combined, max_retries=0
    ) as client:
        await client.extract_card(CARD)
        other = client.with_options(base_url=mtls_emulator.base_url)
        res = await other.extract_card(CARD)
    assert res.cards[0].type == "chip_id_card_front"


# -- construction errors ----------------------------------------------------------------------

CLIENTS: list[type[AsyncCVClient] | type[CVClient]] = [AsyncCVClient, CVClient]


def construct(kind: type[AsyncCVClient] | type[CVClient], **kwargs: Any) -> ConfigurationError:
    """The ConfigurationError the constructor raises (no request is made: nothing listens)."""
    kwargs.setdefault("base_url", "https://localhost:9")
    kwargs.setdefault("trust_env", False)
    with pytest.raises(ConfigurationError) as info:
        kind("key", "secret", **kwargs)
    return info.value


@pytest.fixture(params=CLIENTS, ids=["async", "sync"])
def kind(request: pytest.FixtureRequest) -> type[AsyncCVClient] | type[CVClient]:
    made: type[AsyncCVClient] | type[CVClient] = request.param
    return made


@pytest.mark.parametrize("as_path", [False, True])
def test_a_missing_verify_path_is_a_configuration_error_naming_it(
    kind: type[AsyncCVClient] | type[CVClient], tmp_path: Path, as_path: bool
) -> None:
    missing = tmp_path / "no-such-ca.pem"
    error = construct(kind, verify=missing if as_path else str(missing))
    assert str(missing) in str(error)


@pytest.mark.parametrize("which", ["not_pem", "der_ca", "client_key", "empty"])
def test_a_verify_file_that_is_no_pem_ca_bundle_is_a_configuration_error(
    kind: type[AsyncCVClient] | type[CVClient], pki: Pki, tmp_path: Path, which: str
) -> None:
    if which == "empty":
        path = tmp_path / "empty.pem"
        path.write_bytes(b"")
    else:
        path = getattr(pki, which)
    error = construct(kind, verify=path)
    shown = f"{error}\n{error!r}"
    assert str(path) in shown
    assert NOT_PEM.strip() not in shown
    assert_quotes_no_pem(error, pki.client_key_pem, pki.ca_pem)


@pytest.mark.parametrize("verify", [3, None, b"/etc/ssl/certs/ca.pem", 1.0, "", ["ca.pem"]])
def test_a_verify_of_the_wrong_type_is_a_configuration_error(
    kind: type[AsyncCVClient] | type[CVClient], verify: object
) -> None:
    construct(kind, verify=verify)


def test_an_empty_verify_path_is_named_as_one(kind: type[AsyncCVClient] | type[CVClient]) -> None:
    error = construct(kind, verify="")
    assert "verify is an empty path" in str(error)


# What a caller pastes where a path belongs: the key, a certificate, a CA bundle's text, or the
# key's password given in the key's place. A message must not carry any of it (it ends up in
# logs and bug reports), and must say that it was left out.
PASTED_PASSWORD = "TOPSECRETPW"
FAKE_PEM = "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n"
PASTED: dict[str, Callable[[Pki], tuple[dict[str, object], list[str]]]] = {
    "cert=key PEM": lambda pki: ({"cert": pki.client_key_pem}, [pki.client_key_pem]),
    "cert=(path, key PEM)": lambda pki: (
        {"cert": (pki.client_cert, pki.client_key_pem)},
        [pki.client_key_pem],
    ),
    "cert=(certificate PEM, path)": lambda pki: (
        {"cert": (pki.client_cert.read_text(), pki.client_key)},
        [pki.client_cert.read_text()],
    ),
    "verify=CA PEM": lambda pki: ({"verify": pki.ca_pem}, [pki.ca_pem]),
    "cert=(path, password)": lambda pki: (
        {"cert": (str(pki.client_cert), PASTED_PASSWORD)},
        [PASTED_PASSWORD],
    ),
    # Base64 may or may not hold a '/': PEM text is never shown either way.
    "cert=PEM text without a slash": lambda pki: (
        {"cert": FAKE_PEM.format("MIIEvQIBADANBgkqhkiG9w0B")},
        [FAKE_PEM.format("MIIEvQIBADANBgkqhkiG9w0B")],
    ),
    "cert=PEM text with a slash": lambda pki: (
        {"cert": FAKE_PEM.format("MIIEvQIBA/ANBgkqhkiG9w0B")},
        [FAKE_PEM.format("MIIEvQIBA/ANBgkqhkiG9w0B")],
    ),
    # A password can look like a file name; only a value with a folder in it is shown.
    "cert=(path, password with a dot)": lambda pki: (
        {"cert": (str(pki.client_cert), "Summer.2024")},
        ["Summer.2024"],
    ),
}


@pytest.mark.parametrize("pasted", list(PASTED))
def test_a_key_certificate_or_password_given_as_a_path_is_never_shown(
    kind: type[AsyncCVClient] | type[CVClient], pki: Pki, pasted: str
) -> None:
    options, hidden = PASTED[pasted](pki)
    error = construct(kind, **options)
    shown = f"{error}\n{error!r}\n{error.args!r}"
    for text in hidden:
        if "-----" not in text:
            assert text not in shown
        else:
            assert not any(line in shown for line in pem_body(text))
    assert "-----BEGIN" not in shown
    assert "PRIVATE KEY" not in shown
    # It says what it left out, and what belongs there.
    assert "not shown" in str(error)
    assert "give a file path" in str(error)
    if "PEM" in pasted:
        assert "looks like PEM text" in str(error)


@pytest.mark.parametrize("part", ["combined", "certificate", "key"])
def test_a_missing_cert_path_is_a_configuration_error_naming_it(
    kind: type[AsyncCVClient] | type[CVClient], pki: Pki, tmp_path: Path, part: str
) -> None:
    missing = tmp_path / f"no-such-{part}.pem"
    cert: object = {
        "combined": missing,
        "certificate": (missing, pki.client_key),
        "key": (pki.client_cert, str(missing)),
    }[part]
    error = construct(kind, verify=pki.ca_file, cert=cert)
    assert str(missing) in str(error)


def test_a_cert_whose_key_does_not_match_is_a_configuration_error(
    kind: type[AsyncCVClient] | type[CVClient], pki: Pki
) -> None:
    error = construct(kind, cert=(pki.client_cert, pki.other_key))
    assert str(pki.client_cert) in str(error)
    assert_quotes_no_pem(error, pki.client_key_pem)


def test_a_cert_file_without_its_key_is_a_configuration_error(
    kind: type[AsyncCVClient] | type[CVClient], pki: Pki
) -> None:
    construct(kind, cert=pki.client_cert)


@pytest.mark.parametrize("password", [WRONG_PASSWORD, WRONG_PASSWORD.encode()])
def test_a_wrong_key_password_is_a_configuration_error_that_never_shows_it(
    kind: type[AsyncCVClient] | type[CVClient], pki: Pki, password: str | bytes
) -> None:
    error = construct(kind, cert=(pki.client_cert, pki.client_key_encrypted, password))
    shown = f"{error}\n{error!r}\n{error.args!r}"
    assert WRONG_PASSWORD not in shown
    assert KEY_PASSWORD not in shown
    assert str(pki.client_cert) in shown


@pytest.mark.parametrize(
    "cert",
    [
        ("only-one.pem",),
        ("a.pem", "b.pem", "pw", "extra"),
        ("a.pem", 3),
        (3, "b.pem"),
        3,
    ],
)
def test_a_malformed_cert_is_a_configuration_error(
    kind: type[AsyncCVClient] | type[CVClient], cert: object
) -> None:
    construct(kind, cert=cert)


def test_a_key_password_of_the_wrong_type_is_a_configuration_error_that_never_shows_it(
    kind: type[AsyncCVClient] | type[CVClient], pki: Pki
) -> None:
    error = construct(kind, cert=(pki.client_cert, pki.client_key_encrypted, 123456789))
    assert "123456789" not in str(error)


def test_cert_with_a_verify_context_is_a_configuration_error(
    kind: type[AsyncCVClient] | type[CVClient], pki: Pki
) -> None:
    context = ssl.create_default_context(cafile=pki.ca_file)
    error = construct(kind, verify=context, cert=pki.client_combined)
    assert "load_cert_chain" in str(error)


@pytest.mark.parametrize(
    "tls",
    [
        {"verify": False},
        {"verify": "ca.pem"},
        {"verify": ssl.create_default_context()},
        {"cert": "client.pem"},
        {"cert": ("client.pem", "key.pem")},
    ],
    ids=["verify-false", "verify-path", "verify-context", "cert", "cert-pair"],
)
def test_verify_or_cert_with_http_client_is_a_configuration_error(
    kind: type[AsyncCVClient] | type[CVClient], tls: dict[str, Any]
) -> None:
    with httpx.Client() as sync_http:
        http: httpx.AsyncClient | httpx.Client = (
            httpx.AsyncClient() if kind is AsyncCVClient else sync_http
        )
        error = construct(kind, http_client=http, **tls)
    assert "http_client" in str(error)


def test_the_repr_never_shows_the_key_or_its_password(pki: Pki) -> None:
    cert = (pki.client_cert, pki.client_key_encrypted, KEY_PASSWORD)
    made = AsyncCVClient("key", "secret", trust_env=False, verify=pki.ca_file, cert=cert)
    sync = CVClient("key", "secret", trust_env=False, verify=pki.ca_file, cert=cert)
    try:
        for shown in (repr(made), repr(sync), str(made), str(sync)):
            assert KEY_PASSWORD not in shown
            assert str(pki.client_key_encrypted) not in shown
    finally:
        sync.close()


@pytest.mark.parametrize("which", ["missing", "not_pem"])
def test_a_bad_ssl_cert_file_with_trust_env_is_a_configuration_error(
    kind: type[AsyncCVClient] | type[CVClient],
    pki: Pki,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    which: str,
) -> None:
    where = tmp_path / "no-such-ca.pem" if which == "missing" else pki.not_pem
    monkeypatch.setenv("SSL_CERT_FILE", str(where))
    construct(kind, trust_env=True)


# -- an encrypted key without its password ----------------------------------------------------

_NO_PASSWORD = """
import sys
from cvekyc_async import AsyncCVClient, ConfigurationError
try:
    AsyncCVClient("key", "secret", trust_env=False, cert=(sys.argv[1], sys.argv[2]))
except ConfigurationError:
    print("CONFIGURATION-ERROR", flush=True)
else:
    print("CONSTRUCTED", flush=True)
"""


def _run_on_a_terminal(args: list[str], until: tuple[bytes, ...], within: float) -> bytes:
    """Run ``args`` with a terminal of its own; its output until one of ``until`` shows, or it
    ends (it is killed if still running)."""
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.chdir(ROOT)
            os.execv(args[0], args)  # noqa: S606 - a fixed argument list, no shell
        finally:
            os._exit(127)  # never back into pytest, whatever happened
    out = b""
    deadline = time.monotonic() + within
    try:
        while not any(mark in out for mark in until) and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child ended
                break
            if not chunk:
                break
            out += chunk
    finally:
        if os.waitpid(pid, os.WNOHANG) == (0, 0):
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        os.close(fd)
    return out


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_an_encrypted_key_without_its_password_is_a_configuration_error_not_a_prompt(
    pki: Pki,
) -> None:
    # On a terminal (a developer's shell, a CLI) OpenSSL asks for the password on the tty when
    # none is given: the constructor would block, waiting for someone to type it.
    args = [sys.executable, "-c", _NO_PASSWORD, str(pki.client_cert)]
    out = _run_on_a_terminal(
        [*args, str(pki.client_key_encrypted)],
        until=(b"CONFIGURATION-ERROR", b"CONSTRUCTED", b"pass phrase"),
        within=30,
    )
    assert b"pass phrase" not in out
    assert b"CONFIGURATION-ERROR" in out
