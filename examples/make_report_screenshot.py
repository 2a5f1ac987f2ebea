"""Regenerate the README's HTML report example: docs/report-example.html and docs/report-screenshot.png.

Runs the built-in example under ``defib run --html`` (all-MiniLM-L6-v2 on
STS-B with the shape-mismatch bug, stopped after ``--steps`` optimizer steps;
a few minutes on two CPU cores), then opens the report in headless Chromium
and screenshots its top part (the verdict, the first finding and the first
plots). Needs Debian's ``chromium`` and the test extra (playwright)::

    .venv/bin/python examples/make_report_screenshot.py            # run, then screenshot
    .venv/bin/python examples/make_report_screenshot.py --reuse    # redraw from docs/report-example.json

``--reuse`` redraws the page from the JSON report the last run wrote, so a
change to the report's layout needs no rerun of the example.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def run_example(html: Path, steps: int) -> None:
    python = os.path.relpath(sys.executable, ROOT)  # the report shows the command: no machine-specific path
    defib = [python, "-m", "defib.cli", "run", "--max-steps", str(steps), "--html", str(html),
             "--json", str(html.with_suffix(".json")), "--quiet", "--", python, "examples/stsb_flatline.py"]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    # exit 1 is the diagnosis (an error finding), not a failure of this script
    code = subprocess.run(defib, cwd=ROOT, env=env).returncode
    if code not in (0, 1) or not html.exists():
        sys.exit(f"defib run exited with {code} and wrote no report")


def screenshot(html: Path, png: Path, last_plot: str) -> None:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1000, "height": 1000}, device_scale_factor=1)
        page.goto(html.resolve().as_uri())
        box = page.locator(f"#plot-{last_plot}").bounding_box()
        page.screenshot(path=str(png), full_page=True, clip={"x": 0, "y": 0, "width": 1000,
                                                             "height": box["y"] + box["height"] + 16})
        browser.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40, help="optimizer steps before defib stops the example")
    ap.add_argument("--reuse", action="store_true", help="screenshot the existing report, do not rerun")
    ap.add_argument("--last-plot", default="final-distribution", help="the image ends below this plot (its id)")
    args = ap.parse_args()
    DOCS.mkdir(exist_ok=True)
    html = DOCS / "report-example.html"
    if args.reuse:
        import json

        from defib.report.html import write_html

        write_html(json.loads(html.with_suffix(".json").read_text(encoding="utf-8")), html)
    else:
        run_example(html, args.steps)
    screenshot(html, DOCS / "report-screenshot.png", args.last_plot)
    print(f"wrote {html.relative_to(ROOT)} ({html.stat().st_size / 1000:.0f} KB) and docs/report-screenshot.png")


if __name__ == "__main__":
    main()
