"""The report in a real browser: opened from disk, no console errors, sortable, screenshot."""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from magbench.reports.html import report

from _reports_fixtures import sanity_trio

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

# CI installs the browser and sets MAGBENCH_REQUIRE_BROWSER=1: there a missing browser fails.
_REQUIRED = os.environ.get("MAGBENCH_REQUIRE_BROWSER") == "1"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not _REQUIRED and not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
        reason="needs Debian chromium + chromium-driver (apt-get install -y chromium chromium-driver)",
    ),
]


@pytest.fixture()
def driver(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium>=4 (pip install selenium)")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}", "--window-size=1280,1000"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    try:
        yield d
    finally:
        d.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _order(driver, table_id):
    from selenium.webdriver.common.by import By

    rows = driver.find_elements(By.CSS_SELECTOR, f"#{table_id} tbody tr")
    return [r.get_attribute("data-method") for r in rows]


def test_report_opens_from_disk_without_errors_and_sorts_on_header_click(driver, tmp_path):
    from selenium.webdriver.common.by import By

    sanity_trio(tmp_path / "runs", caption="<script>alert(1)</script>")
    out = report([tmp_path / "runs"], tmp_path / "report.html", max_samples=2)
    driver.get(out.as_uri())
    assert driver.title == "MAG-Bench report"

    before = _order(driver, "cmp0-quality")
    assert before == ["oracle", "zeta-mem", "repeat-last"]  # by bestmatch_lpips, best first
    header = driver.find_element(By.XPATH, "//table[@id='cmp0-quality']//th[normalize-space()='method']")
    header.click()
    assert _order(driver, "cmp0-quality") == ["oracle", "repeat-last", "zeta-mem"]
    assert header.get_attribute("aria-sort") == "ascending"
    header.click()
    assert _order(driver, "cmp0-quality") == ["zeta-mem", "repeat-last", "oracle"]
    assert header.get_attribute("aria-sort") == "descending"

    # The injected caption stayed text: no alert opened, and it reads as typed.
    captions = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "details.sample .caption")]
    assert captions and all(c == "<script>alert(1)</script>" for c in captions)
    images = driver.find_elements(By.CSS_SELECTOR, "img")
    assert images and all(driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", i) for i in images)

    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []

    shot = Path(os.environ.get("MAGBENCH_SCREENSHOT_DIR", tmp_path)) / "report-browser-test.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000


def test_screenshot_script_photographs_the_top_of_the_current_report(tmp_path):
    from PIL import Image

    from magbench.reports.screenshot import WINDOW, main

    sanity_trio(tmp_path / "runs")
    out = main(["--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "shot.png"), "--keep", str(tmp_path / "work")])
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size[0] == WINDOW[0] and img.size[1] > 600
    assert (tmp_path / "work" / "report.html").is_file()
