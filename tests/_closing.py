"""A server in a process of its own that answers each request with a card and then closes the
connection without saying so (no ``Connection: close``), as some servers and proxies do.

Run as ``python -m tests._closing``: it prints ``listening on PORT`` and serves until killed,
printing ``closed`` each time it has closed a connection (a test that waits for that line before
its next request knows the connection it holds is one the server has closed, not one it is
about to close).
"""

from __future__ import annotations

import socket

from tests import samples

BODY = samples.answer(samples.CHIP_FRONT)


def serve() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    print(f"listening on {server.getsockname()[1]}", flush=True)
    while True:
        conn, _ = server.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(body) < length:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                body += chunk
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY)
        print("closed", flush=True)


if __name__ == "__main__":
    serve()
