"""Bytes on the wire per upload style, against the size of the file.

A counting server on loopback records every byte of each request (request line, headers and
body) and answers a canned success.

    python -m benchmarks.bench_wire [--quick]
"""

from __future__ import annotations

import asyncio
import base64
import io
import tempfile
import threading
from pathlib import Path

import anyio
import requests
from PIL import Image

from benchmarks._harness import API_KEY, API_SECRET, parser, table, write_json
from cvekyc_async import AsyncCVClient, ImageSource
from cvekyc_async.emulator import specimen_path

ANSWER = b'{"data":{"type":"passport","info":{}},"errorCode":"0","errorMessage":""}'
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(ANSWER)).encode()
    + b"\r\n\r\n"
    + ANSWER
)


class CountingServer:
    def __init__(self) -> None:
        self.requests: list[tuple[int, int]] = []  # (head bytes, body bytes)
        self.port = 0
        self._ready = threading.Event()
        threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True).start()
        self._ready.wait(10)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                self.requests.append((len(head), length))
                writer.write(RESPONSE)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def _serve(self) -> None:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await server.serve_forever()


def photo_jpeg(target: int) -> bytes:
    """A photo-like JPEG of about ``target`` bytes (a specimen scaled up)."""
    with Image.open(specimen_path("chip_front.jpg")) as img:
        img = img.convert("RGB").resize((1280, 808))
        for quality in range(95, 10, -5):
            out = io.BytesIO()
            img.save(out, "JPEG", quality=quality)
            if out.tell() <= target:
                return out.getvalue()
    return out.getvalue()


def vendor_base64(base: str, path: Path) -> None:
    """The vendor's sample: open with Pillow, re-encode as PNG, base64.encodebytes, JSON."""
    buffer = io.BytesIO()
    Image.open(path).save(buffer, format="PNG")
    encoded = base64.encodebytes(buffer.getvalue()).decode("ascii")
    requests.post(
        f"{base}/api/v2/ekyc/card?format_type=base64&get_thumb=false",
        auth=(API_KEY, API_SECRET),
        json={"img": encoded},
        timeout=60,
    )


def vendor_file(base: str, path: Path) -> None:
    with path.open("rb") as fh:
        requests.post(
            f"{base}/api/v2/ekyc/card?format_type=file&get_thumb=false",
            auth=(API_KEY, API_SECRET),
            files={"img": fh},
            timeout=60,
        )


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    server = CountingServer()
    base = f"http://127.0.0.1:{server.port}"
    folder = Path(tempfile.mkdtemp())
    sizes = (100_000,) if args.quick else (30_000, 100_000, 1_000_000)
    rows, raw = [], []
    for size in sizes:
        path = folder / f"photo-{size}.jpg"
        path.write_bytes(photo_jpeg(size))
        actual = path.stat().st_size

        async def ours(source: object) -> None:
            async with AsyncCVClient(API_KEY, API_SECRET, base_url=base, max_retries=0) as c:
                await c.extract_card(source)  # type: ignore[arg-type]

        styles = {
            "cvekyc file (multipart)": lambda p: anyio.run(ours, p),
            "cvekyc base64 (JSON)": lambda p: anyio.run(
                ours, ImageSource.from_path(p, send_as="base64")
            ),
            "cvekyc url (GET)": lambda p: anyio.run(ours, "https://files.example/a/photo.jpg"),
            "vendor file (requests)": lambda p: vendor_file(base, p),
            "vendor PNG + base64 (requests)": lambda p: vendor_base64(base, p),
        }
        for style, send in styles.items():
            before = len(server.requests)
            send(path)
            head, body = server.requests[before]
            rows.append(
                [
                    f"{actual:,}",
                    style,
                    f"{head:,}",
                    f"{body:,}",
                    f"{body / actual:.3f}",
                    f"{(head + body) / actual:.3f}",
                ]
            )
            raw.append({"file": actual, "style": style, "head": head, "body": body})
    print(
        table(
            "Bytes on the wire per upload",
            ["file bytes", "style", "head", "body", "body / file", "all / file"],
            rows,
        )
    )
    path = write_json("wire", {"results": raw}, args.json)
    print(f"raw numbers: {path}")


if __name__ == "__main__":
    main()
