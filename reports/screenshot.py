"""Regenerate the README's report screenshot (``docs/report-screenshot.png``) from the current report.

    python -m magbench.reports.screenshot                      # runs the sanity methods, then photographs
    python -m magbench.reports.screenshot --runs runs/ --out shot.png

Without ``--runs`` it writes the default synthetic set, runs the sanity methods on the CPU into a
temporary folder (:data:`METHODS`; the default metric set, so metrics whose weights are not here
are skipped and the report says so at its top; ``--random-metric-weights`` runs the LPIPS family
on random backbones instead, which the report also says), makes the report and photographs its top
in headless Chromium through selenium, as ``tests/test_reports_browser.py`` opens it (Debian's
``chromium`` and ``chromium-driver``; ``pip install selenium``).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

from magbench.errors import MagbenchError

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
METHODS = ("replay-context", "shuffle-context", "hold-first", "repeat-last", "oracle")
WINDOW = (1280, 1400)  # CSS pixels of the photographed viewport
LPIPS_FAMILY = ("lpips", "bestmatch", "correspondence")


def make_runs(root: Path, methods: Sequence[str] = METHODS, random_metric_weights: bool = False) -> list[Path]:
    """The sanity methods on the default synthetic set, on the CPU, one run folder each."""
    from magbench.harness import Harness, RunConfig
    from magbench.runners.local import run_whole

    options = {m: {"random_weights": True} for m in LPIPS_FAMILY} if random_metric_weights else {}
    runs = []
    for method in methods:
        config = RunConfig(method=method, dataset="synthetic", out=root / method, device="cpu", metric_options=options)
        run_whole(Harness(config), progress=False)
        runs.append(root / method)
    return runs


def photograph(html: Path, out: Path, window: tuple[int, int] = WINDOW) -> Path:
    """A PNG of the top of ``html`` as headless Chromium renders it, opened from disk."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        raise MagbenchError(f"needs {CHROMIUM} and {CHROMEDRIVER}: apt-get install -y chromium chromium-driver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        raise MagbenchError("needs selenium: pip install 'selenium>=4'") from None
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}",
                f"--window-size={window[0]},{window[1]}"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    try:
        driver.get(Path(html).resolve().as_uri())
        out.parent.mkdir(parents=True, exist_ok=True)
        if not driver.save_screenshot(str(out)):
            raise MagbenchError(f"{out}: Chromium could not write the screenshot")
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    return out


def main(argv: Sequence[str] | None = None) -> Path:
    from magbench.reports.html import report

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/report-screenshot.png"))
    parser.add_argument("--runs", type=Path, nargs="*", help="Run folders to report on (default: run the sanity methods afresh).")
    parser.add_argument("--random-metric-weights", action="store_true", help="LPIPS-family metrics on random backbones.")
    parser.add_argument("--keep", type=Path, help="Keep the runs and the report in this folder.")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="magbench-screenshot-")) if args.keep is None else args.keep
    try:
        runs = args.runs or make_runs(work / "runs", random_metric_weights=args.random_metric_weights)
        html = report(runs, work / "report.html", max_samples=3)
        out = photograph(html, args.out)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {out} from {html}")
    return out


if __name__ == "__main__":
    main()
