"""Routes that serve the dashboard: `/` is its page, `/ui/NAME` its scripts and styles.

The files are plain HTML, CSS and JavaScript modules shipped in `o11n/ui/static/`;
nothing is built or fetched at run time. Each answer carries a Content-Security-Policy
that allows only this origin, so a token in the page's session storage cannot be sent
elsewhere by injected markup.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

from fastapi import APIRouter, Response

from o11n.errors import NotFound

router = APIRouter(include_in_schema=False)

MEDIA_TYPES = {
    "html": "text/html; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "svg": "image/svg+xml",
}
FILE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,63}\.(html|js|css|svg)$")
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@cache
def static_file(name: str) -> bytes:
    """A file of the dashboard, read once from the package."""
    if not FILE_NAME.match(name):
        raise NotFound(f"no dashboard file {name!r}")
    path = resources.files("o11n.ui") / "static" / name
    if not path.is_file():
        raise NotFound(f"no dashboard file {name!r}")
    return path.read_bytes()


def _answer(name: str) -> Response:
    body = static_file(name)
    media_type = MEDIA_TYPES[name.rsplit(".", 1)[1]]
    return Response(body, media_type=media_type, headers=HEADERS)


@router.get("/")
async def index() -> Response:
    """The dashboard's page (a single page; its views are hash routes)."""
    return _answer("index.html")


@router.get("/ui/{name}")
async def asset(name: str) -> Response:
    """One of the dashboard's scripts, styles or images."""
    return _answer(name)
