"""The review server: JSON API + one static page.

Security, for a server that can rewrite a project's character membership:
- it binds 127.0.0.1 by default; binding any other host requires a token, given with
  ``?token=`` once (then kept in an HttpOnly, SameSite=Strict cookie) or the
  ``X-Animlora-Token`` header, on every request;
- on 127.0.0.1 the Host header must name localhost (a DNS-rebinding page cannot talk to it);
- a request that changes state must carry the page's token in ``X-Animlora-Token`` (a header
  a cross-site form or image cannot send) and, when it has an Origin, a same-host Origin;
- files are served only from inside the workspace, by id (thumbnails) or by a path that must
  resolve inside it: anything else, ``..`` included, is a 404.
"""

from __future__ import annotations

import hmac
import secrets
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel

from animlora.review.service import ReviewError, ReviewService

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
TOKEN_HEADER = "x-animlora-token"
COOKIE = "animlora_token"


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
    from fastapi import FastAPI, Request
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

    remote = not is_local(host)
    if remote and not token:
        raise ValueError("a review server on a non-local host needs a token")
    # the page's token: the user's token when remote, else a fresh one per server start
    page_token = token or secrets.token_urlsafe(24)
    app = FastAPI(title="animlora review", docs_url=None, redoc_url=None, openapi_url=None)
    page = resources.files("animlora.review").joinpath("static", "index.html").read_text(encoding="utf-8")

    def _token_of(request: Request) -> str:
        return request.headers.get(TOKEN_HEADER) or request.cookies.get(COOKIE) or request.query_params.get("token", "")

    @app.middleware("http")
    async def guard(request: Request, call_next):
        hostname = (request.headers.get("host") or "").rsplit(":", 1)[0].strip("[]")
        if not remote and hostname not in LOCAL_HOSTS:
            return JSONResponse({"error": "unexpected Host header"}, status_code=403)
        if remote and not hmac.compare_digest(_token_of(request), token):
            return JSONResponse({"error": "a token is required: open the URL printed by `animlora review`"},
                                status_code=401)
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            origin = request.headers.get("origin")
            if origin and urlsplit(origin).netloc != request.headers.get("host"):
                return JSONResponse({"error": "cross-origin request refused"}, status_code=403)
            if not hmac.compare_digest(request.headers.get(TOKEN_HEADER, ""), page_token):
                return JSONResponse({"error": "missing or wrong X-Animlora-Token"}, status_code=403)
        response = await call_next(request)
        if remote and request.query_params.get("token"):
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        return response

    @app.exception_handler(ReviewError)
    async def review_error(request: Request, exc: ReviewError):
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        html = page.replace("{{TOKEN}}", page_token).replace("{{PAGE_SIZE}}", str(page_size))
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    @app.get("/api/state")
    def state() -> dict:
        return service.summary()

    @app.get("/api/clusters/{gid}/members")
    def members(gid: str, offset: int = 0, limit: int = page_size) -> dict:
        return service.members(gid, max(0, offset), max(1, min(limit, 1000)))

    @app.get("/api/thumb/{instance_id}")
    def thumb(instance_id: str, size: int = thumb_size) -> Response:
        path = service.thumbnail(instance_id, max(32, min(size, 512)))
        if path is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/api/image/{instance_id}")
    def image(instance_id: str) -> Response:
        path = service.instance_path(instance_id)
        if path is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        return FileResponse(path)

    @app.get("/files/{rel:path}")
    def files(rel: str) -> Response:
        path = service.workspace_file(rel)
        if path is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        return FileResponse(path)

    @app.post("/api/rename")
    def rename(body: RenameBody) -> dict:
        return service.rename(body.cluster, body.name)

    @app.post("/api/merge")
    def merge(body: MergeBody) -> dict:
        return service.merge(body.clusters, body.name)

    @app.post("/api/split")
    def split(body: SplitBody) -> dict:
        return service.split(body.cluster, body.k)

    @app.post("/api/move")
    def move(body: MoveBody) -> dict:
        return service.move(body.instances, body.to, body.name)

    @app.post("/api/not-character")
    def not_character(body: ClusterBody) -> dict:
        return service.not_character(body.cluster)

    @app.post("/api/undo")
    def undo() -> dict:
        return service.undo()

    @app.post("/api/redo")
    def redo() -> dict:
        return service.redo()

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
    def export() -> dict:
        return service.export(service.workspace.root / "clustered_refined")

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

    if not is_local(host) and not token:
        token = secrets.token_urlsafe(24)
    app = create_app(service, host=host, token=token if not is_local(host) else "", page_size=page_size,
                     thumb_size=thumb_size)
    port = port or free_port(host)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url = f"http://{'[' + shown + ']' if ':' in shown else shown}:{port}/"
    if not is_local(host):
        url += f"?token={token}"
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
