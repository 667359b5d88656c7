"""The emulator's settings, its fault injection, and the counts of what it served."""

from __future__ import annotations

import random
import threading
from collections import Counter
from typing import Any

import msgspec

__all__ = ["FAULT_KINDS", "EmulatorSettings", "EmulatorState", "Faults"]

#: Fault kinds, in the order a request's draw is matched against their rates.
FAULT_KINDS = ("429", "500", "502", "503", "504", "drop", "stall", "malformed")


class Faults(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What the emulator does wrong, and how often. Rates are probabilities per API request.

    The draws come from one generator seeded with ``seed``, one draw per request in the order
    requests arrive, so a fixed seed and a fixed order of requests give the same faults.
    """

    seed: int = 0
    """Seed of the fault and jitter draws; setting faults again restarts the sequence."""
    latency: float = 0.0
    """Seconds added before every answer."""
    jitter: float = 0.0
    """Plus a uniform draw in [0, jitter) seconds."""
    rate_429: float = 0.0
    """HTTP 429 with a ``Retry-After`` header."""
    retry_after: str = "1"
    """The ``Retry-After`` value sent with 429 (seconds, or an HTTP date)."""
    rate_500: float = 0.0
    """HTTP 500 with a JSON error body without ``errorCode``."""
    rate_502: float = 0.0
    """HTTP 502 with an HTML body, as a proxy sends."""
    rate_503: float = 0.0
    """HTTP 503 with an HTML body and ``Retry-After``."""
    rate_504: float = 0.0
    """HTTP 504 with an HTML body, after the latency."""
    rate_drop: float = 0.0
    """The connection is closed after the headers, before the body is complete."""
    rate_stall: float = 0.0
    """The answer never comes: the request is held for ``stall_seconds`` or until the client
    goes away."""
    stall_seconds: float = 120.0
    """How long a stalled request is held."""
    rate_malformed: float = 0.0
    """HTTP 200 with a truncated JSON body."""
    capacity: int = 0
    """Requests the service works on at once (0: no limit). Others wait for a slot, in a queue
    of ``queue``; beyond it they are answered 429 with ``Retry-After`` (counted as ``busy``)."""
    queue: int = 0
    """Requests that may wait for a slot when all ``capacity`` are taken."""
    slowdown: float = 0.0
    """Latency grows with load: a request starting with ``n`` of ``capacity`` slots in use
    (itself included) takes ``latency * (1 + slowdown * n / capacity)``."""

    def validate(self) -> None:
        rates = [getattr(self, f"rate_{k}") for k in FAULT_KINDS]
        if any(r < 0 or r > 1 for r in rates) or sum(rates) > 1.000001:
            raise ValueError("fault rates must each be in [0, 1] and sum to at most 1")
        if self.latency < 0 or self.jitter < 0 or self.stall_seconds < 0:
            raise ValueError("latency, jitter and stall_seconds must not be negative")
        if self.capacity < 0 or self.queue < 0 or self.slowdown < 0:
            raise ValueError("capacity, queue and slowdown must not be negative")


class EmulatorSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """How the emulator behaves, apart from faults."""

    api_key: str = "emulator-key"
    """The only API key it accepts."""
    api_secret: str = "emulator-secret"  # noqa: S105 - a public default for a local emulator
    """The only API secret it accepts."""
    quota: int | None = None
    """Billed answers allowed before every request gets errorCode 4; ``None`` for no limit."""
    strict: bool = False
    """Answer errorCode 1 for images without embedded ground truth, instead of a synthetic card."""


class EmulatorState:
    """Settings, faults and counters shared by the app and whoever controls it.

    Safe to read and change from another thread (tests run the server in one).
    """

    def __init__(self, settings: EmulatorSettings | None = None, faults: Faults | None = None):
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self.settings = settings or EmulatorSettings()
        self.faults = Faults()
        self._rng = random.Random(0)
        self._jitter_rng = random.Random(1)
        self.set_faults(faults or Faults())
        self._counts: Counter[str] = Counter()
        self._peers: set[tuple[str, int]] = set()
        self.in_flight = 0
        self.peak_in_flight = 0

    def set_faults(self, faults: Faults | None = None, **changes: Any) -> Faults:
        """Replace the faults (or change some fields of them) and restart the seeded draws."""
        base = faults or self.faults
        new = msgspec.structs.replace(base, **changes) if changes else base
        new.validate()
        with self._lock:
            self.faults = new
            self._rng = random.Random(new.seed)
            self._jitter_rng = random.Random(new.seed + 1)
        return new

    def draw(self) -> tuple[str | None, float]:
        """The fault (or ``None``) and the latency for the next API request."""
        with self._lock:
            f = self.faults
            roll = self._rng.random()
            delay = f.latency + (self._jitter_rng.random() * f.jitter if f.jitter else 0.0)
        edge = 0.0
        for kind in FAULT_KINDS:
            edge += getattr(f, f"rate_{kind}")
            if roll < edge:
                return kind, delay
        return None, delay

    def note_peer(self, peer: Any) -> None:
        """Remember the client end (host, port) of a connection that sent an API request."""
        if isinstance(peer, (list, tuple)) and len(peer) == 2:
            with self._lock:
                self._peers.add((str(peer[0]), int(peer[1])))

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n
            self._idle.notify_all()

    def wait_for_count(self, key: str, at_least: int, timeout: float) -> bool:
        """Block until the count ``key`` (``requests``, ``abandoned``...) reaches ``at_least``;
        ``False`` if ``timeout`` passed first."""
        with self._idle:
            return self._idle.wait_for(lambda: self._counts[key] >= at_least, timeout)

    @property
    def billed(self) -> int:
        """Billed answers so far."""
        return self._counts["billed"]

    def try_bill(self) -> bool:
        """Count a billed answer, unless the quota is used up."""
        with self._lock:
            quota = self.settings.quota
            if quota is not None and self._counts["billed"] >= quota:
                return False
            self._counts["billed"] += 1
            return True

    def enter(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1
            if self.in_flight == 0:
                self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Block until no API request is being handled; ``False`` if ``timeout`` passed first.

        Requests a client abandoned (cancelled, timed out) go on being handled, as on the real
        service, so the count can stay above zero for a while after the client has let go.
        """
        with self._idle:
            return self._idle.wait_for(lambda: self.in_flight == 0, timeout)

    def stats(self) -> dict[str, Any]:
        """Counts so far: ``requests``, ``billed``, ``faults`` by kind, ``error_codes`` by code,
        ``by_path``, ``abandoned`` (clients gone before their body arrived), ``busy`` (turned
        away with 429 by the capacity model), ``in_flight``,
        ``peak_in_flight`` and ``connections`` (client connections that sent API requests)."""
        with self._lock:
            c = dict(self._counts)
            return {
                "requests": c.get("requests", 0),
                "billed": c.get("billed", 0),
                "faults": {k[6:]: v for k, v in c.items() if k.startswith("fault:")},
                "faults_total": sum(v for k, v in c.items() if k.startswith("fault:")),
                "error_codes": {k[5:]: v for k, v in c.items() if k.startswith("code:")},
                "by_path": {k[5:]: v for k, v in c.items() if k.startswith("path:")},
                "abandoned": c.get("abandoned", 0),
                "busy": c.get("busy", 0),
                "in_flight": self.in_flight,
                "peak_in_flight": self.peak_in_flight,
                "connections": len(self._peers),
            }

    def reset_counts(self) -> None:
        """Zero every count (the quota counts billed answers from here on)."""
        with self._lock:
            self._counts.clear()
            self._peers.clear()
            self.peak_in_flight = self.in_flight
