"""Makes docs/view.png: `netdef view` of FCN-8s, pool4 picked, one unit's receptive field
on a photo. The photo is NASA's portrait of Eileen Collins (public domain), as scikit-image
ships it; the wheel is fetched with pip into the cache (~/.cache/netdef, or $NETDEF_CACHE),
never into the repository. Needs playwright and Debian's chromium, as the browser tests do.

    .venv/bin/python docs/make_view_screenshot.py
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("NETDEF_CACHE", Path.home() / ".cache" / "netdef"))
WHEEL_PHOTO = "skimage/data/astronaut.png"
UNIT = (13, 19)  # pool4's unit whose field holds the face


def photo() -> Path:
    path = CACHE / "astronaut.png"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary",
                        ":all:", "scikit-image==0.26.0", "-d", str(CACHE)], check=True)
        wheel = next(CACHE.glob("scikit_image-0.26.0-*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            path.write_bytes(archive.read(WHEEL_PHOTO))
    return path


def main() -> None:
    page_path = CACHE / "fcn8s-view.html"
    subprocess.run([sys.executable, "-m", "netdef", "view", "models/fcn8s.prototxt",
                    "--image", str(photo()), "-o", str(page_path)], check=True, cwd=ROOT)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=shutil.which("chromium"), args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.goto(page_path.as_uri())
        page.keyboard.press("/")
        page.keyboard.type("pool4")
        page.locator("#results li", has_text="blob").first.click()
        page.fill("#unit-i", str(UNIT[0]))
        page.fill("#unit-j", str(UNIT[1]))
        page.screenshot(path=str(ROOT / "docs" / "view.png"))
        browser.close()
    print("wrote docs/view.png")


if __name__ == "__main__":
    main()
