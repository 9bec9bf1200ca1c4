"""The built book in a real browser: Debian's Chromium, driven by Playwright, reads every
page from a local server with every other host blocked, as a reader offline would. Each
page loads with no console error and no request elsewhere, its Mermaid diagrams become
SVG and its TeX is typeset by MathJax; search finds a term; at a phone's width nothing
is wider than the screen and the menu opens and navigates; in JupyterLab, as `make up`
starts it, a lab's link to its chapter opens the built chapter. Screenshots go to
_build/screenshots (make test-book builds the book first)."""

from __future__ import annotations

import concurrent.futures
import functools
import http.server
import os
import re
import shutil
import sys
import threading
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from conftest import JUPYTER_TOKEN, jupyterlab_as_make_up
from msalab import paths

BOOK = paths.REPO / "_build" / "html"
SCREENSHOTS = paths.REPO / "_build" / "screenshots"
CHROMIUM = os.environ.get("MSALAB_CHROMIUM", "/usr/bin/chromium")
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
# The first page of each part (Part I has no index page of its own).
PART_PAGES = {"part1": "book/part1/monolith.html", "part2": "book/part2/index.html",
              "part3": "book/part3/index.html", "part4": "book/part4/index.html"}
# Mermaid draws its labels at 16 px: shrunk below this share of its size, a diagram's
# text is smaller than about 8 px and no longer readable on a phone (book/_static/book.js
# keeps diagrams at 0.6 or more; a wider one scrolls inside its box).
MIN_DIAGRAM_SCALE = 0.5
LOCAL = "http://127.0.0.1:"
READERS_PER_WIDTH = int(os.environ.get("MSALAB_BOOK_READERS", "2"))
NOT_LOCAL = re.compile(r"^(?!http://127\.0\.0\.1:)")
NOT_LOCAL_SOCKET = re.compile(r"^(?!ws://127\.0\.0\.1:)")

pytestmark = pytest.mark.skipif(not (BOOK / "index.html").is_file(),
                                reason="the book has not been built: make book (or make test-book)")


def book_pages() -> list[str]:
    """Every HTML page of the built book, as paths relative to its root (index.html only
    redirects to the first page: test_phone_menu_opens_and_navigates starts there)."""
    return sorted(p.relative_to(BOOK).as_posix() for p in BOOK.rglob("*.html")
                  if p.relative_to(BOOK).parts[0] not in ("_static", "_sources")
                  and p.relative_to(BOOK).as_posix() != "index.html")


def mermaid_blocks_in(page: str) -> int:
    return len(re.findall(r'<pre[^>]*class="[^"]*\bmermaid\b', (BOOK / page).read_text()))


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class BookServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        """A page the browser leaves before a file is sent (it moves on to the next page) closes
        the connection mid-answer: expected here, so no traceback. Anything else is printed."""
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


@pytest.fixture(scope="module")
def site():
    """The built book on 127.0.0.1, on a free port, for this module's tests."""
    handler = functools.partial(QuietHandler, directory=str(BOOK))
    server = BookServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()
    thread.join()


def require_chromium() -> None:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"no Chromium at {CHROMIUM}: run `make setup` (as root it installs "
                    f"Debian's chromium), or `sudo apt-get install chromium`, "
                    f"or set MSALAB_CHROMIUM", pytrace=False)


def launch(playwright):
    # Playwright's own browser download is not used: Debian's Chromium is driven instead.
    return playwright.chromium.launch(executable_path=CHROMIUM)


@pytest.fixture(scope="module")
def browser():
    require_chromium()
    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


class Reader:
    """One browser tab that reaches only 127.0.0.1: what pages ask of other hosts is
    refused and recorded, as are console errors, script errors and failed loads."""

    def __init__(self, browser, viewport: dict, **options):
        self.context = browser.new_context(viewport=viewport, **options)
        # Only requests for other hosts come to this handler (matched in Playwright's
        # driver), so the book's own files load without a round trip through Python.
        self.context.route(NOT_LOCAL, self._refuse)
        self.context.route_web_socket(NOT_LOCAL_SOCKET, self._refuse_socket)
        self.page = self.context.new_page()
        self.page.on("console", lambda msg: msg.type == "error" and self.errors.append(msg.text))
        self.page.on("pageerror", lambda error: self.errors.append(f"script error: {error}"))
        self.page.on("requestfailed", self._failed)
        self.page.on("response", lambda r: r.status >= 400 and self.errors.append(f"HTTP {r.status}: {r.url}"))
        self.blocked: list[str] = []
        self.errors: list[str] = []

    def _refuse(self, route):
        self.blocked.append(route.request.url)
        route.abort("blockedbyclient")

    def _refuse_socket(self, socket):
        self.blocked.append(socket.url)
        socket.close()

    def _failed(self, request):
        # ERR_ABORTED: a load the next navigation cut short (a missing file is a 404 above)
        if request.url.startswith(LOCAL) and "ERR_ABORTED" not in (request.failure or ""):
            self.errors.append(f"failed to load {request.url}: {request.failure}")

    def open(self, url: str) -> None:
        """Load a page and wait until its diagrams and math are rendered (or have failed).
        Chromium cancels its loads when the machine's network interfaces change (as
        containers and clusters starting elsewhere on it do): such a load is read again."""
        for _ in range(3):
            self.blocked.clear()
            self.errors.clear()
            self.page.goto(url, wait_until="load")
            self.page.evaluate(WAIT_FOR_RENDERING)
            if not any("ERR_NETWORK_CHANGED" in error for error in self.errors):
                return

    def close(self):
        self.context.close()


# Mermaid renders after the window's load event, MathJax once its deferred script has run:
# wait for both (bounded, so a broken page is reported, not waited on forever).
WAIT_FOR_RENDERING = """async () => {
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const deadline = Date.now() + 15000;
  const pending = () => [...document.querySelectorAll('pre.mermaid')].some((el) => !el.querySelector('svg'));
  while (pending() && Date.now() < deadline) await sleep(50);
  if (document.querySelector('.math')) {
    while (!(window.MathJax && MathJax.startup && MathJax.startup.promise) && Date.now() < deadline) await sleep(50);
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  }
}"""

# What a reader sees instead of a diagram or a formula, if rendering failed.
RENDERING_PROBLEMS = """() => {
  const problems = [];
  const mermaid = [...document.querySelectorAll('pre.mermaid')];
  for (const el of mermaid) {
    const svg = el.querySelector('svg');
    if (!svg) problems.push('Mermaid source instead of a diagram: ' + el.textContent.trim().slice(0, 60));
    else if (svg.getAttribute('aria-roledescription') === 'error') problems.push('Mermaid syntax error diagram');
  }
  const math = [...document.querySelectorAll('span.math, div.math')];
  for (const el of math) {
    if (!el.querySelector('mjx-container')) problems.push('math not typeset: ' + el.textContent.trim().slice(0, 60));
  }
  // Raw TeX delimiters left in the text a reader sees (code is allowed to contain them).
  const text = document.querySelector('main') || document.body;
  const clone = text.cloneNode(true);
  clone.querySelectorAll('pre, code, script, style, textarea, mjx-container').forEach((el) => el.remove());
  for (const delimiter of ['\\\\(', '\\\\[', '$$']) {
    const at = clone.textContent.indexOf(delimiter);
    if (at >= 0) problems.push('raw TeX in the text: ...' + clone.textContent.slice(Math.max(0, at - 30), at + 40) + '...');
  }
  return {problems, mermaid: mermaid.length, math: math.length};
}"""

# At a phone's width: is anything wider than the screen, and how far are diagrams shrunk?
LAYOUT = """() => {
  const diagrams = [...document.querySelectorAll('pre.mermaid svg')].map((svg) => {
    const box = svg.getBoundingClientRect();
    const natural = svg.viewBox.baseVal ? svg.viewBox.baseVal.width : box.width;
    return {boxRight: svg.closest('pre').getBoundingClientRect().right, scale: natural ? box.width / natural : 1};
  });
  const wide = [...document.querySelectorAll('.bd-article *')].filter((el) => {
    const box = el.getBoundingClientRect();
    if (box.right <= window.innerWidth + 1 || box.width === 0) return false;
    // inside a box that scrolls sideways is fine: that is the point
    for (let up = el.parentElement; up; up = up.parentElement) {
      const style = getComputedStyle(up);
      if ((style.overflowX === 'auto' || style.overflowX === 'scroll' || style.overflowX === 'hidden')
          && up.getBoundingClientRect().right <= window.innerWidth + 1) return false;
    }
    return true;
  }).slice(0, 3).map((el) => el.tagName.toLowerCase() + '.' + [...el.classList].join('.'));
  return {pageWidth: document.documentElement.scrollWidth, screen: window.innerWidth, wide, diagrams};
}"""


def screenshot(reader: Reader, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    reader.page.screenshot(path=str(path))
    return path


def screenshots_of_part(reader: Reader, name: str) -> None:
    """The page's top, and its first diagram where it has one."""
    screenshot(reader, name)
    diagram = reader.page.locator("pre.mermaid").first
    if diagram.count():
        diagram.scroll_into_view_if_needed()
        screenshot(reader, f"{name}-diagram")


def read_pages(site: str, pages: list[str], width: str) -> dict[str, dict]:
    """Read pages in one tab of a browser of this thread's own (Playwright's sync API is
    per thread): what failed to render, what went wrong while loading, the layout."""
    phone = width == "phone"
    options = dict(is_mobile=True, has_touch=True, device_scale_factor=2) if phone else {}
    found = {}
    with sync_playwright() as playwright:
        chromium = launch(playwright)
        reader = Reader(chromium, PHONE if phone else DESKTOP, **options)
        try:
            for page in pages:
                reader.open(site + page)
                found[page] = reader.page.evaluate(RENDERING_PROBLEMS)
                found[page].update(layout=reader.page.evaluate(LAYOUT),
                                   errors=list(reader.errors), blocked=list(reader.blocked))
                part = next((name for name, p in PART_PAGES.items() if p == page), None)
                if part and not phone:
                    screenshots_of_part(reader, f"{part}-desktop")
                if part == "part2" and phone:
                    screenshots_of_part(reader, "phone-part2")
        finally:
            reader.close()
            chromium.close()
    return found


@pytest.fixture(scope="module")
def readings(site) -> dict[str, dict[str, dict]]:
    """Every page read at a desktop's width and at a phone's, by width and page. Pages
    are shared out among browsers that read side by side (the CPU, not the network,
    bounds a page's rendering)."""
    require_chromium()
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)  # no picture left from an earlier run
    pages = book_pages()
    shares = [(width, pages[i::READERS_PER_WIDTH]) for width in ("desktop", "phone")
              for i in range(READERS_PER_WIDTH)]
    found: dict[str, dict[str, dict]] = {"desktop": {}, "phone": {}}
    with concurrent.futures.ThreadPoolExecutor(len(shares)) as pool:
        for (width, _), result in zip(shares, pool.map(lambda share: read_pages(site, share[1], share[0]), shares)):
            found[width].update(result)
    return found


def every_reading(readings):
    for width, pages in readings.items():
        for page, found in pages.items():
            yield f"{page} ({width})", page, found


def test_every_page_is_read(readings):
    for width, pages in readings.items():
        assert sorted(pages) == book_pages(), width
        assert len(pages) > 40, f"only {len(pages)} pages in {BOOK}"
    for name, page, found in every_reading(readings):
        assert found["mermaid"] == mermaid_blocks_in(page), name


def test_no_page_asks_another_host(readings):
    blocked = {name: found["blocked"] for name, _, found in every_reading(readings) if found["blocked"]}
    assert not blocked, f"pages asked other hosts for: {blocked}"


def test_no_page_logs_an_error(readings):
    errors = [f"{name}: {error}" for name, _, found in every_reading(readings) for error in found["errors"]]
    assert not errors, "\n".join(errors)


def test_diagrams_and_math_are_rendered(readings):
    problems = [f"{name}: {problem}" for name, _, found in every_reading(readings)
                for problem in found["problems"]]
    assert not problems, "\n".join(problems)
    # The book has diagrams and formulas: a check that saw none checked nothing.
    diagrams = sum(found["mermaid"] for found in readings["desktop"].values())
    formulas = sum(found["math"] for found in readings["desktop"].values())
    assert diagrams >= 20 and formulas >= 10, (diagrams, formulas)


def test_phone_width_fits_and_diagrams_stay_readable(readings):
    diagrams = sum(len(found["layout"]["diagrams"]) for found in readings["phone"].values())
    assert diagrams >= 20, f"only {diagrams} diagrams drawn at a phone's width"
    problems = []
    for page, found in readings["phone"].items():
        layout = found["layout"]
        if layout["pageWidth"] > layout["screen"] + 1:
            problems.append(f"{page}: {layout['pageWidth']} px wide on a {layout['screen']} px "
                            f"screen ({', '.join(layout['wide'])})")
        for diagram in layout["diagrams"]:
            if diagram["boxRight"] > layout["screen"] + 1:
                problems.append(f"{page}: a diagram's box reaches {diagram['boxRight']:.0f} px "
                                f"on a {layout['screen']} px screen")
            if diagram["scale"] < MIN_DIAGRAM_SCALE:
                problems.append(f"{page}: a diagram shrunk to {diagram['scale']:.2f} of its size")
    assert not problems, "\n".join(problems)


def test_search_finds_a_term(site, browser):
    reader = Reader(browser, DESKTOP)
    try:
        reader.open(site + "search.html?q=Kubernetes")
        results = reader.page.locator("#search-results ul.search li")
        results.first.wait_for(timeout=15000)
        assert results.count() >= 5
        assert "Kubernetes" in reader.page.locator("#search-results").inner_text()
        assert not reader.errors and not reader.blocked, (reader.errors, reader.blocked)
    finally:
        reader.close()


def test_phone_menu_opens_and_navigates(site, browser):
    reader = Reader(browser, PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    try:
        reader.page.goto(site)  # index.html, which sends the reader on to the first page
        reader.page.wait_for_url("**/book/intro.html")
        reader.page.evaluate(WAIT_FOR_RENDERING)
        sidebar = reader.page.locator(".bd-sidebar-primary")
        link = sidebar.get_by_role("link", name="Part II: The building blocks of MSA", exact=True)
        assert not link.is_visible(), "the menu shows before it is opened"
        reader.page.locator("button.primary-toggle:visible").first.click(timeout=5000)
        link.wait_for(state="visible", timeout=5000)
        # The drawer slides in: wait until it has arrived, whole, on the screen.
        reader.page.wait_for_function(
            "() => { const r = document.querySelector('.bd-sidebar-primary').getBoundingClientRect();"
            " return r.left >= 0 && r.right <= window.innerWidth; }", timeout=5000)
        screenshot(reader, "phone-menu-open")
        with reader.page.expect_navigation():
            link.click()
        reader.page.evaluate(WAIT_FOR_RENDERING)
        assert reader.page.url.endswith("book/part2/index.html"), reader.page.url
        assert "building blocks" in reader.page.locator("main h1").first.inner_text().lower()
        screenshot(reader, "phone-after-menu")
        assert not reader.errors and not reader.blocked, (reader.errors, reader.blocked)
    finally:
        reader.close()


def test_a_labs_chapter_link_opens_the_built_chapter_in_jupyterlab(browser, tmp_path):
    """Lab 1 in JupyterLab as `make up` starts it (root labs/, here a copy): its link to
    Chapter 1 opens a new tab with the built chapter, rendered as in the book
    (msalab.bookserver). The notebook is only opened: no cell runs."""
    notebooks = tmp_path / "labs"
    shutil.copytree(paths.REPO / "labs" / "part1", notebooks / "part1")
    with jupyterlab_as_make_up(tmp_path, notebooks) as url:
        reader = Reader(browser, DESKTOP)
        try:
            reader.page.goto(f"{url}/lab/tree/part1/01-monolith.ipynb?token={JUPYTER_TOKEN}")
            link = reader.page.locator(".jp-RenderedMarkdown").get_by_role("link", name="Chapter 1: The monolith")
            link.wait_for(timeout=60000)
            assert link.get_attribute("href") == "/book/part1/monolith.md"
            # Recorded for the whole context from before the click, so that the new tab's
            # first requests count too; JupyterLab's own tab is not what is tested here.
            errors: list[str] = []

            def in_new_tab(page) -> bool:
                return page is not None and page != reader.page

            reader.context.on("console", lambda msg: in_new_tab(msg.page) and msg.type == "error"
                              and errors.append(msg.text))
            reader.context.on("weberror", lambda error: in_new_tab(error.page)
                              and errors.append(f"script error: {error.error}"))
            reader.context.on("response", lambda r: "book/" in r.url and r.status >= 400
                              and errors.append(f"HTTP {r.status}: {r.url}"))
            with reader.context.expect_page() as opened:
                link.click()
            chapter = opened.value
            chapter.wait_for_load_state("load")
            chapter.evaluate(WAIT_FOR_RENDERING)
            assert chapter.url == f"{url}/course-book/book/part1/monolith.html"
            assert chapter.locator("main h1").first.inner_text().startswith("The monolith")
            found = chapter.evaluate(RENDERING_PROBLEMS)
            assert not found["problems"] and found["mermaid"] == mermaid_blocks_in("book/part1/monolith.html"), found
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            chapter.screenshot(path=str(SCREENSHOTS / "chapter-from-jupyterlab.png"))
            assert not errors, errors
            assert not reader.blocked, f"asked other hosts for: {reader.blocked}"
        finally:
            reader.close()
