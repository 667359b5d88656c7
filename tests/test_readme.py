"""The README's leading example works as pasted (against a mocked service here)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import respx

from tests import samples

README = Path(__file__).resolve().parent.parent / "README.md"


def first_python_block() -> str:
    match = re.search(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert match, "README has no python example"
    return match.group(1)


def test_readme_example_runs_as_pasted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "front.jpg").write_bytes(samples.JPEG)
    monkeypatch.setenv("CVEKYC_API_KEY", samples.API_KEY)
    monkeypatch.setenv("CVEKYC_API_SECRET", samples.API_SECRET)
    code = first_python_block()
    assert len(code.strip().splitlines()) <= 12
    with respx.mock(base_url="https://cloud.computervision.com.vn") as mock:
        mock.post("/api/v2/ekyc/card").respond(200, content=samples.answer(samples.CHIP_FRONT))
        exec(compile(code, str(README), "exec"), {"__name__": "__readme__"})  # noqa: S102
    assert capsys.readouterr().out.split() == [
        "chip_id_card_front",
        "True",
        "001099012345",
        "1999-04-15",
    ]
