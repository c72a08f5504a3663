"""Caption review through the review server's API (FastAPI TestClient): list, edit, accept,
revert, the catalog rows they leave, and the same security rules as the other state changes."""

from __future__ import annotations

import shutil

import pytest
from fastapi.testclient import TestClient

from animlora.catalog import now
from animlora.records.caption import get_caption
from animlora.review.app import create_app
from animlora.review.service import ReviewService
from animlora.workspace import Workspace
from identity_project import add_instances, make_project, run_identity
from identity_synth import CHARACTERS, dataset

CHARACTER = "luca"


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    root = tmp_path_factory.mktemp("tpl") / "p"
    ws = make_project(root)
    images, labels, _ = dataset(per_character=5, seed=0)
    ids = [f"{CHARACTERS[lab].name}_{n:03d}" for n, lab in enumerate(labels)]
    add_instances(ws, images, ids)
    run_identity(ws)
    # the caption stage's rows (it needs source frames this fixture does not have): an automatic
    # caption per instance, as the template backend writes it
    with ws.open_catalog() as catalog:
        catalog.upsert("captions", [{
            "instance_id": iid, "character": CHARACTER, "text": f"{CHARACTER}, 3d render, standing, shot {n}",
            "source": "template", "fields": {"framing": {"value": "full body", "confidence": 0.9}}, "edited": 0,
            "accepted": 0, "auto_text": None, "confidence": 0.9, "note": None, "updated_at": now(),
        } for n, iid in enumerate(sorted(ids))])
    return root, sorted(ids)


@pytest.fixture
def project(template, tmp_path):
    root, ids = template
    shutil.copytree(root, tmp_path / "p")
    return Workspace(tmp_path / "p"), ids


def _client(ws) -> tuple[TestClient, dict[str, str]]:
    app = create_app(ReviewService(ws), page_size=8)
    client = TestClient(app, base_url="http://127.0.0.1:8000")
    client.get("/", params={"token": app.state.token})  # the printed URL: sets the cookie
    html = client.get("/").text
    token = html.split('name="animlora-token" content="')[1].split('"')[0]
    return client, {"X-Animlora-Token": token}


def _row(ws, iid):
    with ws.open_catalog() as catalog:
        return get_caption(catalog, iid, CHARACTER)


def test_list_paginated(project):
    ws, ids = project
    client, _ = _client(ws)
    first = client.get("/api/captions", params={"character": CHARACTER}).json()
    assert first["total"] == len(ids) and len(first["items"]) == 8  # the server's page size
    rest = client.get("/api/captions", params={"character": CHARACTER, "offset": 8, "limit": 100}).json()
    assert [c["instance_id"] for c in first["items"] + rest["items"]] == ids
    item = first["items"][0]
    assert item["text"].startswith(f"{CHARACTER}, ") and not item["edited"] and not item["accepted"]
    assert "fields" not in item
    assert client.get("/api/captions", params={"character": "nobody"}).json()["total"] == 0


def test_edit_accept_revert(project):
    ws, ids = project
    client, headers = _client(ws)
    iid, other = ids[0], ids[1]
    auto = _row(ws, iid).text

    # edit: stored in the catalog, whitespace tidied, the automatic text kept
    r = client.post("/api/captions/edit", json={"instance_id": iid, "character": CHARACTER,
                                                "text": "  luca,  laughing on a vespa "}, headers=headers)
    assert r.status_code == 200 and r.json()["edited"] and r.json()["text"] == "luca, laughing on a vespa"
    row = _row(ws, iid)
    assert row.edited == 1 and row.accepted == 1 and row.text == "luca, laughing on a vespa"
    assert row.auto_text == auto

    # accept another one as it is
    r = client.post("/api/captions/accept", json={"instance_id": other, "character": CHARACTER}, headers=headers)
    assert r.status_code == 200 and r.json()["accepted"] and not r.json()["edited"]
    assert _row(ws, other).accepted == 1 and _row(ws, other).edited == 0

    # revert: back to the automatic text
    r = client.post("/api/captions/revert", json={"instance_id": iid, "character": CHARACTER}, headers=headers)
    assert r.status_code == 200 and r.json()["text"] == auto
    row = _row(ws, iid)
    assert row.text == auto and row.edited == 0 and row.accepted == 0

    # the list shows the states
    items = {c["instance_id"]: c for c in client.get("/api/captions", params={"character": CHARACTER,
                                                                             "limit": 100}).json()["items"]}
    assert items[other]["accepted"] and not items[iid]["edited"]


def test_bad_edits(project):
    ws, ids = project
    client, headers = _client(ws)
    iid = ids[0]
    before = _row(ws, iid)
    for text in ("", "   \n "):
        r = client.post("/api/captions/edit", json={"instance_id": iid, "character": CHARACTER, "text": text},
                        headers=headers)
        assert r.status_code == 422 and "empty" in r.json()["error"]
    r = client.post("/api/captions/edit", json={"instance_id": iid, "character": CHARACTER, "text": "x" * 5000},
                    headers=headers)
    assert r.status_code == 422
    assert client.post("/api/captions/edit", json={"instance_id": iid, "character": CHARACTER},
                       headers=headers).status_code == 422
    assert _row(ws, iid) == before
    # an unknown caption is a 404, and nothing is created for it
    for path in ("edit", "accept", "revert"):
        body = {"instance_id": "nope", "character": CHARACTER, "text": "a"}
        assert client.post(f"/api/captions/{path}", json=body, headers=headers).status_code == 404
    assert _row(ws, "nope") is None


def test_security(project):
    ws, ids = project
    client, headers = _client(ws)
    body = {"instance_id": ids[0], "character": CHARACTER, "text": "luca, hijacked"}
    for path in ("edit", "accept", "revert"):
        assert client.post(f"/api/captions/{path}", json=body).status_code == 403
        assert client.post(f"/api/captions/{path}", json=body, headers={"X-Animlora-Token": "wrong"}).status_code in (401, 403)
        evil = {**headers, "Origin": "http://evil.example"}
        assert client.post(f"/api/captions/{path}", json=body, headers=evil).status_code == 403
    assert client.get("/api/captions", headers={"Host": "evil.example"}).status_code == 403
    row = _row(ws, ids[0])
    assert row.edited == 0 and row.accepted == 0 and "hijacked" not in row.text

    # another host: the list needs the token too
    strong = "k3Rz9-vQw2_pL7xN"
    remote = TestClient(create_app(ReviewService(ws), host="0.0.0.0", token=strong),
                        base_url="http://192.168.1.5:8000")
    assert remote.get("/api/captions").status_code == 401
    assert remote.get("/api/captions", headers={"X-Animlora-Token": strong}).status_code == 200
