"""The report in a real browser: headless Chromium (Debian's ``chromium`` and ``chromium-driver``)
driven by Selenium over chromedriver. The filters and the search change what is shown, the
keyboard reaches and works them, text from hostile answers runs nothing, the page's own script
breaks no rule of its policy, and a page of 5,000 entries loads (its time is printed, never
judged: see ``tests/artifacts/``).

Skipped when the browser is missing on a developer's machine; under ``CI`` a missing browser
fails (``.ci/run`` installs it).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cvekyc_async.cli.main import main
from cvekyc_async.cli.report import group_of
from tests._reports import HOSTILE, many, write
from tests.test_report import hostile_records

ARTIFACTS = Path(__file__).parent / "artifacts"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _missing(what: str) -> None:
    if _in_ci():
        pytest.fail(f"{what}: CI runs the browser tests (.ci/run installs chromium)")
    pytest.skip(f"{what} (apt-get install chromium chromium-driver)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium is not installed")
    binary = next((found for name in BROWSERS if (found := shutil.which(name))), None)
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        _missing("no chromium or chromedriver on PATH")
    assert binary is not None
    assert driver_path is not None
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    # --no-sandbox: CI runs as root, where Chromium's sandbox will not start.
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,1600", "--disable-extensions"):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    # Every policy violation in any page, recorded before the page's own script runs.
    driver.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument",
        {
            "source": "window.__violations = [];"
            "document.addEventListener('securitypolicyviolation', function (e) {"
            "  window.__violations.push(e.violatedDirective + ' ' + e.blockedURI); });"
        },
    )
    try:
        yield driver
    finally:
        driver.quit()


def make_report(tmp_path: Path, records: list[dict[str, Any]], *args: str) -> Path:
    part = write(tmp_path / "out.jsonl", records)
    out = tmp_path / "report.html"
    assert main(["report", str(part), "-o", str(out), *args]) == 0
    return out


def open_page(driver: Any, path: Path) -> None:
    driver.get(path.as_uri())
    driver.get_log("browser")  # what earlier pages logged
    deadline = time.monotonic() + 60
    while driver.execute_script("return document.readyState") != "complete":
        assert time.monotonic() < deadline, "the page did not load"
        time.sleep(0.05)


def shown(driver: Any) -> list[dict[str, str]]:
    return list(
        driver.execute_script(
            "return Array.from(document.querySelectorAll('article.entry'))"
            ".filter(e => !e.hidden && e.offsetParent !== null)"
            ".map(e => ({verdict: e.dataset.verdict, key: e.querySelector('h2').textContent}))"
        )
    )


def no_violations(driver: Any) -> None:
    assert driver.execute_script("return window.__violations") == []
    logs = driver.get_log("browser")
    assert not [e for e in logs if "Content Security Policy" in e["message"]], logs
    assert not [e for e in logs if e["level"] == "SEVERE"], logs


def save(driver: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path


def test_filters_search_and_keyboard_change_what_is_shown(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    records = many(60)
    page = make_report(tmp_path, records)
    open_page(browser, page)
    assert browser.find_element(By.ID, "filters").is_displayed()  # our script ran
    assert len(shown(browser)) == 60
    assert browser.find_element(By.ID, "shown").text == "60 of 60 shown"
    # The first entries' images are attached as they come into view.
    first = browser.find_element(By.CSS_SELECTOR, "article.entry img")
    assert first.get_attribute("src").startswith("data:image/jpeg;base64,")
    assert browser.execute_script("return arguments[0].naturalWidth", first) > 0

    verdict = Select(browser.find_element(By.ID, "f-verdict"))
    verdict.select_by_value("review")
    reviews = sum(group_of(r) == "review" for r in records)
    seen = shown(browser)
    assert len(seen) == reviews > 0
    assert {e["verdict"] for e in seen} == {"review"}

    verdict.select_by_value("")
    search = browser.find_element(By.ID, "f-q")
    search.send_keys("SCANS/00017")  # case does not matter
    assert [e["key"] for e in shown(browser)] == ["scans/00017.jpg"]
    save(browser, "report-search.png")
    search.clear()
    search.send_keys(Keys.ESCAPE)

    code = Select(browser.find_element(By.ID, "f-code"))
    code.select_by_value("id.gender")
    assert {e["verdict"] for e in shown(browser)} == {"reject"}
    code.select_by_value("")

    # The keyboard alone: from the top of the page, Tab reaches the verdict filter, the arrow
    # keys change it, and Tab goes on to the finding filter and the search box.
    browser.execute_script("document.activeElement.blur(); window.scrollTo(0, 0)")

    def press(*keys: str) -> str:
        ActionChains(browser).send_keys(*keys).perform()
        return str(browser.switch_to.active_element.get_attribute("id"))

    for _ in range(10):
        if press(Keys.TAB) == "f-verdict":
            break
    focused = browser.switch_to.active_element
    assert focused.get_attribute("id") == "f-verdict"
    outline = browser.execute_script("return getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none")  # the focus is visible
    press(Keys.ARROW_DOWN)
    assert Select(focused).first_selected_option.get_attribute("value") == "review"
    assert {e["verdict"] for e in shown(browser)} == {"review"}
    assert press(Keys.TAB) == "f-code"
    assert press(Keys.TAB) == "f-q"
    press("00011")
    assert [e["key"] for e in shown(browser)] == ["scans/00011.jpg"]
    save(browser, "report-keyboard.png")
    no_violations(browser)


def test_hostile_answers_run_no_script(browser: Any, tmp_path: Path) -> None:
    page = make_report(tmp_path, hostile_records())
    open_page(browser, page)
    time.sleep(0.5)  # time for an onerror or onload to fire, were there one
    assert browser.execute_script("return typeof window.__pwned") == "undefined"
    assert browser.title.startswith("cvekyc report")
    assert browser.execute_script("return document.querySelectorAll('script').length") == 1
    assert browser.execute_script("return document.querySelectorAll('svg, b').length") == 0
    body = browser.execute_script("return document.body.innerText")
    for text in HOSTILE:
        assert text in body  # shown as text
    assert browser.execute_script("return document.getElementById('filters').hidden") is False
    save(browser, "report-hostile.png")
    no_violations(browser)


def test_a_page_of_5000_entries_loads_and_filters(browser: Any, tmp_path: Path) -> None:
    lines = []
    for images in (True, False):
        args = () if images else ("--no-images",)
        started = time.perf_counter()
        page = make_report(tmp_path, many(5000), *args)
        written = time.perf_counter() - started
        open_page(browser, page)
        timing = browser.execute_script(
            "var t = performance.timing; return t.loadEventEnd - t.navigationStart"
        )
        assert browser.execute_script("return document.querySelectorAll('article').length") == 5000
        if images:
            # Images are attached near the screen only, not 4,500 at load.
            assert browser.execute_script("return document.images.length") < 100
        filtered = browser.execute_script(
            "var t = performance.now(); var s = document.getElementById('f-verdict');"
            "s.value = 'reject'; s.dispatchEvent(new Event('change', {bubbles: true}));"
            "document.body.offsetHeight; return performance.now() - t"
        )
        assert len(shown(browser)) == 500
        size = page.stat().st_size / 1024**2
        lines.append(
            f"5000 entries, {'with' if images else 'without'} images: {size:.1f} MiB, "
            f"written in {written:.1f} s, Chromium load (navigation start to load event) "
            f"{timing} ms, a filter {filtered:.0f} ms"
        )
        no_violations(browser)
    if lines:
        save(browser, "report-5000.png")
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "report-timing.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        print("\n".join(lines))
