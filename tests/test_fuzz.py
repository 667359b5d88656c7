"""Fuzzing the decoding boundary: random and mutated answers, any status and headers, bodies cut or
broken mid-stream. Every call must end as a result or a CVError, and what it ends as must be
usable: its repr, its message, its JSON, its trust checks.

The default run tries a few hundred cases of each kind; ``pytest --slow`` tries 10,000 hypothesis
cases and 20,000 mutations.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import random
import zlib
from typing import Any

import anyio
import httpx
import msgspec
from hypothesis import given
from hypothesis import strategies as st

from cvekyc_async import AsyncCVClient, CVError, ExtractionResult
from tests import samples

CAP = 256 * 1024
TODAY = dt.date(2026, 1, 1)


class Chunks(httpx.AsyncByteStream):
    """A body in chunks, optionally broken by an exception after some of them."""

    def __init__(self, chunks: list[bytes], fail: BaseException | None = None) -> None:
        self.chunks = chunks
        self.fail = fail
        self.taken = 0

    def __aiter__(self) -> Chunks:
        return self

    async def __anext__(self) -> bytes:
        if self.taken == len(self.chunks):
            if self.fail is not None:
                raise self.fail
            raise StopAsyncIteration
        self.taken += 1
        return self.chunks[self.taken - 1]


Answer = tuple[int, list[tuple[bytes, bytes]], list[bytes], BaseException | None]


class Scripted(httpx.AsyncBaseTransport):
    """Answers each request with the answer it was given last."""

    def __init__(self) -> None:
        self.answer: Answer = (200, [], [b""], None)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        status, headers, chunks, fail = self.answer
        return httpx.Response(status, headers=headers, stream=Chunks(chunks, fail))


def check(outcome: object) -> None:
    """What a user does with whatever a call ended as: none of it may raise."""
    if isinstance(outcome, ExtractionResult):
        repr(outcome)
        msgspec.json.encode(outcome)
        msgspec.to_builtins(outcome)
        outcome.assess(today=TODAY)
        for card in outcome.cards:
            repr(card.info)
            card.info.to_dict()
            for field in ("id", "dob", "name", "image"):
                card.info.get(field)
        return
    assert isinstance(outcome, CVError), f"escaped the error tree: {outcome!r}"
    str(outcome)
    repr(outcome)


async def call(client: AsyncCVClient) -> object:
    try:
        return await client.extract_card(samples.JPEG)
    except CVError as exc:
        return exc


def new_client(transport: Scripted) -> AsyncCVClient:
    return AsyncCVClient(
        samples.API_KEY,
        samples.API_SECRET,
        base_url=samples.BASE_URL,
        http_client=httpx.AsyncClient(transport=transport),
        max_retries=0,
        max_response_size=CAP,
    )


def run_one(answer: Answer) -> None:
    async def main() -> None:
        transport = Scripted()
        transport.answer = answer
        async with new_client(transport) as client:
            check(await call(client))

    anyio.run(main)


# -- hypothesis: structured answers ---------------------------------------------------------------

ODD_TEXT = st.sampled_from(
    ["", "0", "-1", "²", "١٢", "1" * 5000, "True", "False", "\x00", "\ud800", "Không thời hạn"]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    ODD_TEXT,
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELD_NAMES = st.sampled_from(
    ["id", "name", "dob", "gender", "due_date", "issue_date", "person_number", "sur_name",
     "given_name", "image", "id_box", "name_box", "id_confidence", "hometown_town_code",
     "ethnicity", "place_of_birth"]
) | st.text(max_size=10)  # fmt: skip
INFO = st.dictionaries(FIELD_NAMES, VALUES, max_size=8)
TYPES = st.sampled_from(
    ["chip_id_card_front", "chip_id_card_back", "12_id_card_front", "12_id_card_back",
     "9_id_card_front", "9_id_card_back", "passport", "driving_license",
     "chip_id_card_2024_front"]
) | VALUES  # fmt: skip
CARD = st.fixed_dictionaries(
    {"type": TYPES, "info": INFO | VALUES},
    optional={"valid": VALUES, "invalidCode": VALUES, "invalidMessage": VALUES},
)
ENVELOPE = st.fixed_dictionaries(
    {},
    optional={
        "data": CARD | st.lists(CARD, max_size=3) | VALUES,
        "errorCode": st.sampled_from(["0", "1", "3", "4", "5", 0, 2]) | VALUES,
        "errorMessage": VALUES,
    },
)


def encode(obj: Any) -> bytes:
    # Lone surrogates are not UTF-8: written as the escapes JSON allows.
    return json.dumps(obj, allow_nan=True).encode()


DEEP = st.integers(100, 60_000).map(
    lambda n: b'{"data": ' + b"[" * n + b"]" * n + b', "errorCode": "0"}'
)
BODIES = st.one_of(
    ENVELOPE.map(encode),
    DEEP,
    st.binary(max_size=300),
    st.sampled_from([samples.answer(d) for d in samples.ALL_DOCUMENTS.values()]),
)
STATUSES = st.sampled_from([200, 201, 204, 400, 401, 403, 404, 408, 429, 500, 502, 503]) | (
    st.integers(100, 599)
)
HEADER_VALUES = st.sampled_from(
    [b"gzip", b"deflate", b"br", b"identity", b"", b"\xff\xfe", b"1e999", b"nan", b"text/html"]
)
HEADERS = st.lists(
    st.tuples(
        st.sampled_from([b"Content-Encoding", b"Content-Type", b"Retry-After", b"Content-Length"]),
        HEADER_VALUES | st.binary(max_size=12).filter(lambda b: b"\r" not in b and b"\n" not in b),
    ),
    max_size=3,
)


@given(
    status=STATUSES,
    headers=HEADERS,
    body=BODIES,
    split=st.integers(1, 64),
    compress=st.booleans(),
    fail=st.sampled_from([None, httpx.ReadError("reset"), httpx.ReadTimeout("t"), ValueError()]),
)
def test_any_answer_ends_as_a_result_or_a_cv_error(
    status: int,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    split: int,
    compress: bool,
    fail: BaseException | None,
) -> None:
    if compress:
        body = gzip.compress(body)
        headers = [h for h in headers if h[0] != b"Content-Encoding"]
        headers.append((b"Content-Encoding", b"gzip"))
    chunks = [body[i : i + split] for i in range(0, len(body), split)] or [b""]
    run_one((status, headers, chunks, fail))


# -- seeded mutations of real answers ------------------------------------------------------------

_BASES = [samples.answer(d) for d in samples.ALL_DOCUMENTS.values()] + [
    samples.answer([samples.CHIP_FRONT, samples.CHIP_BACK]),
    samples.answer([], code="3", message="Incorrect image format"),
]
_INSERTS = [
    b"[" * 5000,
    b"{" * 3000,
    b'"' + b"9" * 5000 + b'"',
    b"9" * 5000,
    b"\xff",
    b"\xed\xa0\x80",
    b'"\\ud800"',
    b"null",
    b"1e400",
    b'"\xd9\xa1\xd9\xa2"',
    b"]}",
    b"\x00",
]


def mutate(rng: random.Random, body: bytes) -> bytes:
    data = bytearray(body)
    for _ in range(rng.randint(1, 4)):
        if not data:
            break
        where = rng.randrange(len(data))
        kind = rng.randrange(6)
        if kind == 0:
            data[where] = rng.randrange(256)
        elif kind == 1:
            del data[where : where + rng.randint(1, 40)]
        elif kind == 2:
            data[where:where] = rng.choice(_INSERTS)
        elif kind == 3:
            data = data[:where]
        elif kind == 4:
            start = rng.randrange(len(data))
            data[where:where] = data[start : start + rng.randint(1, 200)]
        else:
            # a value swapped for a hostile one, where one starts
            at = data.find(b": ", where)
            if at >= 0:
                data[at + 2 : at + 2] = rng.choice(_INSERTS) + b","
    return bytes(data)


def test_mutated_real_answers_end_as_results_or_cv_errors(slow_tier: bool) -> None:
    seed = 20261125
    rng = random.Random(seed)
    cases = 20_000 if slow_tier else 500
    seen: dict[str, int] = {}

    async def main() -> None:
        transport = Scripted()
        async with new_client(transport) as client:
            for case in range(cases):
                body = mutate(rng, rng.choice(_BASES))
                headers: list[tuple[bytes, bytes]] = []
                roll = rng.random()
                if roll < 0.1:
                    body, headers = gzip.compress(body), [(b"Content-Encoding", b"gzip")]
                elif roll < 0.15:
                    body, headers = zlib.compress(body)[:-3], [(b"Content-Encoding", b"deflate")]
                elif roll < 0.2:
                    headers = [(b"Content-Encoding", b"gzip")]  # a lie
                status = rng.choice([200, 200, 200, 400, 500, 502])
                split = rng.randint(1, 512)
                chunks = [body[i : i + split] for i in range(0, len(body), split)] or [b""]
                transport.answer = (status, headers, chunks, None)
                outcome = await call(client)
                try:
                    check(outcome)
                except Exception as exc:
                    raise AssertionError(f"seed {seed}, case {case}: {exc!r}") from exc
                name = type(outcome).__name__
                seen[name] = seen.get(name, 0) + 1

    anyio.run(main)
    assert sum(seen.values()) == cases
    # The mutations reach both sides of the boundary.
    assert seen.get("ExtractionResult", 0) > 0
    assert seen.get("MalformedResponseError", 0) > 0
