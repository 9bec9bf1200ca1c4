"""The JupyterLab that `make up` starts also serves the built book (msalab.bookserver), so
that a lab's link to its chapter, `/book/part1/monolith.md`, opens there: JupyterLab started
from the Makefile's own command line, with a small built book of the test's own."""

from __future__ import annotations

import http.client
import shutil
from urllib.parse import urlsplit

import pytest

from conftest import JUPYTER_TOKEN, jupyterlab_as_make_up
from msalab import paths

AUTH = {"Authorization": f"token {JUPYTER_TOKEN}"}
CHAPTER = "<html><body><h1>The monolith</h1></body></html>"
OUTSIDE = "a file beside the book, never to be served"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    home = tmp_path_factory.mktemp("bookserver")
    book = home / "html"
    (book / "book" / "part1").mkdir(parents=True)
    (book / "book" / "part1" / "monolith.html").write_text(CHAPTER)
    (book / "book" / "intro.html").write_text("<h1>intro</h1>")
    (book / "_static").mkdir()
    (book / "_static" / "book.css").write_text("body {}")
    (home / "secret.txt").write_text(OUTSIDE)
    notebooks = home / "labs"
    shutil.copytree(paths.REPO / "labs" / "part1", notebooks / "part1")
    with jupyterlab_as_make_up(home, notebooks, env={"MSALAB_BOOK_HTML": str(book)}) as url:
        yield url


def get(url: str, path: str, headers=AUTH) -> http.client.HTTPResponse:
    """One request, the path sent exactly as given (no client tidies a ../ away)."""
    connection = http.client.HTTPConnection(urlsplit(url).netloc, timeout=10)
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    response.text = response.read().decode()
    connection.close()
    return response


def test_a_labs_chapter_link_leads_to_the_built_chapter(lab):
    link = get(lab, "/book/part1/monolith.md")
    assert link.status == 302, (link.status, link.text)
    assert link.getheader("Location") == "/course-book/book/part1/monolith.html"
    page = get(lab, link.getheader("Location"))
    assert page.status == 200 and page.text == CHAPTER
    assert page.getheader("Content-Type").startswith("text/html")


def test_the_pages_own_files_are_served_beside_it(lab):
    css = get(lab, "/course-book/_static/book.css")
    assert css.status == 200 and css.text == "body {}"
    assert css.getheader("Content-Type").startswith("text/css")


def test_book_alone_is_the_books_start(lab):
    start = get(lab, "/book/")
    assert start.status == 302 and start.getheader("Location") == "/course-book/book/intro.html"


def test_the_book_is_for_whoever_is_logged_in_to_jupyterlab(lab):
    for path in ("/book/part1/monolith.md", "/course-book/book/part1/monolith.html"):
        anonymous = get(lab, path, headers={})
        assert anonymous.status == 302 and anonymous.getheader("Location").startswith("/login"), path
        assert CHAPTER not in anonymous.text


def test_a_page_the_build_lacks_says_how_to_build_the_book(lab):
    missing = get(lab, "/book/part9/nothing.md")
    assert missing.status == 302
    page = get(lab, missing.getheader("Location"))
    assert page.status == 404 and "make book" in page.text, page.text


@pytest.mark.parametrize("path", ["/course-book/../secret.txt", "/course-book/%2e%2e/secret.txt",
                                  "/course-book/..%2fsecret.txt"])
def test_the_book_and_nothing_beside_it_is_served(lab, path):
    assert get(lab, "/course-book/_static/book.css").status == 200  # the book itself is there
    response = get(lab, path)
    assert response.status in (403, 404), (path, response.status)
    assert OUTSIDE not in response.text
