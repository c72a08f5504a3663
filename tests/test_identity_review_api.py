"""The review server's API through FastAPI's TestClient: every operation, undo/redo, the
catalog it keeps current, export, and the security rules."""

from __future__ import annotations

import shutil

import pytest
from fastapi.testclient import TestClient

from animlora.review.app import create_app
from animlora.review.service import ReviewService
from animlora.workspace import Workspace
from identity_project import add_instances, make_project, run_identity
from identity_synth import CHARACTERS, dataset


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    root = tmp_path_factory.mktemp("tpl") / "p"
    ws = make_project(root)
    images, labels, _ = dataset(per_character=15, seed=0)
    add_instances(ws, images, [f"{CHARACTERS[lab].name}_{n:03d}" for n, lab in enumerate(labels)])
    run_identity(ws)
    return root


@pytest.fixture
def project(template, tmp_path):
    root = tmp_path / "p"
    shutil.copytree(template, root)
    return Workspace(root)


def _client(ws, **kw):
    app = create_app(ReviewService(ws), **kw)
    client = TestClient(app, base_url="http://127.0.0.1:8000")
    assert client.get("/", params={"token": app.state.token}).status_code == 200  # the printed URL: sets the cookie
    return client


def _token(client) -> str:
    html = client.get("/").text
    return html.split('name="animlora-token" content="')[1].split('"')[0]


def _members(ws):
    with ws.open_catalog() as catalog:
        return dict(catalog.rows("SELECT instance_id, character FROM character_members"))


def _by_name(state, name):
    return next(c for c in state["clusters"] if c["name"] == name)


def test_operations_undo_redo_and_catalog(project):
    client = _client(project)
    headers = {"X-Animlora-Token": _token(client)}
    state = client.get("/api/state").json()
    assert [c["size"] for c in state["clusters"]] == [15, 15, 15, 15, 0]
    assert state["clusters"][-1]["id"] == "noise" and not state["can_undo"]

    # pages of members
    first = state["clusters"][0]
    page = client.get(f"/api/clusters/{first['id']}/members", params={"offset": 10, "limit": 10}).json()
    assert page["total"] == 15 and len(page["items"]) == 5
    thumb = client.get(f"/api/thumb/{page['items'][0]}")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"

    # rename
    red = next(c for c in state["clusters"] if c["medoid"].startswith("round_red"))
    state = client.post("/api/rename", json={"cluster": red["id"], "name": "luca"}, headers=headers).json()
    assert _by_name(state, "luca")["size"] == 15
    assert sorted(i for i, c in _members(project).items() if c == "luca") == [f"round_red_{n:03d}" for n in range(15, 30)]

    # merge two
    blue = next(c for c in state["clusters"] if c["medoid"].startswith("round_blue"))
    state = client.post("/api/merge", json={"clusters": [red["id"], blue["id"]]}, headers=headers).json()
    assert _by_name(state, "luca")["size"] == 30 and len(state["clusters"]) == 4

    # move two images to noise, then to a new cluster
    state = client.post("/api/move", json={"instances": ["round_blue_000", "round_blue_001"], "to": "noise"},
                        headers=headers).json()
    assert _by_name(state, "noise")["size"] == 2 and "round_blue_000" not in _members(project)
    state = client.post("/api/move", json={"instances": ["round_blue_000"], "to": "new", "name": "extra"},
                        headers=headers).json()
    assert _by_name(state, "extra")["size"] == 1 and _members(project)["round_blue_000"] == "extra"

    # split luca (blue + red) back into two
    luca = _by_name(state, "luca")
    state = client.post("/api/split", json={"cluster": luca["id"], "k": 2}, headers=headers).json()
    assert sorted(c["size"] for c in state["clusters"] if c["name"].startswith("luca")) == [13, 15]

    # not a character
    purple = next(c for c in state["clusters"] if c["medoid"].startswith("tall_purple"))
    state = client.post("/api/not-character", json={"cluster": purple["id"]}, headers=headers).json()
    assert _by_name(state, purple["name"])["is_noise"] and not any(i.startswith("tall_purple") for i in _members(project))

    # undo twice, redo once
    state = client.post("/api/undo", headers=headers).json()
    assert any(i.startswith("tall_purple") for i in _members(project))
    state = client.post("/api/undo", headers=headers).json()
    assert _by_name(state, "luca")["size"] == 28 and state["can_redo"]
    state = client.post("/api/redo", headers=headers).json()
    assert sorted(c["size"] for c in state["clusters"] if c["name"].startswith("luca")) == [13, 15]

    # a new server on the same project sees the same state (it is all in the catalog)
    again = _client(project).get("/api/state").json()
    assert [(c["name"], c["size"]) for c in again["clusters"]] == [(c["name"], c["size"]) for c in state["clusters"]]

    # export
    result = client.post("/api/export", headers=headers).json()
    out = project.root / "clustered_refined"
    assert result["noise"] == 1 and (out / "export_report.json").is_file()
    assert len(list((out / "luca").glob("*.png"))) in (13, 15) and len(list((out / "extra").glob("*.png"))) == 1


def test_bad_requests(project):
    client = _client(project)
    headers = {"X-Animlora-Token": _token(client)}
    cid = client.get("/api/state").json()["clusters"][0]["id"]
    assert client.post("/api/rename", json={"cluster": cid, "name": "../x"}, headers=headers).status_code == 400
    assert client.post("/api/rename", json={"cluster": "nope", "name": "a"}, headers=headers).status_code == 400
    assert client.post("/api/merge", json={"clusters": [cid]}, headers=headers).status_code == 400


def test_security(project):
    client = _client(project)
    token = _token(client)
    cid = client.get("/api/state").json()["clusters"][0]["id"]
    body = {"cluster": cid, "name": "x"}
    # state changes need the page's token, and a same-host Origin
    assert client.post("/api/rename", json=body).status_code == 403
    assert client.post("/api/rename", json=body, headers={"X-Animlora-Token": "wrong"}).status_code in (401, 403)
    evil = {"X-Animlora-Token": token, "Origin": "http://evil.example"}
    assert client.post("/api/rename", json=body, headers=evil).status_code == 403
    # DNS rebinding: a foreign Host is refused on a local server
    assert client.get("/api/state", headers={"Host": "evil.example"}).status_code == 403
    # only files inside the workspace; traversal is a 404
    assert client.get("/files/clustered/cluster_report.json").status_code == 200
    for path in ("/files/../../../../etc/passwd", "/files/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
                 "/files/..%2f..%2f..%2fetc%2fpasswd", "/files/catalog.sqlite/../../x", "/files/.animlora/lock",
                 "/api/thumb/..%2f..%2fetc%2fpasswd", "/api/image/nope"):
        assert client.get(path).status_code == 404, path
    assert client.get("/files//etc/passwd").status_code == 404

    # another host: a token on every request
    with pytest.raises(ValueError):
        create_app(ReviewService(project), host="0.0.0.0")
    strong = "k3Rz9-vQw2_pL7xN"
    remote = TestClient(create_app(ReviewService(project), host="0.0.0.0", token=strong),
                        base_url="http://192.168.1.5:8000")
    assert remote.get("/api/state").status_code == 401
    assert remote.get("/", params={"token": strong}).status_code == 200  # sets the cookie
    assert remote.get("/api/state").status_code == 200
    assert remote.post("/api/undo", headers={"X-Animlora-Token": strong}).status_code == 200


def test_export_cli_refuses_foreign_folder(project, tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    env = {"PYTHONPATH": str(repo / "src"), "PATH": "/usr/bin"}
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("user data")
    cmd = [sys.executable, "-m", "animlora", "export-clusters", "--project", str(project.root), "--json"]
    done = subprocess.run([*cmd, "--output-dir", str(foreign)], capture_output=True, text=True, env=env)
    assert done.returncode == 1 and "not empty" in done.stderr and (foreign / "keep.txt").exists()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert sum(result["characters"].values()) == 60
    assert sorted(p.name for p in (project.root / "clustered_refined").iterdir()) == [
        "character_0", "character_1", "character_2", "character_3", "export_report.json"]


def test_suggestions_from_noise(project):
    """The noise nearest a cluster is offered for it, nearest first, and only what is nearer it
    than any other cluster: three red images sent to noise come back as the red cluster's
    suggestions, two blue ones as the blue cluster's, never the other way round."""
    client = _client(project)
    headers = {"X-Animlora-Token": _token(client)}
    state = client.get("/api/state").json()
    red = next(c for c in state["clusters"] if c["medoid"].startswith("round_red"))
    blue = next(c for c in state["clusters"] if c["medoid"].startswith("round_blue"))
    far_red = client.get(f"/api/clusters/{red['id']}/members", params={"limit": 15}).json()["items"][-3:]
    far_blue = client.get(f"/api/clusters/{blue['id']}/members", params={"limit": 15}).json()["items"][-2:]
    client.post("/api/move", json={"instances": far_red + far_blue, "to": "noise"}, headers=headers)
    got = client.get(f"/api/clusters/{red['id']}/suggestions").json()
    assert got["tracks"] == 3 and got["instances"] == 3
    assert sorted(i for u in got["items"] for i in u["instances"]) == sorted(far_red)
    assert [u["distance"] for u in got["items"]] == sorted(u["distance"] for u in got["items"])
    assert all(u["margin"] > 1 for u in got["items"])
    got_blue = client.get(f"/api/clusters/{blue['id']}/suggestions").json()
    assert sorted(i for u in got_blue["items"] for i in u["instances"]) == sorted(far_blue)
    # a limit shows the nearest whole tracks first; the totals stay
    one = client.get(f"/api/clusters/{red['id']}/suggestions", params={"limit": 1}).json()
    assert len(one["items"]) == 1 and one["items"][0] == got["items"][0] and one["tracks"] == 3
    # a cluster set aside as "not a character" is still a rival: what is nearest it is not offered
    state = client.post("/api/not-character", json={"cluster": blue["id"]}, headers=headers).json()
    offered = {i for c in state["clusters"] if not c["is_noise"]
               for u in client.get(f"/api/clusters/{c['id']}/suggestions").json()["items"] for i in u["instances"]}
    assert offered == set(far_red)
    # taking them back is a plain move
    state = client.post("/api/move", json={"instances": far_red, "to": red["id"]}, headers=headers).json()
    assert next(c for c in state["clusters"] if c["id"] == red["id"])["size"] == 15
    assert client.get(f"/api/clusters/{red['id']}/suggestions").json()["items"] == []
    assert client.get("/api/clusters/noise/suggestions").status_code == 400


def test_alike_clusters_offered_most_alike_first_and_merged(project):
    """A character split in two (here by the review's own split) is the pair most alike; merging
    it takes the pair off the list; two clusters under one name are one character, not offered."""
    client = _client(project)
    headers = {"X-Animlora-Token": _token(client)}
    state = client.get("/api/state").json()
    red = next(c for c in state["clusters"] if c["medoid"].startswith("round_red"))
    before = client.get("/api/alike").json()
    assert before["pairs"] == 6 and before["seen_apart"] == 0  # four characters, each image its own frame
    state = client.post("/api/split", json={"cluster": red["id"], "k": 2}, headers=headers).json()
    parts = [c for c in state["clusters"] if c["name"].startswith(red["name"])]
    assert len(parts) == 2
    got = client.get("/api/alike").json()
    assert got["pairs"] == 10 and len(got["items"]) == 8
    first = got["items"][0]
    assert {c["id"] for c in first["clusters"]} == {p["id"] for p in parts}
    assert all(len(c["preview"]) == 4 and c["preview"][0].startswith("round_red") for c in first["clusters"])
    assert [p["distance"] for p in got["items"]] == sorted(p["distance"] for p in got["items"])
    assert len(client.get("/api/alike", params={"limit": 2}).json()["items"]) == 2
    # a name the reviewer gave goes first (a merge keeps the first one's name), else the larger
    base = next(c for c in first["clusters"] if c["name"] == red["name"])
    other = next(c for c in first["clusters"] if c is not base)
    client.post("/api/rename", json={"cluster": other["id"], "name": "character_99"}, headers=headers)
    unnamed = client.get("/api/alike").json()["items"][0]["clusters"]
    assert unnamed[0]["size"] >= unnamed[1]["size"]
    for named in (base, other):
        client.post("/api/rename", json={"cluster": named["id"], "name": "rosso"}, headers=headers)
        assert client.get("/api/alike").json()["items"][0]["clusters"][0]["name"] == "rosso"
        client.post("/api/rename", json={"cluster": named["id"], "name": named["name"]}, headers=headers)
    # named alike by the reviewer: one character, not offered
    client.post("/api/rename", json={"cluster": parts[1]["id"], "name": red["name"]}, headers=headers)
    assert client.get("/api/alike").json()["pairs"] == 9
    state = client.post("/api/merge", json={"clusters": [c["id"] for c in first["clusters"]]}, headers=headers).json()
    assert _by_name(state, red["name"])["size"] == 15
    after = client.get("/api/alike").json()
    assert after["pairs"] == 6 and first["clusters"][1]["id"] not in {c["id"] for p in after["items"] for c in p["clusters"]}


def test_alike_leaves_out_clusters_seen_apart_in_one_frame(tmp_path):
    """Blue and red share a rig and stand apart in the same frames: never offered as one character."""
    ws = make_project(tmp_path / "p")
    images, labels, _ = dataset(per_character=12, seed=1)
    names = [CHARACTERS[lab].name for lab in labels]
    ids = [f"{name}_{n:03d}" for n, name in enumerate(names)]
    count: dict[str, int] = {}
    frames = []
    for name in names:  # the k-th blue and the k-th red in frame k; the others alone
        k = count[name] = count.get(name, -1) + 1
        frames.append(f"f{k}_0" if name in ("round_blue", "round_red") else None)
    add_instances(ws, images, ids, frames=frames)
    run_identity(ws)
    client = _client(ws)
    state = client.get("/api/state").json()
    by_char = {c["medoid"].rsplit("_", 1)[0]: c["id"] for c in state["clusters"] if c["medoid"]}
    assert {"round_blue", "round_red"} <= set(by_char)
    got = client.get("/api/alike", params={"limit": 100}).json()
    assert got["seen_apart"] == 1 and got["pairs"] == len(got["items"]) == 5
    offered = [{c["id"] for c in p["clusters"]} for p in got["items"]]
    assert {by_char["round_blue"], by_char["round_red"]} not in offered
