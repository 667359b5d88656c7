"""The batch command's files: manifests, shards and the resumable JSONL record."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from cvekyc_async._batch import BatchResult
from cvekyc_async._jobs import Job, ManifestError, ResultLog, Shard, _end_of_last_line, discover


def test_resume_drops_a_cut_line_and_knows_what_is_done(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    lines = [
        json.dumps({"input": "/a.jpg", "ok": True}),
        json.dumps({"input": ["/f.jpg", "/b.jpg"], "ok": False}),
    ]
    out.write_text("\n".join(lines) + '\n{"input": "/c.jp', encoding="utf-8")
    log = ResultLog(out)
    log.open(resume=True, overwrite=False)
    log.write(Job("/c.jpg", "/c.jpg"), BatchResult(2, "/c.jpg"))
    log.close()
    assert log.is_done(Job("/a.jpg", "/a.jpg"))
    assert log.is_done(Job("/f.jpg\t/b.jpg", ("/f.jpg", "/b.jpg")))
    assert not log.is_done(Job("/c.jpg", "/c.jpg"))  # cut short: sent again
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["input"] for r in records] == ["/a.jpg", ["/f.jpg", "/b.jpg"], "/c.jpg"]


@pytest.mark.parametrize(
    ("data", "block", "end"),
    [(b"", 4, 0), (b"abc", 4, 0), (b"a\n", 4, 2), (b"a\nbcdefghij", 4, 2), (b"a\nb\n", 1, 4)],
)
def test_end_of_last_line(data: bytes, block: int, end: int) -> None:
    assert _end_of_last_line(io.BytesIO(data), block) == end


def test_shards_split_keys_stably() -> None:
    keys = [f"/scans/{i}.jpg" for i in range(300)]
    parts = [[k for k in keys if k in Shard(i, 3)] for i in (1, 2, 3)]
    assert sorted(k for part in parts for k in part) == sorted(keys)
    assert all(60 < len(p) < 140 for p in parts)
    assert parts == [[k for k in keys if k in Shard(i, 3)] for i in (1, 2, 3)]


def test_manifests_resolve_relative_paths_and_take_pairs(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text(
        "front,back\nf1.jpg,b1.jpg\n\n/abs/f2.jpg,b2.jpg\n", encoding="utf-8"
    )
    jobs = list(discover([str(tmp_path / "m.csv")], pairs=True))
    assert [j.value for j in jobs] == [
        (str(tmp_path / "f1.jpg"), str(tmp_path / "b1.jpg")),
        ("/abs/f2.jpg", str(tmp_path / "b2.jpg")),
    ]
    (tmp_path / "plain.csv").write_text("a.jpg\nhttps://x.test/b.jpg\n", encoding="utf-8")
    assert [j.key for j in discover([str(tmp_path / "plain.csv")], pairs=False)] == [
        str(tmp_path / "a.jpg"),
        "https://x.test/b.jpg",
    ]
    (tmp_path / "bad.jsonl").write_text('"a.jpg"\n{oops\n', encoding="utf-8")
    with pytest.raises(ManifestError, match=r"bad\.jsonl:2: not JSON"):
        list(discover([str(tmp_path / "bad.jsonl")], pairs=False))
