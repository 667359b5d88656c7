"""``cvekyc merge``: combine batch outputs (shards, reruns) into one."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TextIO

from .batch import hmac_key_of
from .joblog import (
    LockedError,
    NotRegularError,
    merge,
)
from .jobs import (
    discover,
    shown,
)
from .options import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_WRITE,
    UsageError,
    batch_outputs,
    terminate_as_interrupt,
)

__all__ = ["run_merge"]


def run_merge(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.output == "-":
        raise UsageError("the merged records go to a file (-o all.jsonl), created mode 0600")
    expected = None
    if args.inputs:
        expected = list(
            discover(
                args.inputs,
                pairs=args.endpoint == "cards",
                url_hmac_key=hmac_key_of(args),
                allow_outside=args.allow_outside,
                delimiter=args.delimiter,
            )
        )
    parts = batch_outputs(args.parts)
    try:
        with terminate_as_interrupt():
            report = merge(parts, Path(args.output), expected)
    except LockedError:
        raise UsageError(f"{args.output} is being written by another cvekyc command") from None
    except NotRegularError as exc:
        raise UsageError(f"cannot merge into {args.output}: {exc.strerror or exc}") from None
    except OSError as exc:
        name = exc.filename if isinstance(exc.filename, str) else args.output
        if name in {str(part) for part in parts}:
            raise UsageError(f"cannot read {name}: {exc.strerror or exc}") from None
        err.write(
            f"cvekyc merge: cannot write {args.output}: {exc.strerror or exc}; "
            "it is left as it was\n"
        )
        return EXIT_WRITE
    out.write(f"merged {report.written} inputs ({report.ok} ok) into {args.output}\n")
    if report.missing:
        out.write(f"missing {len(report.missing)} inputs:\n")
        for key in report.missing:
            out.write(f"  {shown(key)}\n")
        return EXIT_FAILED
    return EXIT_OK
