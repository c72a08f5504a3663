"""The review server: JSON API + one static page.

Security, for a server that can rewrite a project's character membership:
- every request needs the server's token, on 127.0.0.1 too (another local user could
  otherwise read the project): the URL that ``animlora review`` prints carries it once
  (``?token=``), then an HttpOnly, SameSite=Strict cookie keeps it, or the
  ``X-Animlora-Token`` header gives it; a token given with ``--token`` for a non-local host
  must be 16 characters or more;
- on 127.0.0.1 the Host header must name localhost (a DNS-rebinding page cannot talk to it);
- a request that changes state must carry the token in ``X-Animlora-Token`` (a header a
  cross-site form or image cannot send) and, when it has an Origin, a same-host Origin;
- a request body is at most :data:`MAX_BODY` bytes and must say its length;
- files are served only from inside the workspace, by id (thumbnails, cut-outs) or by a path
  that must resolve inside it, and only as the passive types of :data:`FILE_TYPES`; every
  response has ``nosniff`` and a Content-Security-Policy (the page's: its own script by
  nonce; everything else: nothing runs at all);
- a decision carries the state version the page was showing (``X-Animlora-State``); when the
  project changed since (upstream stages re-ran, another tab decided), it is refused with
  409 and the page reloads.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import secrets
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import Request
from pydantic import BaseModel

from animlora.review.service import (
    ALIKE,
    SUGGEST,
    ReviewBusyError,
    ReviewError,
    ReviewService,
    StaleStateError,
)

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
TOKEN_HEADER = "x-animlora-token"
STATE_HEADER = "x-animlora-state"
MAX_BODY = 4 * 1024 * 1024  # a move of 100k images is ~3 MB of ids; anything larger is not the page
MIN_TOKEN = 16
# what /files/ serves: passive types only (an .html or .svg in the project would run as the page)
FILE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
              ".json": "application/json", ".txt": "text/plain; charset=utf-8"}
IMAGE_TYPES = {k: v for k, v in FILE_TYPES.items() if v.startswith("image/")}
PAGE_CSP = ("default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; img-src 'self' data: blob:; "
            "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
OTHER_CSP = "default-src 'none'; sandbox; frame-ancestors 'none'"


def token_problem(token: str) -> str | None:
    """Why a user's ``--token`` is too weak for a server other machines can reach, or None."""
    if len(token) < MIN_TOKEN or len(set(token)) < 6:
        return (f"--token is too weak for a non-local host: use {MIN_TOKEN} characters or more "
                "(or leave it out and one is generated)")
    return None


def cookie_name(token: str) -> str:
    # one per server: cookies ignore the port, and two servers on one host must not mix
    return "animlora_" + hashlib.sha256(token.encode()).hexdigest()[:10]


class RenameBody(BaseModel):
    cluster: str
    name: str


class MergeBody(BaseModel):
    clusters: list[str]
    name: str | None = None


class SplitBody(BaseModel):
    cluster: str
    k: int = 2


class MoveBody(BaseModel):
    instances: list[str]
    to: str  # a cluster id, "noise" or "new"
    name: str | None = None  # the new cluster's name


class ClusterBody(BaseModel):
    cluster: str


class CaptionBody(BaseModel):
    instance_id: str
    character: str


class CaptionEditBody(CaptionBody):
    text: str


# a caption is one prompt line; anything far longer is a paste gone wrong, not a caption
MAX_CAPTION_CHARS = 2000


def is_local(host: str) -> bool:
    return host in LOCAL_HOSTS


def create_app(service: ReviewService, *, host: str = "127.0.0.1", token: str = "", page_size: int = 120,
               thumb_size: int = 160) -> Any:
    """The FastAPI app. ``token`` is required for a non-local ``host`` (see module doc)."""
    from fastapi import FastAPI
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

    remote = not is_local(host)
    if remote and not token:
        raise ValueError("a review server on a non-local host needs a token")
    if remote and token_problem(token):
        raise ReviewError(token_problem(token))
    # the token: the user's when given, else a fresh one per server start
    page_token = token or secrets.token_urlsafe(24)
    cookie = cookie_name(page_token)
    app = FastAPI(title="animlora review", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.token = page_token
    page = resources.files("animlora.review").joinpath("static", "index.html").read_text(encoding="utf-8")

    def _token_of(request: Request) -> str:
        return request.headers.get(TOKEN_HEADER) or request.cookies.get(cookie) or request.query_params.get("token", "")

    def _refuse(message: str, status: int) -> Response:
        response = JSONResponse({"error": message}, status_code=status)
        _harden(response, None)
        return response

    def _harden(response: Response, nonce: str | None) -> None:
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Content-Security-Policy"] = PAGE_CSP.format(nonce=nonce) if nonce else OTHER_CSP

    @app.middleware("http")
    async def guard(request: Request, call_next):
        hostname = (request.headers.get("host") or "").rsplit(":", 1)[0].strip("[]")
        if not remote and hostname not in LOCAL_HOSTS:
            return _refuse("unexpected Host header", 403)
        if not hmac.compare_digest(_token_of(request).encode(), page_token.encode()):
            return _refuse("a token is required: open the URL printed by `animlora review`", 401)
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            length = request.headers.get("content-length")
            if length is None and request.headers.get("transfer-encoding"):
                return _refuse("a request body must say its length (Content-Length)", 411)
            if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
                return _refuse(f"request body larger than {MAX_BODY} bytes", 413)
            origin = request.headers.get("origin")
            if origin and urlsplit(origin).netloc != request.headers.get("host"):
                return _refuse("cross-origin request refused", 403)
            if not hmac.compare_digest(request.headers.get(TOKEN_HEADER, "").encode(), page_token.encode()):
                return _refuse("missing or wrong X-Animlora-Token", 403)
        request.state.nonce = None
        response = await call_next(request)
        if request.query_params.get("token"):
            response.set_cookie(cookie, page_token, httponly=True, samesite="strict", secure=False)
        _harden(response, getattr(request.state, "nonce", None))
        return response

    @app.exception_handler(ReviewError)
    async def review_error(request: Request, exc: ReviewError):
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.exception_handler(StaleStateError)
    async def stale_error(request: Request, exc: StaleStateError):
        return JSONResponse({"error": str(exc), "reload": True}, status_code=409)

    @app.exception_handler(ReviewBusyError)
    async def busy_error(request: Request, exc: ReviewBusyError):
        return JSONResponse({"error": str(exc)}, status_code=423)

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request) -> HTMLResponse:
        nonce = secrets.token_urlsafe(16)
        request.state.nonce = nonce
        text = (page.replace("{{TOKEN}}", html.escape(page_token, quote=True))
                .replace("{{PAGE_SIZE}}", str(int(page_size))).replace("{{NONCE}}", nonce))
        return HTMLResponse(text, headers={"Cache-Control": "no-store"})

    def _version(request: Request) -> str | None:
        return request.headers.get(STATE_HEADER)  # None: a client that is not the page (scripts, tests)

    @app.get("/api/state")
    def state() -> dict:
        return service.summary()

    @app.get("/api/clusters/{gid}/members")
    def members(gid: str, offset: int = 0, limit: int = page_size) -> dict:
        return service.members(gid, max(0, offset), max(1, min(limit, 1000)))

    @app.get("/api/clusters/{gid}/suggestions")
    def suggestions(gid: str, limit: int = SUGGEST) -> dict:
        return service.suggestions(gid, max(1, min(limit, 1000)))

    @app.get("/api/alike")
    def alike(limit: int = ALIKE) -> dict:
        return service.alike(max(1, min(limit, 100)))

    @app.get("/api/thumb/{instance_id}")
    def thumb(instance_id: str, size: int = thumb_size) -> Response:
        path = service.thumbnail(instance_id, max(32, min(size, 512)))
        if path is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/api/image/{instance_id}")
    def image(instance_id: str) -> Response:
        path = service.instance_path(instance_id)
        if path is None or path.suffix.lower() not in IMAGE_TYPES:
            return JSONResponse({"error": "not found"}, status_code=404)
        return FileResponse(path, media_type=IMAGE_TYPES[path.suffix.lower()])

    @app.get("/files/{rel:path}")
    def files(rel: str) -> Response:
        path = service.workspace_file(rel)
        if path is None or path.suffix.lower() not in FILE_TYPES:
            return JSONResponse({"error": "not found"}, status_code=404)
        return FileResponse(path, media_type=FILE_TYPES[path.suffix.lower()])

    @app.post("/api/rename")
    def rename(body: RenameBody, request: Request) -> dict:
        return service.rename(body.cluster, body.name, version=_version(request))

    @app.post("/api/merge")
    def merge(body: MergeBody, request: Request) -> dict:
        return service.merge(body.clusters, body.name, version=_version(request))

    @app.post("/api/split")
    def split(body: SplitBody, request: Request) -> dict:
        return service.split(body.cluster, body.k, version=_version(request))

    @app.post("/api/move")
    def move(body: MoveBody, request: Request) -> dict:
        return service.move(body.instances, body.to, body.name, version=_version(request))

    @app.post("/api/not-character")
    def not_character(body: ClusterBody, request: Request) -> dict:
        return service.not_character(body.cluster, version=_version(request))

    @app.post("/api/undo")
    def undo(request: Request) -> dict:
        return service.undo(version=_version(request))

    @app.post("/api/redo")
    def redo(request: Request) -> dict:
        return service.redo(version=_version(request))

    @app.get("/api/captions")
    def captions(character: str | None = None, offset: int = 0, limit: int = page_size) -> dict:
        return service.captions(character, max(0, offset), max(1, min(limit, 1000)))

    def _caption_or_404(row: dict | None) -> Any:
        if row is None:
            return JSONResponse({"error": "no such caption"}, status_code=404)
        return row

    @app.post("/api/captions/edit")
    def caption_edit(body: CaptionEditBody) -> Any:
        # checked here rather than left to store_edit so the page gets a 422 that says what is wrong
        if not body.text.strip():
            return JSONResponse({"error": "the caption text is empty; write a caption or revert to the automatic one"},
                                status_code=422)
        if len(body.text) > MAX_CAPTION_CHARS:
            return JSONResponse({"error": f"the caption text is longer than {MAX_CAPTION_CHARS} characters"},
                                status_code=422)
        return _caption_or_404(service.edit_caption(body.instance_id, body.character, body.text))

    @app.post("/api/captions/accept")
    def caption_accept(body: CaptionBody) -> Any:
        return _caption_or_404(service.accept_caption(body.instance_id, body.character))

    @app.post("/api/captions/revert")
    def caption_revert(body: CaptionBody) -> Any:
        return _caption_or_404(service.revert_caption(body.instance_id, body.character))

    @app.post("/api/export")
    def export(request: Request) -> dict:
        return service.export(service.workspace.root / "clustered_refined", version=_version(request))

    return app


def free_port(host: str) -> int:
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def serve(service: ReviewService, host: str, port: int, token: str, page_size: int, thumb_size: int,
          open_browser: bool, announce) -> None:
    """Run the server until interrupted (announce(url) is called once it listens)."""
    import threading
    import webbrowser

    import uvicorn

    if not is_local(host) and token and token_problem(token):
        raise ReviewError(token_problem(token))
    app = create_app(service, host=host, token=token or secrets.token_urlsafe(24), page_size=page_size,
                     thumb_size=thumb_size)
    port = port or free_port(host)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url = f"http://{'[' + shown + ']' if ':' in shown else shown}:{port}/?token={quote(app.state.token, safe='')}"
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))

    def started() -> None:
        while not server.started:
            threading.Event().wait(0.05)
        announce(url)
        if open_browser:
            webbrowser.open(url)

    threading.Thread(target=started, daemon=True).start()
    server.run()


def static_dir() -> Path:
    return Path(str(resources.files("animlora.review").joinpath("static")))
