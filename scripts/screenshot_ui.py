"""Screenshot of the page at /ui for the README: starts the server on the shipped models, opens the page in
Debian's headless chromium (through Playwright, as tests/test_ui_browser.py does), picks a model, sets the
dial and waits for the answer to be drawn.

    python scripts/screenshot_ui.py                      # docs/ui.png: imdb-skim at threshold 0.40
    python scripts/screenshot_ui.py --model squad-skim-lstm-att --threshold 0.2 --out docs/ui-qa.png
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "loadtest"))
from _server import running_server  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models-dir", default=str(ROOT / "models"))
    ap.add_argument("--model", default="imdb-skim")
    ap.add_argument("--threshold", type=float, default=0.4, help="the dial's value (a multiple of 0.05)")
    ap.add_argument("--width", type=int, default=1300)
    ap.add_argument("--height", type=int, default=760, help="the viewport; the shot takes the whole page")
    ap.add_argument("--out", default=str(ROOT / "docs" / "ui.png"))
    args = ap.parse_args(argv)

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        sys.exit("no chromium on PATH (Debian: apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with running_server(args.models_dir, timeout=60) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True)
        try:
            pg = browser.new_page(viewport={"width": args.width, "height": args.height})
            pg.goto(url + "/ui")
            pg.wait_for_selector("body[data-ready]")
            pg.select_option("#model", args.model)
            # Set the dial as a user would (an input event), then wait for that request's answer to be drawn.
            want = f"threshold={args.threshold:g}"
            with pg.expect_response(lambda r: want in r.url):
                pg.evaluate("t => { const s = document.querySelector('#threshold'); s.value = String(t); "
                            "s.dispatchEvent(new Event('input', {bubbles: true})); }", args.threshold)
            pg.wait_for_function("w => { const r = document.querySelector('#results'); "
                                 "return r.dataset.state === 'done' && (r.dataset.url || '').includes(w); }", arg=want)
            pg.wait_for_function("document.querySelector('#curve svg') !== null")
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            pg.screenshot(path=args.out, full_page=True)
        finally:
            browser.close()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
