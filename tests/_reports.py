"""Batch records for the report's tests: built by hand, so that each test says what it holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cvekyc_async.emulator import specimen_path

#: Text that would run, or reach outside the page, if the page did not escape it.
HOSTILE = (
    "<script>window.__pwned=1;document.title='pwned'</script>",
    '"><img src=x onerror="window.__pwned=2">',
    "'><svg onload=window.__pwned=3>",
    "</textarea></template></style></script><b>bold</b>",
    "https://attacker.example/x.png",
    "javascript:window.__pwned=4",
)


def card(kind: str = "chip_id_card_front", **info: Any) -> dict[str, Any]:
    fields = {
        "id": "001099012345",
        "id_confidence": 0.98,
        "name": "NGUYỄN VĂN A",
        "name_confidence": 0.97,
        "dob": "01/02/1990",
        "dob_confidence": 0.95,
        "id_box": [1.0, 2.0, 3.0, 4.0],
    }
    fields.update(info)
    return {
        "type": kind,
        "info": fields,
        "valid": True,
        "invalid_message": "Successful",
        "invalid_code": 0,
    }


def finding(code: str, severity: str = "review", **extra: Any) -> dict[str, Any]:
    return {"code": code, "severity": severity, "message": f"{code} found", "fields": [], **extra}


def ok(key: str, verdict: str = "accept", *, cards: list[dict[str, Any]] | None = None,
       findings: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:  # fmt: skip
    record: dict[str, Any] = {
        "key": key,
        "input": f"/data/{key}",
        "sha256": None,
        "size": None,
        "ok": True,
        "result": {"cards": [card()] if cards is None else cards, "error_code": 0},
        "error": None,
        "attempts": 1,
        "elapsed": 0.25,
        "billed": True,
        "assessment": {"verdict": verdict, "findings": findings or []},
    }
    if verdict != "accept" and findings is None:
        record["assessment"]["findings"] = [finding("confidence.low", verdict)]
    record.update(extra)
    return record


def failed(key: str, kind: str = "NoDocumentError", message: str = "no document", **extra: Any
           ) -> dict[str, Any]:  # fmt: skip
    record: dict[str, Any] = {
        "key": key,
        "input": f"/data/{key}",
        "sha256": None,
        "size": None,
        "ok": False,
        "result": None,
        "error": {"type": kind, "message": message, "error_code": 1, "status_code": 200},
        "attempts": 1,
        "elapsed": 0.1,
        "billed": False,
        "assessment": None,
    }
    record.update(extra)
    return record


def write(path: Path, records: list[dict[str, Any]]) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def many(n: int, *, thumbnails: bool = True) -> list[dict[str, Any]]:
    """``n`` records of every kind in turn, each with a thumbnail from the specimens."""
    fronts = [specimen_path(name) for name in ("chip_front.jpg", "cccd_front.jpg",
                                               "card2024_front.jpg", "passport.jpg")]  # fmt: skip
    records = []
    for i in range(n):
        key = f"scans/{i:05d}.jpg"
        thumb = {"thumbnails": [str(fronts[i % len(fronts)])]} if thumbnails else {}
        kind = i % 10
        if kind == 0:
            records.append(failed(key, "APIConnectionError", "the connection was reset"))
        elif kind in (1, 2):
            records.append(ok(key, "review", **thumb))
        elif kind == 3:
            records.append(ok(key, "reject", findings=[finding("id.gender", "reject")], **thumb))
        else:
            records.append(ok(key, **thumb))
    return records
