"""The report renders in a real headless Chromium: the page loads, every image decodes, the key numbers show.

Both files are checked: report.html as written (self-contained, the network switched off) and
report.md rendered to HTML next to it (its images are the plots/ files it links). Skips without
a Chromium on a developer's machine, never under CI=true (`make test`'s set-up installs one).
"""

import json
import os
import re
import shutil
import subprocess

import markdown
import pytest

BROWSER = next((path for name in ("chromium", "chromium-browser", "google-chrome")
                if (path := shutil.which(name))), None)
# Counts the images that decoded, once the page has loaded, into an attribute the dumped DOM shows.
CHECK = """<script>window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const decoded = images.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.setAttribute("data-images", decoded + "/" + images.length);
});</script>"""
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--host-resolver-rules=MAP * ~NOTFOUND",  # any network request would fail, and images with it
         "--virtual-time-budget=10000"]


@pytest.fixture
def browser():
    if BROWSER is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but no chromium: `make test` installs Debian's chromium package")
        pytest.skip("no chromium on this machine (`make browser` installs it)")
    return BROWSER


def _render(browser, page) -> str:
    done = subprocess.run([browser, *FLAGS, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _key_numbers(folder) -> list[str]:
    rows = json.loads((folder / "results.json").read_text())["rows"]
    return [f"{row['accuracy']:.3f} ± {row['accuracy_std']:.3f}" for row in rows]


def _images(dom: str) -> tuple[int, int]:
    found = re.search(r'data-images="(\d+)/(\d+)"', dom)
    assert found, "the page never finished loading"
    return int(found[1]), int(found[2])


def test_report_html_renders_with_every_image_and_the_key_numbers(browser, finished_comparison, tmp_path):
    page = tmp_path / "report.html"  # elsewhere than its plots: it must not need them
    page.write_text((finished_comparison / "report.html").read_text().replace("</body>", CHECK + "</body>"))
    dom = _render(browser, page)
    decoded, total = _images(dom)
    assert total >= 3 and decoded == total
    for number in _key_numbers(finished_comparison):
        assert number in dom
    assert "Recommendation" in dom and "Low-data regime." in dom
    shot = finished_comparison / "report.png"
    subprocess.run([browser, *FLAGS, "--window-size=1280,2600", f"--screenshot={shot}",
                    (finished_comparison / "report.html").as_uri()], capture_output=True, timeout=180, check=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_report_markdown_renders_with_its_linked_plots(browser, finished_comparison):
    body = markdown.markdown((finished_comparison / "report.md").read_text(), extensions=["tables", "fenced_code"])
    page = finished_comparison / "report_md.html"  # beside report.md, so plots/ resolves as it does there
    page.write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>{body}{CHECK}</body></html>")
    dom = _render(browser, page)
    decoded, total = _images(dom)
    assert total >= 3 and decoded == total
    assert "<table>" in dom
    for number in _key_numbers(finished_comparison):
        assert number in dom
