"""The built book, served by the JupyterLab that `make up` starts, so that a lab's link to
its chapter opens in JupyterLab as well as in the book.

A lab links its chapter by the chapter's path from the repository root,
`[Chapter 1](/book/part1/monolith.md)`. The book build resolves such a link into the
chapter's page wherever the book is published. JupyterLab cannot open files outside its
root (labs/), but it treats a link that starts with `/` as an ordinary link to its own
server: this extension answers `/book/part1/monolith.md` with a redirect to the built page,
`/course-book/book/part1/monolith.html` (the whole of `_build/html` is under `/course-book/`,
so the page's styles, scripts and links work as in the book). `/book/` is the book's start.

Started by `make up` (`--ServerApp.jpserver_extensions`); MSALAB_BOOK_HTML serves another
built book (the tests use it).
"""

from __future__ import annotations

import os
from pathlib import Path

from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.utils import url_path_join
from tornado import web

from msalab import paths

MOUNT = "course-book"


def book_html() -> Path:
    return Path(os.environ.get("MSALAB_BOOK_HTML", paths.REPO / "_build" / "html"))


class ChapterLink(JupyterHandler):
    """/book/<page>.md, the form a lab's link has, to that page of the built book."""

    @web.authenticated
    def get(self, page: str = "intro") -> None:
        self.redirect(url_path_join(self.base_url, MOUNT, "book", page + ".html"))


class BookFiles(JupyterHandler, web.StaticFileHandler):
    """The built book's files. Not sandboxed like JupyterLab's /files/: the book's own
    scripts (Mermaid, MathJax, the theme) must run, and they come from this repository."""

    @web.authenticated
    def head(self, path: str):
        return web.StaticFileHandler.head(self, path)

    @web.authenticated
    def get(self, path: str, include_body: bool = True):
        return web.StaticFileHandler.get(self, path, include_body)

    def write_error(self, status_code: int, **kwargs) -> None:
        if status_code != 404:
            return super().write_error(status_code, **kwargs)
        self.set_header("Content-Type", "text/plain; charset=UTF-8")
        self.finish(f"This page is not in the built book ({book_html()}).\n"
                    "If the book is not built yet: run `make book` in the course repository, "
                    "then reload this page.\n")


def _jupyter_server_extension_points():
    return [{"module": "msalab.bookserver"}]


def _load_jupyter_server_extension(serverapp) -> None:
    base = serverapp.web_app.settings["base_url"]
    serverapp.web_app.add_handlers(".*$", [
        (url_path_join(base, r"/book/?"), ChapterLink),
        (url_path_join(base, r"/book/(.+)\.md"), ChapterLink),
        (url_path_join(base, MOUNT, "(.*)"), BookFiles,
         {"path": str(book_html()), "default_filename": "index.html"}),
    ])
    serverapp.log.info("msalab.bookserver: the built book (%s) at %s", book_html(),
                       url_path_join(base, "book/"))
