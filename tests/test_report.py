"""``cvekyc report``: one self-contained HTML page of batch results (escaped, reaching nothing
outside itself, private), its summary and order, its images, and a run against the emulator."""

from __future__ import annotations

import base64
import hashlib
import html
import io
import os
import re
import stat
import sys
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from cvekyc_async.cli.main import main
from cvekyc_async.cli.records import Results
from cvekyc_async.cli.report import GROUPS, ReportOptions, group_of, page
from cvekyc_async.emulator import RunningEmulator, specimen_path
from tests._reports import HOSTILE, card, failed, finding, many, ok, write
from tests.test_cli import env_for, lines, run


class Parsed(HTMLParser):
    """The page's tags, their attributes, and the text of its scripts and styles."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self._in: str | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag in ("script", "style"):
            self._in = tag

    def handle_endtag(self, tag: str) -> None:
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "script":
            self.scripts.append(data)
        elif self._in == "style":
            self.styles.append(data)

    def entries(self) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == "article"]

    def by_id(self, ident: str) -> dict[str, str | None]:
        return next(a for _, a in self.tags if a.get("id") == ident)


def report(tmp_path: Path, records: list[dict[str, Any]], *args: str) -> tuple[str, Path]:
    """Write ``records`` as a batch output, and the report of it through the command."""
    part = write(tmp_path / "out.jsonl", records)
    out = tmp_path / "report.html"
    assert main(["report", str(part), "-o", str(out), *args]) == 0
    return out.read_text(encoding="utf-8"), out


def summary(text: str, key: str) -> str:
    found = re.search(rf'<dd id="sum-{key}">(.*?)</dd>', text, re.S)
    assert found is not None, key
    return re.sub(r"<[^>]+>", " ", found.group(1))


def pictures(text: str) -> list[Image.Image]:
    found = re.findall(r'src="data:image/jpeg;base64,([A-Za-z0-9+/=]+)"', text)
    return [Image.open(io.BytesIO(base64.b64decode(data))) for data in found]


def colour_of(image: Image.Image) -> tuple[int, int, int]:
    r, g, b = image.convert("RGB").resize((1, 1)).getpixel((0, 0))  # type: ignore[misc]
    return r, g, b


def solid(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (640, 404)) -> Path:
    Image.new("RGB", size, colour).save(path, "JPEG")
    return path


def hostile_records() -> list[dict[str, Any]]:
    records = []
    for i, text in enumerate(HOSTILE):
        hostile_card = card(text, name=text, dob=text, **{text: text, f"{text}_confidence": 0.1})
        hostile_card.update(valid=False, invalid_message=text)
        records.append(
            ok(
                f"{text}-{i}",
                "review",
                input=[text, text],
                cards=[hostile_card],
                findings=[
                    {
                        "code": text,
                        "severity": text,
                        "message": text,
                        "fields": [text],
                        "rule": text,
                    }
                ],
                same_as=text,
                request_id=text,
                run=text,
                shard=text,
                written=text,
                thumbnails=[text],
            )
        )
        records.append(failed(f"failed-{i}", text, text, input=text))
    return records


# -- what the page never does ---------------------------------------------------------------------


def test_text_from_answers_and_inputs_is_shown_escaped_never_as_markup(tmp_path: Path) -> None:
    text, _ = report(tmp_path, hostile_records())
    for hostile in HOSTILE:
        shown = html.escape(hostile, quote=True).replace("://", "&#58;//")
        assert shown in text
        if shown != hostile:
            assert hostile not in text
    parsed = Parsed(text)
    assert [t for t, _ in parsed.tags if t == "script"] == ["script"]  # ours alone
    assert "pwned" not in "".join(parsed.scripts)
    allowed = {"html", "head", "meta", "title", "style", "body", "a", "div", "header", "h1",
               "h2", "h3", "p", "strong", "noscript", "section", "dl", "dt", "dd", "ul", "li",
               "span", "code", "form", "label", "select", "option", "input", "button",
               "output", "main", "article", "figure", "figcaption", "template", "img", "table",
               "thead", "tbody", "tr", "th", "td", "script"}  # fmt: skip
    assert {t for t, _ in parsed.tags} <= allowed
    for _, attrs in parsed.tags:
        assert not [a for a in attrs if a.startswith("on") or a in ("style", "srcset")]


def test_the_page_reaches_nothing_outside_itself(tmp_path: Path) -> None:
    thumb = solid(tmp_path / "thumb.jpg", (200, 30, 30))
    records = [
        *hostile_records(),
        ok("url", input="https://files.example/scan.jpg?sig=x", thumbnails=[str(thumb)]),
        ok("http", "review", input="HTTP://files.example/a.jpg"),
    ]
    text, _ = report(tmp_path, records)
    # No address at all, not even as text (a URL input is shown with its colon escaped).
    assert not re.search(r"https?://", text, re.I)
    assert "files.example" in text
    parsed = Parsed(text)
    srcs = [a.get("src") for t, a in parsed.tags if "src" in a]
    assert srcs
    assert all(s is not None and s.startswith("data:image/jpeg;base64,") for s in srcs)
    hrefs = [a.get("href") for _, a in parsed.tags if "href" in a]
    assert all(h is not None and h.startswith("#") for h in hrefs)
    assert not [t for t, _ in parsed.tags if t in ("link", "base", "iframe", "object", "embed")]
    assert not re.search(r"url\(|@import", "".join(parsed.styles), re.I)
    assert not [a for t, a in parsed.tags if t in ("form", "button") and "action" in a]
    # The policy lets the page's own style and script run, by their hashes, and nothing else.
    policy = next(
        a["content"] for t, a in parsed.tags if a.get("http-equiv") == "Content-Security-Policy"
    )
    assert policy is not None
    assert "default-src 'none'" in policy
    assert "img-src data:;" in policy
    assert "unsafe" not in policy
    for kind, content in (("script", parsed.scripts), ("style", parsed.styles)):
        (body,) = content
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"{kind}-src 'sha256-{digest}'" in policy


def test_the_page_is_created_readable_by_its_owner_only(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        _, out = report(tmp_path, [ok("a")])
        assert stat.S_IMODE(out.stat().st_mode) == 0o600
        out.chmod(0o644)  # a report made again replaces the file, private again
        _, out = report(tmp_path, [ok("a")])
        assert stat.S_IMODE(out.stat().st_mode) == 0o600
    finally:
        os.umask(old)
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_no_images_writes_a_text_only_page(tmp_path: Path) -> None:
    thumb = solid(tmp_path / "thumb.jpg", (200, 30, 30))
    input_file = solid(tmp_path / "scan.jpg", (30, 200, 30))
    records = [
        ok("a", thumbnails=[str(thumb)]),
        failed("b", input=str(input_file)),
        ok("c", cards=[card(image=base64.b64encode(thumb.read_bytes()).decode())]),
    ]
    text, _ = report(tmp_path, records, "--no-images")
    assert "data:image" not in text
    assert "<template" not in text
    assert "addresses of identity documents" in text  # the notice says no images
    with_images, _ = report(tmp_path, records)
    assert with_images.count("data:image/jpeg") == 3


# -- what the page says ---------------------------------------------------------------------------


def test_summary_figures_are_those_of_the_records_that_count(tmp_path: Path) -> None:
    one = write(
        tmp_path / "1.jsonl",
        [
            *many(40, thumbnails=False),
            ok("shared", sha256="a" * 64, written="2025-03-01T08:00:00Z"),
            failed("later-ok", "APIStatusError", written="2025-03-01T09:30:00Z"),
            failed("timeout", "TimeoutError"),
            ok("none", assessment=None),
        ],
    )
    two = write(
        tmp_path / "2.jsonl",
        [
            ok("later-ok", "reject", written="2025-03-02T10:00:05+00:00"),
            ok("copy", sha256="a" * 64, same_as="shared", result=None, billed=False),
            failed("timeout", "TimeoutError", attempts=3),
        ],
    )
    out = tmp_path / "r.html"
    assert main(["report", str(one), str(two), "-o", str(out), "--no-images"]) == 0
    text = out.read_text(encoding="utf-8")
    records = list(Results([one, two]).records())
    groups = Counter(group_of(r) for r in records)
    kinds = Counter(r["error"]["type"] for r in records if not r["ok"])
    assert summary(text, "inputs").strip() == str(len(records)) == "45"
    assert summary(text, "ok").strip() == str(sum(r["ok"] for r in records))
    assert summary(text, "billed").strip() == str(sum(r["billed"] is True for r in records))
    assert summary(text, "failed").split()[0] == str(sum(kinds.values()))
    for kind, n in kinds.items():
        assert f"{kind}: {n}" in summary(text, "failed")
    for group in ("review", "reject", "accept", "none"):
        assert f"{group.replace('none', 'not assessed')} {groups[group]}" in summary(
            text, "verdicts"
        )
    assert summary(text, "span").strip() == (
        "2025-03-01 08:00:00 UTC to 2025-03-02 10:00:05 UTC (1 d 2 h 5 s)"
    )
    parsed = Parsed(text)
    assert Counter(a["data-verdict"] for a in parsed.entries()) == groups
    assert "47 records read" in summary(text, "sources")  # 2 replaced by later ones


def test_entries_come_review_first_then_reject_failed_not_assessed_accept(tmp_path: Path) -> None:
    records = [*many(30, thumbnails=False), ok("x", assessment=None)]
    text, _ = report(tmp_path, records)
    verdicts = [a["data-verdict"] for a in Parsed(text).entries()]
    assert verdicts == sorted(verdicts, key=GROUPS.index)
    assert verdicts[0] == "review"
    assert verdicts[-1] == "accept"
    assert set(verdicts) == set(GROUPS)
    # Within a group, in the order of the batch.
    keys = re.findall(r'<h2 id="k\d+">(.*?)</h2>', text)
    reviews = [k for k, v in zip(keys, verdicts, strict=True) if v == "review"]
    assert reviews == sorted(reviews)


def test_entries_show_each_card_its_fields_findings_and_failures(tmp_path: Path) -> None:
    front = card("chip_id_card_front", name_confidence=0.41)
    back = card("chip_id_card_back", id=None, issue_date="01/01/2022")
    back.update(valid=False, invalid_message="Photo of a screen", invalid_code=1)
    pair = ok(
        "pair",
        "reject",
        input=["/data/front.jpg", "/data/back.jpg"],
        cards=[front, back],
        findings=[
            finding("pair.dob", "reject", rule="Law 26/2023/QH15, Art. 21", fields=["dob"]),
            finding("confidence.low", "review", fields=["name"]),
        ],
        request_id="req-123",
    )
    gone = failed("gone", "APIStatusError", "the service answered 503", attempts=3)
    text, _ = report(tmp_path, [pair, gone], "--no-images")
    entry = text.split('data-verdict="reject"')[1].split("</article>")[0]
    assert "Card 1 of 2: <code>chip_id_card_front</code> — valid" in entry
    assert "Card 2 of 2: <code>chip_id_card_back</code> — flagged by the service: " in entry
    assert "Photo of a screen (warning 1)" in entry
    assert "<dt>Front</dt><dd>/data/front.jpg</dd><dt>Back</dt><dd>/data/back.jpg</dd>" in entry
    assert "<code>pair.dob</code> pair.dob found (fields: dob)" in entry
    assert "rule: Law 26/2023/QH15, Art. 21" in entry
    assert '<tr class="low"><th scope="row">name</th><td>NGUYỄN VĂN A</td>' in entry
    assert '0.41 <span class="lowmark">low</span>' in entry
    assert "id_box" not in entry
    assert "<code>req-123</code>" in entry
    assert 'data-codes="confidence.low pair.dob"' in entry
    failure = text.split('data-verdict="failed"')[1].split("</article>")[0]
    assert "Failed: <code>APIStatusError</code>" in failure
    assert "the service answered 503" in failure
    assert "error code 1, HTTP status 200" in failure
    assert "not billed, 3 attempts" in failure


def test_low_confidence_threshold_is_an_option(tmp_path: Path) -> None:
    records = [ok("a"), ok("b", cards=[card(name_confidence=0.5)])]
    text, _ = report(tmp_path, records)
    assert text.count('<tr class="low">') == 1
    assert [a["data-low"] for a in Parsed(text).entries()] == ["0", "1"]
    text, _ = report(tmp_path, records, "--low-confidence", "0.99")
    assert text.count('<tr class="low">') == 6  # every confidence of the two cards
    assert "below 0.99: 2 inputs" in summary(text, "low")


# -- images -------------------------------------------------------------------------------------


def test_the_saved_thumbnail_comes_first_then_the_crop_then_the_input(tmp_path: Path) -> None:
    red = solid(tmp_path / "thumb.jpg", (220, 20, 20), (1200, 760))
    blue = base64.b64encode(solid(tmp_path / "crop.jpg", (20, 20, 220)).read_bytes()).decode()
    green = solid(tmp_path / "scan.jpg", (20, 200, 20))
    digest = hashlib.sha256(green.read_bytes()).hexdigest()
    records = [
        ok("thumb", cards=[card(image=blue)], thumbnails=[str(red)], input=str(green)),
        ok("crop", cards=[card(image=blue)], thumbnails=[str(tmp_path / "gone.jpg")]),
        ok("input", input=str(green), sha256=digest),
    ]
    text, _ = report(tmp_path, records)
    red_, blue_, green_ = pictures(text)
    assert colour_of(red_)[0] > 200
    assert red_.size == (480, 304)  # the long side made 480 pixels
    assert colour_of(blue_)[2] > 200
    assert colour_of(green_)[1] > 180
    assert "the saved thumbnail" in text
    assert "the service&#x27;s crop" in text
    assert "the input as sent" in text
    text, _ = report(tmp_path, records, "--image-size", "200")
    assert max(pictures(text)[0].size) == 200


def test_each_card_of_a_pair_shows_its_own_thumbnail(tmp_path: Path) -> None:
    red = solid(tmp_path / "front.jpg", (220, 20, 20))
    blue = solid(tmp_path / "back.jpg", (20, 20, 220))
    Image.new("RGBA", (300, 200), (20, 20, 220, 128)).save(blue.with_suffix(".png"), "PNG")
    record = ok(
        "pair",
        cards=[card(), card("chip_id_card_back")],
        thumbnails=[str(red), str(blue.with_suffix(".png"))],
    )
    text, _ = report(tmp_path, [record])
    first, second = pictures(text)
    assert colour_of(first)[0] > 200
    assert colour_of(second)[2] > 200  # a PNG with transparency, as JPEG


def test_what_cannot_be_shown_says_no_image_and_the_page_goes_on(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.jpg"
    os.mkfifo(fifo)
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"\xff\xd8\xff" + b"\x00" * 100)
    changed = solid(tmp_path / "changed.jpg", (1, 2, 3))
    bomb = tmp_path / "bomb.png"
    Image.new("1", (20_000, 20_000)).save(bomb, "PNG")  # 400 million pixels in a small file
    near = tmp_path / "near.png"
    Image.new("1", (10_000, 10_000)).save(near, "PNG")  # past Pillow's warning, not its error
    records = [
        failed("pdf", input=str(specimen_path("scan.pdf"))),
        failed("fifo", input=str(fifo)),
        failed("garbage", input=str(garbage)),
        failed("changed", input=str(changed), sha256="0" * 64),
        failed("bomb", input=str(bomb)),
        failed("near", input=str(near)),
        failed("missing", input=str(tmp_path / "missing.jpg")),
        failed("url", input="https://files.example/a.jpg"),
        ok("bad-crop", cards=[card(image="not base64 at all!")]),
        ok("text-crop", cards=[card(image=base64.b64encode(b"hello, world").decode())]),
    ]
    text, _ = report(tmp_path, records)
    assert "data:image" not in text
    for reason in (
        "input: no image: a PDF",
        "input: no image: not a regular file",
        "input: no image: it could not be decoded",
        "input: no image: the file has changed since it was read",
        "input: no image: too many pixels",
        "input: no image: No such file or directory",
        "input: no image: a URL (not fetched)",
        "crop: no image: the service&#x27;s crop is not base64",
        "crop: no image: not an image file",
    ):
        assert reason in text, reason
    assert len(Parsed(text).entries()) == len(records)


def test_without_pillow_the_page_says_no_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    thumb = solid(tmp_path / "thumb.jpg", (200, 30, 30))
    monkeypatch.setitem(sys.modules, "PIL", None)
    text, _ = report(tmp_path, [ok("a", thumbnails=[str(thumb)])])
    assert "data:image" not in text
    assert "Pillow is not installed" in text
    assert "Pillow is not installed" in capsys.readouterr().err


def test_the_page_is_written_a_piece_at_a_time(tmp_path: Path) -> None:
    part = write(tmp_path / "out.jsonl", many(50, thumbnails=False))
    pieces = list(page(Results([part]), ReportOptions(images=False)))
    assert len(pieces) > 50
    assert max(len(p) for p in pieces) < 20_000


# -- the command ----------------------------------------------------------------------------------


def test_refusals_are_usage_errors_and_leave_files_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    part = write(tmp_path / "out.jsonl", [ok("a")])
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me\n")
    link = tmp_path / "link.html"
    link.symlink_to(tmp_path / "elsewhere.html")
    cases = [
        (["report", str(part), "-o", str(part)], "is also a batch output"),
        (["report", str(part), "-o", str(notes)], "holds something other than a cvekyc report"),
        (["report", str(part), "-o", str(link)], "a symlink (not followed)"),
        (["report", str(part), "-o", str(tmp_path)], "not a regular file"),
        (["report", str(part), "-o", "-"], "goes to a file"),
        (["report", str(tmp_path / "none.jsonl"), "-o", "r.html"], "no such file"),
        (["report", str(notes), "-o", str(tmp_path / "r.html")], "holds something other than"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv
    assert notes.read_text() == "keep me\n"
    assert not (tmp_path / "elsewhere.html").exists()
    assert not (tmp_path / "r.html").exists()
    for bad in (["--low-confidence", "2"], ["--image-size", "10"]):
        with pytest.raises(SystemExit) as exited:
            main(["report", str(part), "-o", str(tmp_path / "r.html"), *bad])
        assert exited.value.code == 2


def test_an_output_that_cannot_be_written_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    part = write(tmp_path / "out.jsonl", [ok("a")])
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["report", str(part), "-o", str(blocker / "r.html")]) == 3
    assert "cannot write" in capsys.readouterr().err


def test_batch_then_report_through_the_command(
    cv_emulator: RunningEmulator, tmp_path: Path
) -> None:
    env = env_for(cv_emulator)
    out = tmp_path / "out.jsonl"
    specimens = specimen_path("chip_front.jpg").parent
    proc = run("batch", str(specimens), "--endpoint", "ocr", "-o", str(out), env=env)
    assert proc.returncode == 1, proc.stderr  # blank.jpg holds no document
    page_path = tmp_path / "r.html"
    proc = run("report", str(out), "-o", str(page_path), env=env)
    assert proc.returncode == 0, proc.stderr
    records = lines(out)
    assert f"report of {len(records)} inputs ({sum(r['ok'] for r in records)} ok)" in proc.stdout
    assert stat.S_IMODE(page_path.stat().st_mode) == 0o600
    text = page_path.read_text(encoding="utf-8")
    parsed = Parsed(text)
    verdicts = Counter(a["data-verdict"] for a in parsed.entries())
    assert verdicts == Counter(group_of(r) for r in records)
    assert verdicts["failed"] == 1
    assert summary(text, "inputs").strip() == str(len(records))
    # Each input but the PDF shows itself (the emulator sends no crops unless asked).
    assert len(pictures(text)) == len(records) - 1
    assert "input: no image: a PDF" in text
    assert not re.search(r"https?://", text, re.I)


def test_a_thumbnail_named_by_its_hash_is_shown_only_while_it_holds_those_bytes(
    tmp_path: Path,
) -> None:
    red = solid(tmp_path / "red.jpg", (220, 20, 20)).read_bytes()
    blue = solid(tmp_path / "blue.jpg", (20, 20, 220)).read_bytes()
    saved = tmp_path / f"{hashlib.sha256(red).hexdigest()}.jpg"
    saved.write_bytes(red)
    records = [ok("a", thumbnails=[str(saved)])]
    text, _ = report(tmp_path, records)
    assert colour_of(pictures(text)[0])[0] > 200
    # Another run wrote another person's card there: it is not shown as this one's.
    saved.write_bytes(blue)
    text, _ = report(tmp_path, records)
    assert pictures(text) == []
    assert "the file has changed since it was read" in text


def test_direction_controls_in_answers_are_shown_as_their_codes(tmp_path: Path) -> None:
    spoof = "invoice\u202egpj.exe"
    records = [ok(spoof, cards=[card(name="A\u2067B\u200fC")], same_as="a\u202eb")]
    text, _ = report(tmp_path, records)
    assert not re.search("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]", text)
    assert "invoice[U+202E]gpj.exe" in text
    assert "A[U+2067]B[U+200F]C" in text


@pytest.mark.parametrize("value", [1e308, -0.5, 1.5, "0.9"])
def test_a_confidence_outside_zero_to_one_is_not_shown_as_one(
    tmp_path: Path, value: object
) -> None:
    records = [ok("a", cards=[card(name_confidence=value)])]
    text, _ = report(tmp_path, records)
    assert "1e+308" not in text
    assert "inf" not in text.lower().replace("info", "")
    row = re.search(r"<tr[^>]*>\s*<th[^>]*>name</th>(.*?)</tr>", text, re.S)
    assert row is not None
    assert re.search(r"\d\.\d\d", re.sub(r"<[^>]+>", " ", row.group(1))) is None
