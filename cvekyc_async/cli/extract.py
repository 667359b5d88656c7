"""``cvekyc extract``: read one card (or both sides of one) and print it."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any, TextIO

import anyio
import msgspec

from .._errors import CVError, InvalidInputError
from .._models import Card, ExtractionResult
from .joblog import (
    cli_words,
    error_record,
    thumb_folder,
)
from .options import EXIT_FAILED, EXIT_OK, UsageError, make_client
from .records import DOCUMENTED_TYPES

__all__ = ["run_extract"]


# -- extract -------------------------------------------------------------------------------------

_HIDDEN = ("_confidence", "_box", "_code")


def _file_part(text: str, allowed: str = r"[^A-Za-z0-9_.-]") -> str:
    """``text`` fit for a file name: other characters become ``_``, at most 64 of them."""
    return re.sub(allowed, "_", text)[:64].lstrip(".") or "input"


def _card_table(card: Card) -> list[str]:
    status = {True: "valid", False: f"flagged: {card.invalid_message}", None: ""}[card.valid]
    lines = [f"{card.type}  {status}".rstrip()]
    fields = card.info.to_dict()
    shown = [k for k in fields if k != "image" and not k.endswith(_HIDDEN)]
    width = max((len(k) for k in shown), default=0)
    for key in shown:
        confidence = fields.get(f"{key}_confidence")
        suffix = f"  ({confidence:.2f})" if isinstance(confidence, (int, float)) else ""
        lines.append(f"  {key:<{width}}  {fields[key]}{suffix}")
    return lines


def _without_images(result: ExtractionResult) -> dict[str, Any]:
    data = result.to_dict()
    for card in data["cards"]:
        card["info"].pop("image", None)
    return data


async def run_extract(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    endpoint = args.endpoint or ("cards" if args.back else "card")
    if args.back and endpoint != "cards":
        raise UsageError("a BACK image goes with --endpoint cards")
    if endpoint == "cards" and not args.back:
        raise UsageError("--endpoint cards needs both IMAGE and BACK")
    thumb_dir: Path | None = args.thumb
    if thumb_dir is not None:
        # Card images are personal data: folders of the owner's only. Made (or refused) before
        # the call is paid for.
        try:
            await anyio.to_thread.run_sync(thumb_folder, thumb_dir)
        except OSError as exc:
            raise UsageError(f"cannot use --thumb {thumb_dir}: {exc.strerror or exc}") from None
    async with make_client(args, err) as client:
        try:
            if endpoint == "cards":
                result = await client.extract_cards(
                    args.image, args.back, get_thumb=bool(thumb_dir)
                )
            elif endpoint == "ocr":
                result = await client.ocr_card(args.image, get_thumb=bool(thumb_dir))
            else:
                result = await client.extract_card(args.image, get_thumb=bool(thumb_dir))
        except InvalidInputError as exc:
            raise UsageError(cli_words(str(exc))) from None
        except CVError as exc:
            if args.json:
                out.write(msgspec.json.encode({"error": error_record(exc)}).decode() + "\n")
            err.write(f"cvekyc: {cli_words(str(exc))}\n")
            return EXIT_FAILED
    saved = []
    if thumb_dir is not None:
        stem = "image" if "://" in args.image else _file_part(Path(args.image).stem)
        for n, card in enumerate(result.cards, 1):
            # The service names the type: it never steers the path, and only a documented
            # type names the file (any other text could carry a name or a number).
            kind = card.type if card.type in DOCUMENTED_TYPES else "card"
            try:
                if card.info.image_bytes():
                    saved.append(str(card.info.save_image(thumb_dir / f"{stem}-{n}-{kind}.jpg")))
            except (ValueError, OSError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else str(exc)
                err.write(f"cvekyc: thumbnail of card {n} not saved: {reason}\n")
    assessment = result.assess()
    if args.json:
        data = _without_images(result)
        data["thumbnails"] = saved
        data["assessment"] = msgspec.to_builtins(assessment)
        out.write(msgspec.json.encode(data).decode() + "\n")
    else:
        for card in result.cards:
            out.write("\n".join(_card_table(card)) + "\n")
        for path in saved:
            out.write(f"thumbnail saved: {path}\n")
        for done in result.prepared:
            if done.changed:
                out.write(f"prepared {done.field}: {done.describe()}\n")
        out.write(f"verdict: {assessment.verdict}\n")
        for finding in assessment.findings:
            out.write(f"  {finding.severity}: {finding.message} [{finding.code}]\n")
    return EXIT_OK
