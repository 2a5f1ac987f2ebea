"""Open an HTML report in headless Chromium the way a person would, and record what happened.

Drives the system's Debian ``chromium`` (``.ci/run`` installs it) through
playwright's Python package, with no browser download. Tests call
:func:`require_chromium` first: it skips with the reason when chromium or
playwright is absent on a developer's machine; CI has both.
"""

from __future__ import annotations

import io
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("DEFIB_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
MIN_COLOURS = 3          # a drawn plot has axes, text and data: at least this many distinct colours
MIN_INK_SHARE = 0.01     # and at least this share of its pixels are not the background


@dataclass
class Visit:
    """What the page did when opened: console errors, requests, script runs, and its plots as screenshots."""

    url: str
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    plots: dict[str, bytes] = field(default_factory=dict)   # figure id -> PNG of its SVG
    text: str = ""                                          # the page's visible text
    visible: dict[str, bool] = field(default_factory=dict)  # selector -> is its first match visible
    probes: dict[str, object] = field(default_factory=dict)  # JS expression -> value after load


def require_chromium() -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"chromium not installed at {CHROMIUM} (CI installs it: apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="playwright (the test extra) is not installed")


def visit(path: Path, visible: tuple[str, ...] = (), probes: tuple[str, ...] = ()) -> Visit:
    """Load ``path`` from disk, wait for it to settle, screenshot each ``figure.plot``'s SVG."""
    from playwright.sync_api import sync_playwright

    url = path.resolve().as_uri()
    out = Visit(url)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.on("console", lambda m: out.console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: out.console_errors.append(str(e)))
            page.on("request", lambda r: out.requests.append(r.url))
            page.on("dialog", lambda d: (out.dialogs.append(d.message), d.dismiss()))
            page.goto(url, wait_until="networkidle")
            for fig in page.locator("figure.plot").all():
                fig.scroll_into_view_if_needed()
                out.plots[fig.get_attribute("id") or "?"] = fig.locator("svg").first.screenshot()
            out.text = page.inner_text("body")
            out.visible = {sel: page.locator(sel).first.is_visible() for sel in visible}
            out.probes = {expr: page.evaluate(expr) for expr in probes}
        finally:
            browser.close()
    return out


def ink(png: bytes) -> tuple[int, float]:
    """(distinct colours, share of pixels unlike the top-left one) of a screenshot."""
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    pixels = list(img.get_flattened_data()) if hasattr(img, "get_flattened_data") else list(img.getdata())
    background = pixels[0]
    colours = len(set(pixels))
    return colours, sum(p != background for p in pixels) / len(pixels)


def assert_clean(v: Visit) -> None:
    """No console error, nothing fetched but the document itself, no dialog (no script ran)."""
    assert v.console_errors == [], v.console_errors
    assert v.requests == [v.url], v.requests
    assert v.dialogs == [], v.dialogs


def assert_plots_drawn(v: Visit, expected: set[str]) -> None:
    assert set(v.plots) == expected, sorted(v.plots)
    for plot_id, png in v.plots.items():
        colours, share = ink(png)
        assert colours >= MIN_COLOURS and share >= MIN_INK_SHARE, (plot_id, colours, share)
