"""TLS settings: which certificates the client trusts (``verify``), and which it shows
(``cert``, for services that require a client certificate).

One ``ssl.SSLContext`` is built when the client is made and shared by every transport, so that
a bad path, a file that is not PEM or a wrong key password is a ``ConfigurationError`` of the
constructor, not a connection error of every call.
"""

from __future__ import annotations

import os
import ssl
from typing import TypeAlias

import httpx

from ._errors import ConfigurationError

__all__ = ["CertTypes", "VerifyTypes", "ssl_context"]

_Path: TypeAlias = "str | os.PathLike[str]"
#: ``True`` (default: httpx's store, or ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` with
#: ``trust_env``), ``False`` (no verification), a CA bundle file or folder, or a context.
VerifyTypes: TypeAlias = "bool | str | os.PathLike[str] | ssl.SSLContext"
#: A PEM file holding the certificate and its key, or ``(certificate, key)``, or
#: ``(certificate, key, password)``.
CertTypes: TypeAlias = (
    "str | os.PathLike[str] | tuple[_Path, _Path] | tuple[_Path, _Path, str | bytes | None]"
)


def _path(value: object, what: str) -> str:
    if isinstance(value, (str, os.PathLike)):
        path = os.fspath(value)
        if isinstance(path, str) and path:
            return path
        if path == "":
            raise ConfigurationError(f"{what} is an empty path")
    raise ConfigurationError(f"{what} must be a file path, not {type(value).__name__}")


def _shown(path: str, *, needs_folder: bool = False) -> str:
    """A path as a message may show it: quoted when it looks like one, else described. A value
    given where a path belongs may be a key, a certificate or a password pasted in its place;
    with ``needs_folder``, only a value naming a folder is quoted (a password can look like a
    file name, "Summer.2024", and rarely like a path)."""
    looks_like_path = (
        (not needs_folder or "/" in path or os.sep in path)
        and len(path) <= 255
        and path.isprintable()
        and not path.startswith("-----")
        and not any(c.isspace() for c in path.strip())
        and (os.sep in path or "/" in path or "." in os.path.basename(path))
    )
    if looks_like_path:
        return repr(path)
    pem = " that looks like PEM text" if "-----BEGIN" in path else ""
    return f"a value of {len(path):,} characters{pem} (not shown: give a file path)"


class _NeedsPassword(Exception):
    """Raised from the password callback of a key loaded without a password."""


def _no_password() -> str:
    # Without a callback, OpenSSL asks for the password on the terminal and waits.
    raise _NeedsPassword


def _reason(exc: BaseException) -> str:
    # An SSLError's reason (``NO_START_LINE``, ``BAD_DECRYPT``...) or the OS's text: neither
    # quotes the file's content or the key's password.
    if isinstance(exc, ssl.SSLError):
        if exc.reason:
            return str(exc.reason).lower().replace("_", " ")
        return "no key that matches it, or a password that does not open the key"
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno).lower()
    return type(exc).__name__


def _trusting(verify: object, trust_env: bool) -> ssl.SSLContext:
    if isinstance(verify, ssl.SSLContext):
        return verify
    if isinstance(verify, bool):
        try:
            return httpx.create_ssl_context(verify, trust_env=trust_env)
        except (ssl.SSLError, OSError, ValueError) as exc:
            # Only the environment can name a file here.
            raise ConfigurationError(
                f"SSL_CERT_FILE / SSL_CERT_DIR name no CA bundle that can be read "
                f"({_reason(exc)}); fix them, or pass trust_env=False to ignore the environment"
            ) from None
    path = _path(verify, "verify")
    folder = os.path.isdir(path)
    if not folder and not os.path.isfile(path):
        raise ConfigurationError(
            f"verify names {_shown(path)}, which is no CA bundle file or folder"
        )
    try:
        if folder:
            return ssl.create_default_context(capath=path)
        return ssl.create_default_context(cafile=path)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ConfigurationError(
            f"verify: could not read the CA bundle {_shown(path)} ({_reason(exc)})"
        ) from None


def ssl_context(
    verify: object = True, cert: object = None, *, trust_env: bool = True
) -> ssl.SSLContext:
    """The context for ``verify`` and ``cert`` (see ``AsyncCVClient``).

    Raises:
        ConfigurationError: a value of the wrong type, a file that is missing or unreadable, or
            a certificate whose key does not match or whose password is wrong.
    """
    if not isinstance(verify, (bool, str, os.PathLike, ssl.SSLContext)):
        raise ConfigurationError(
            "verify must be True, False, a CA bundle path or an ssl.SSLContext, "
            f"not {type(verify).__name__}"
        )
    if cert is not None and isinstance(verify, ssl.SSLContext):
        raise ConfigurationError(
            "give cert= with verify=True or a CA bundle path; with an ssl.SSLContext, load the "
            "client certificate into it (context.load_cert_chain(...))"
        )
    context = _trusting(verify, trust_env)
    if cert is None:
        return context
    password: str | bytes | None = None
    if isinstance(cert, tuple):
        if len(cert) not in (2, 3):
            raise ConfigurationError(
                "cert must be a PEM path, (certificate, key) or (certificate, key, password)"
            )
        certfile, keyfile = _path(cert[0], "cert's certificate"), _path(cert[1], "cert's key")
        if len(cert) == 3:
            password = cert[2]
            if password is not None and not isinstance(password, (str, bytes)):
                raise ConfigurationError("cert's password must be a str, bytes or None")
    else:
        certfile, keyfile = _path(cert, "cert"), None
    for name in (certfile, keyfile):
        if name is not None and not os.path.isfile(name):
            raise ConfigurationError(
                f"cert names {_shown(name, needs_folder=True)}, which is not a file"
            )
    try:
        context.load_cert_chain(certfile, keyfile, _no_password if password is None else password)
    except _NeedsPassword:
        raise ConfigurationError(
            f"cert: the key of {_shown(certfile)} is encrypted: give its password as "
            "cert=(certificate, key, password)"
        ) from None
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ConfigurationError(
            f"cert: could not load the client certificate {_shown(certfile)} ({_reason(exc)}; "
            "a PEM certificate with its key, and the key's password if it has one)"
        ) from None
    return context
