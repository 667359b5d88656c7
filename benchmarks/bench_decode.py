"""Answer decoding: msgspec typed decode against ``json.loads`` + dict handling, for a plain
answer and one carrying a 100 KB thumbnail.

    python -m benchmarks.bench_decode [--quick]
"""

from __future__ import annotations

import base64
import json
import os
import timeit
from typing import Any

from benchmarks._harness import parser, table, write_json
from cvekyc_async import decode_answer
from cvekyc_async.emulator import specimen_path
from cvekyc_async.emulator._truth import read_documents


def answer(with_thumb: bool) -> bytes:
    pages = read_documents(specimen_path("chip_front.jpg").read_bytes())
    assert pages
    doc = dict(pages[0][0])
    doc.pop("box", None)
    info = dict(doc["info"])
    if with_thumb:
        info["image"] = base64.b64encode(os.urandom(100_000)).decode()
    doc["info"] = info
    return json.dumps(
        {"data": doc, "errorCode": "0", "errorMessage": ""}, ensure_ascii=False
    ).encode()


def typed(body: bytes) -> Any:
    res = decode_answer(body)
    card = res.cards[0]
    return (
        card.type,
        card.valid,
        card.info.get("id"),
        card.info.get("name"),
        card.info.get("id_confidence"),
    )


def by_hand(body: bytes) -> Any:
    obj = json.loads(body)
    if str(obj["errorCode"]) != "0":
        raise ValueError
    data = obj["data"]
    cards = data if isinstance(data, list) else [data]
    card = cards[0]
    info = card.get("info") or {}
    valid = str(card.get("valid")).lower() == "true"
    confidence = info.get("id_confidence")
    confidence = float(confidence) if confidence not in (None, "") else None
    return card.get("type"), valid, info.get("id"), info.get("name"), confidence


def best_of(fn: Any, body: bytes, number: int, repeat: int) -> float:
    return min(timeit.repeat(lambda: fn(body), number=number, repeat=repeat)) / number


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    repeat = 3 if args.quick else 7
    rows, raw = [], {}
    for label, with_thumb, number in (("plain", False, 2000), ("100 KB thumbnail", True, 300)):
        body = answer(with_thumb)
        assert typed(body) == by_hand(body)
        if args.quick:
            number = max(10, number // 20)
        t_typed = best_of(typed, body, number, repeat)
        t_hand = best_of(by_hand, body, number, repeat)
        raw[label] = {"bytes": len(body), "typed_s": t_typed, "json_s": t_hand}
        rows.append(
            [
                label,
                f"{len(body):,}",
                f"{t_typed * 1e6:.1f}",
                f"{t_hand * 1e6:.1f}",
                f"{t_typed / t_hand:.2f}",
            ]
        )
    print(
        table(
            "Decoding one answer (best of repeats), microseconds",
            ["answer", "bytes", "msgspec typed", "json.loads + dicts", "typed / json"],
            rows,
        )
    )
    path = write_json("decode", {"results": raw}, args.json)
    print(f"raw numbers: {path}")


if __name__ == "__main__":
    main()
