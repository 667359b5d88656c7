"""The specimen images bundled with the package."""

from __future__ import annotations

from pathlib import Path

__all__ = ["SPECIMEN_DIR", "specimen_path", "specimens"]

SPECIMEN_DIR = Path(__file__).resolve().parent / "specimens"


def specimens() -> dict[str, Path]:
    """Every bundled specimen, by file name (``chip_front.jpg``, ``scan.pdf``...)."""
    return {
        p.name: p
        for p in sorted(SPECIMEN_DIR.iterdir())
        if p.is_file() and p.suffix in (".jpg", ".png", ".pdf")
    }


def specimen_path(name: str) -> Path:
    """The path of one bundled specimen.

    Raises:
        KeyError: there is no specimen of that name; the message lists those there are.
    """
    found = specimens()
    if name not in found:
        raise KeyError(f"no specimen {name!r}; there are: {', '.join(found)}")
    return found[name]
