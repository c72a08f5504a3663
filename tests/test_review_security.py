"""The review server against a hostile neighbour: the token on loopback too, the file-type
allow-list and CSP, the body limit, weak tokens, the state version, a run holding the
project, and export --force beside the user's files."""

from __future__ import annotations

import hashlib
import shutil
import threading

import pytest
from fastapi.testclient import TestClient

from animlora.review.app import MAX_BODY, create_app
from animlora.review.service import ReviewError, ReviewService
from animlora.workspace import Workspace
from identity_project import add_instances, make_project, run_identity
from identity_synth import CHARACTERS, dataset


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    root = tmp_path_factory.mktemp("tpl") / "p"
    ws = make_project(root)
    images, labels, _ = dataset(per_character=6, seed=0)
    add_instances(ws, images, [f"{CHARACTERS[lab].name}_{n:03d}" for n, lab in enumerate(labels)])
    run_identity(ws, sets={"cluster": {"min_cluster_size": 3}})
    return root


@pytest.fixture
def project(template, tmp_path):
    root = tmp_path / "p"
    shutil.copytree(template, root)
    return Workspace(root)


def _local(ws):
    app = create_app(ReviewService(ws))
    return app, TestClient(app, base_url="http://127.0.0.1:8000")


def test_token_required_on_loopback_and_kept_in_a_cookie(project):
    app, client = _local(project)
    token = app.state.token
    for path in ("/", "/api/state", "/files/project.yaml", "/files/catalog.sqlite", "/api/captions"):
        refused = client.get(path)
        assert refused.status_code == 401, path
        assert token not in refused.text
    assert client.get("/", params={"token": "wrong"}).status_code == 401
    page = client.get("/", params={"token": token})
    assert page.status_code == 200 and "set-cookie" in page.headers
    cookie = page.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert client.get("/api/state").status_code == 200  # the cookie now
    other = TestClient(app, base_url="http://127.0.0.1:8000")
    assert other.get("/api/state", headers={"X-Animlora-Token": token}).status_code == 200


def test_only_passive_files_with_nosniff_and_csp(project):
    app, client = _local(project)
    client.get("/", params={"token": app.state.token})
    chars = project.root / "characters"
    (chars / "evil.html").write_text("<script>fetch('/api/rename')</script>")
    (chars / "evil.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>")
    (chars / "evil.png.html").write_text("<script></script>")
    (chars / "pic.png").write_bytes(b"\x89PNG\r\n\x1a\n not checked")
    for name in ("evil.html", "evil.svg", "evil.png.html", "../project.yaml"):
        assert client.get(f"/files/characters/{name}").status_code == 404, name
    ok = client.get("/files/characters/pic.png")
    assert ok.status_code == 200 and ok.headers["content-type"] == "image/png"
    responses = [ok, client.get("/"), client.get("/api/state"), client.get("/files/nope.png"),
                 TestClient(app, base_url="http://127.0.0.1:8000").get("/api/state")]
    for response in responses:
        assert response.headers["x-content-type-options"] == "nosniff"
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    page_csp = responses[1].headers["content-security-policy"]
    nonce = page_csp.split("'nonce-")[1].split("'")[0]
    assert f'<script nonce="{nonce}">' in responses[1].text and "unsafe-eval" not in page_csp
    assert "sandbox" in responses[2].headers["content-security-policy"]


def test_body_limit(project):
    app, client = _local(project)
    headers = {"X-Animlora-Token": app.state.token, "Content-Type": "application/json"}
    big = b'{"instances": ["' + b"x" * (MAX_BODY + 10) + b'"], "to": "noise"}'
    assert client.post("/api/move", content=big, headers=headers).status_code == 413

    def chunks():
        yield b'{"instances": []'
        yield b', "to": "noise"}'

    assert client.post("/api/move", content=chunks(), headers=headers).status_code == 411


def test_weak_tokens_refused_on_other_hosts_and_token_escaped(project):
    service = ReviewService(project)
    for weak in ("s3cret", "aaaaaaaaaaaaaaaaaaaa", "1234567890"):
        with pytest.raises(ReviewError):
            create_app(service, host="0.0.0.0", token=weak)
    odd = '"><script>alert(1)</script>Zq9'
    app = create_app(service, host="0.0.0.0", token=odd)
    client = TestClient(app, base_url="http://192.168.1.5:8000")
    page = client.get("/", headers={"X-Animlora-Token": odd})
    assert page.status_code == 200
    assert "<script>alert(1)</script>" not in page.text and "&lt;script&gt;alert(1)" in page.text


def test_decision_on_a_stale_page_is_refused(project):
    app, client = _local(project)
    headers = {"X-Animlora-Token": app.state.token}
    state = client.get("/api/state", headers=headers).json()
    cid = state["clusters"][0]["id"]
    fresh = {**headers, "X-Animlora-State": state["version"]}
    renamed = client.post("/api/rename", json={"cluster": cid, "name": "luca"}, headers=fresh)
    assert renamed.status_code == 200
    # the same page, one decision behind (another tab decided): refused, nothing changed
    again = client.post("/api/rename", json={"cluster": cid, "name": "alberto"}, headers=fresh)
    assert again.status_code == 409 and again.json()["reload"]
    # upstream stages re-run while the page is open: refused, and the server reloads
    version = renamed.json()["version"]
    run_identity(project, sets={"cluster": {"min_cluster_size": 4}}, stages=("cluster",))
    late = client.post("/api/rename", json={"cluster": cid, "name": "alberto"},
                       headers={**headers, "X-Animlora-State": version})
    assert late.status_code == 409
    with project.open_catalog() as catalog:
        names = {r[0] for r in catalog.rows("SELECT DISTINCT character FROM character_members")}
    assert "alberto" not in names
    assert client.get("/api/state", headers=headers).json()["version"] != version


def test_decision_never_interleaves_with_a_run(project):
    app, client = _local(project)
    headers = {"X-Animlora-Token": app.state.token}
    cid = client.get("/api/state", headers=headers).json()["clusters"][0]["id"]
    held, release = threading.Event(), threading.Event()

    def run():
        with project.lock():
            held.set()
            release.wait(10)

    thread = threading.Thread(target=run)
    thread.start()
    held.wait(10)
    try:
        busy = client.post("/api/rename", json={"cluster": cid, "name": "luca"}, headers=headers)
        assert busy.status_code == 423 and "run" in busy.json()["error"]
    finally:
        release.set()
        thread.join()
    assert client.post("/api/rename", json={"cluster": cid, "name": "luca"}, headers=headers).status_code == 200


def test_export_force_beside_the_users_files(project, tmp_path):
    service = ReviewService(project)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("user data")
    first = service.state.live_groups()[0]
    (mine / first.name).mkdir()
    (mine / first.name / "notes.md").write_text("mine too")
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in mine.rglob("*") if p.is_file()}
    with pytest.raises(Exception, match="not empty"):
        service.export(mine)
    result = service.export(mine, force=True)
    assert sum(result["characters"].values()) + result["noise"] > 0
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in before} == before
    # again: the earlier export is replaced file by file, the user's files stay
    service.export(mine, force=True)
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in before} == before
    assert not (mine / ".tmp-export").exists()


def test_a_tampered_export_report_deletes_nothing_outside(project, tmp_path):
    import json

    service = ReviewService(project)
    out = tmp_path / "export"
    service.export(out)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    report = json.loads((out / "export_report.json").read_text())
    report["files"] += ["../victim.txt", str(victim), "noise/../../victim.txt"]
    (out / "export_report.json").write_text(json.dumps(report))
    service.export(out)
    assert victim.read_text() == "keep me"
