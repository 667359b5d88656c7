"""A local emulator of the card API: a real HTTP server on loopback, with fault injection.

Needs the ``emulator`` extra (``pip install 'cvekyc-async[emulator]'``)::

    from cvekyc_async.emulator import run_emulator, specimen_path

    async with run_emulator() as emu, emu.client() as client:
        res = await client.extract_card(specimen_path("chip_front.jpg"))

Or from a shell: ``python -m cvekyc_async.emulator --port 8000``.
"""

from __future__ import annotations

from ._app import EmulatorApp
from ._images import MAX_PIXELS, synthetic_jpeg
from ._server import RunningEmulator, run_emulator, serve_emulator
from ._specimens import SPECIMEN_DIR, specimen_path, specimens
from ._state import EmulatorSettings, EmulatorState, Faults

__all__ = [
    "MAX_PIXELS",
    "SPECIMEN_DIR",
    "EmulatorApp",
    "EmulatorSettings",
    "EmulatorState",
    "Faults",
    "RunningEmulator",
    "run_emulator",
    "serve_emulator",
    "specimen_path",
    "specimens",
    "synthetic_jpeg",
]
