"""The browser page: GET /ui serves service/ui/index.html, GET /ui/{name} its script and style sheet, and GET /
redirects to /ui. Three static files shipped in the package (no build step, nothing fetched from outside);
the page talks to the public API only (/models, /models/{name}, /classify, /qa, /openapi.json).

Every response carries a strict Content-Security-Policy: the page has no inline script or style, so
'self' is all it needs. The files are read once at import, so a request never touches the disk and a
name outside the fixed list is a 404 (no path from the URL ever reaches the filesystem).
"""
from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from .errors import ApiError

UI_DIR = Path(__file__).resolve().parent.parent / "ui"
TYPES = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
         "style.css": "text/css; charset=utf-8"}
FILES = {name: (UI_DIR / name).read_bytes() for name in TYPES}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "Cache-Control": "no-cache"}

router = APIRouter(include_in_schema=False)


def _file(name: str, method: str) -> Response:
    body = FILES[name]
    return Response(b"" if method == "HEAD" else body, media_type=TYPES[name],
                    headers={**HEADERS, "Content-Length": str(len(body))})


@router.api_route("/", methods=["GET", "HEAD"])
async def root(request: Request):
    return RedirectResponse(f"{request.scope.get('root_path', '')}/ui", status_code=307)


@router.api_route("/ui", methods=["GET", "HEAD"])
async def page(request: Request):
    return _file("index.html", request.method)


@router.api_route("/ui/{name}", methods=["GET", "HEAD"])
async def asset(request: Request, name: str):
    if name not in FILES or name == "index.html":
        raise ApiError(404, "not_found", f"no such file: /ui/{name}")
    return _file(name, request.method)
