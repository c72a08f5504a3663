"""The cluster stage: quality on synthetic characters, track constraints, naming from
references, and review decisions surviving re-runs of embed and cluster."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import yaml
from sklearn.metrics import adjusted_rand_score

from animlora.config import load_settings
from animlora.identity import decisions
from animlora.identity.clustering import normalise
from animlora.identity.constraints import apply_must_link, split_cannot_link
from animlora.identity.naming import embed_references, picture_box, references
from animlora.io.images import read_image, write_image
from animlora.pipeline.runner import Runner
from animlora.stages import get_stage
from animlora.stages.cluster import REFERENCE_RULE, _references_fingerprint
from animlora.stages.embed import get_embedder
from animlora.workspace import Workspace
from identity_project import add_instances, make_project, run_identity
from identity_synth import CHARACTERS, Character, dataset, render


def _purity(truth: list[int], found: list[int]) -> float:
    total = 0
    for label in set(found):
        members = [t for t, f in zip(truth, found, strict=True) if f == label]
        total += Counter(members).most_common(1)[0][1]
    return total / len(truth)


def test_color_clustering_recovers_characters_standalone(tmp_path):
    images, labels, lights = dataset(per_character=30, seed=0)
    src = tmp_path / "filtered"
    for n, (image, label) in enumerate(zip(images, labels, strict=True)):
        write_image(src / f"id{label}_{n:03d}.png", image)
    out = tmp_path / "clustered"
    loaded = load_settings()
    Runner(Workspace.for_output(out), loaded, input_path=src).run([get_stage("embed"), get_stage("cluster")])

    found, truth = [], []
    folders = sorted(p for p in out.iterdir() if p.is_dir() and p.name.startswith(("character_", "noise")))
    for k, folder in enumerate(folders):
        for f in folder.glob("*.png"):
            truth.append(int(f.name[2]))
            found.append(-1 if folder.name == "noise" else k)
    assert len(found) == len(images)
    assert _purity(truth, found) >= 0.95
    assert adjusted_rand_score(truth, found) >= 0.9
    assert [f.name for f in folders] == ["character_0", "character_1", "character_2", "character_3"]

    report = json.loads((out / "cluster_report.json").read_text())
    assert report["clusters"] == 4 and report["noise"] == 0
    assert [c["size"] for c in report["per_cluster"]] == [30, 30, 30, 30]
    assert all(c["cohesion"] > 0.9 and c["nearest_cluster"]["similarity"] < 0.9 for c in report["per_cluster"])
    assert (out / "cluster_visualization.png").stat().st_size > 10_000
    assert sorted(p.name for p in (out / "contact_sheets").iterdir()) == [f"character_{k}.jpg" for k in range(4)]


def test_must_link_and_cannot_link_on_vectors():
    rng = np.random.default_rng(0)
    a, b = np.eye(8)[0], np.eye(8)[1]
    x = np.concatenate([a + rng.normal(0, 0.05, (20, 8)), b + rng.normal(0, 0.05, (20, 8))])
    labels = np.array([0] * 20 + [1] * 20)
    labels[[3, 4]] = [1, -1]  # two members of track t0 went astray
    tracks = ["t0"] * 10 + [None] * 10 + ["t1"] * 20
    linked, moved = apply_must_link(labels, tracks)
    assert moved == 2 and set(linked[:10]) == {0}

    # one cluster holding two characters that share frames -> split along them
    merged = np.zeros(40, dtype=np.int64)
    frames = [f"f{i}" for i in range(20)] + [f"f{i}" for i in range(20)]
    split, n = split_cannot_link(x, merged, frames, [None] * 40, min_cluster_size=5)
    assert n == 1
    assert len(set(split[:20])) == 1 and len(set(split[20:])) == 1 and split[0] != split[20]


def _twin(character: Character) -> Character:
    """Same rig and nearly the same clothes: only the hair differs a little."""
    return Character(character.name + "_twin", character.body_w, character.body_h, character.head_r,
                     character.skin, (130, 80, 40), character.shirt, character.pants)


def test_stage_track_aware(tmp_path):
    ws = make_project(tmp_path / "p")
    rng = np.random.default_rng(5)
    a, twin = CHARACTERS[0], _twin(CHARACTERS[0])
    images, ids, frames, tracks = [], [], [], []
    for i in range(20):  # a and her twin always on screen together: frame f<i>
        for who, c in (("a", a), ("t", twin)):
            images.append(render(c, i % 2, rng))
            ids.append(f"{who}{i:02d}")
            frames.append(f"f{i:02d}")
            tracks.append(f"track_{who}_{i // 10}")
    for i in range(3):  # in a's first track, three frames under a harsh red light
        image = render(a, 0, rng)
        image[..., 1:3] = (image[..., 1:3] * 0.3).astype(np.uint8)
        images.append(image)
        ids.append(f"a_red{i}")
        frames.append(f"g{i}")
        tracks.append("track_a_0")
    add_instances(ws, images, ids, frames, tracks)
    # the size as set (fraction 0): at the short-film size (3) the three red frames, outliers
    # of their track, would be a cluster of their own, as an outlier that found one stays there
    run_identity(ws, {"cluster": {"min_cluster_size": 8, "min_cluster_fraction": 0}})
    with ws.open_catalog() as catalog:
        assign = dict(catalog.rows("SELECT instance_id, cluster_id FROM cluster_assignments"))
        frame_clusters = catalog.rows(
            "SELECT COUNT(*) FROM cluster_assignments c JOIN instances i ON i.id = c.instance_id "
            "WHERE c.cluster_id != 'noise' GROUP BY i.frame_id, c.cluster_id HAVING COUNT(*) > 1"
        )
    a_clusters = {assign[i] for i in ids if i.startswith("a")}
    twin_clusters = {assign[i] for i in ids if i.startswith("t")}
    assert len(a_clusters) == 1 and len(twin_clusters) == 1 and a_clusters != twin_clusters
    assert "noise" not in a_clusters | twin_clusters  # the red-lit frames followed their track
    assert frame_clusters == []  # no cluster holds two instances of one frame
    report = json.loads((ws.root / "clustered" / "cluster_report.json").read_text())
    assert report["per_cluster"][0]["tracks"] == 2 and report["per_cluster"][0]["shots"] >= 1
    # the second noise pass ran (two clusters, nothing left in noise to attach)
    assert report["constraints"]["margin_attached"] == {"attached_instances": 0, "attached_units": 0,
                                                        "ambiguous_units": 0, "cannot_link_units": 0, "rounds": 1,
                                                        "clusters_joined": 0}


def _write_character(ws, name: str, images, negative: bool = False) -> None:
    ref_dir = ws.root / "references" / name
    for n, image in enumerate(images):
        write_image(ref_dir / f"{n}.png", image)
    spec = {"references": [f"../references/{name}"], "negative": negative}
    (ws.characters_dir / f"{name}.yaml").write_text(yaml.safe_dump(spec))


def _project_with_characters(tmp_path, per_character=15, seed=0):
    ws = make_project(tmp_path / "p")
    images, labels, _ = dataset(per_character=per_character, seed=seed)
    ids = [f"{CHARACTERS[label].name}_{n:03d}" for n, label in enumerate(labels)]
    add_instances(ws, images, ids)
    return ws, ids


def test_naming_from_references_and_negatives(tmp_path):
    ws, ids = _project_with_characters(tmp_path)
    rng = np.random.default_rng(9)
    _write_character(ws, "luca", [render(CHARACTERS[1], k % 2, rng) for k in range(3)])
    _write_character(ws, "crowd", [render(CHARACTERS[3], 0, rng)], negative=True)
    run_identity(ws)
    out = ws.root / "clustered"
    folders = sorted(p.name for p in out.iterdir() if p.is_dir() and p.name != "contact_sheets")
    assert folders == ["character_0", "character_1", "luca", "noise"]
    assert sorted(p.stem for p in (out / "luca").glob("*.png")) == [i for i in ids if i.startswith("round_red")]
    assert sorted(p.stem for p in (out / "noise").glob("*.png")) == [i for i in ids if i.startswith("wide_yellow")]
    with ws.open_catalog() as catalog:
        members = dict(catalog.rows("SELECT instance_id, character FROM character_members"))
    assert {members[i] for i in ids if i.startswith("round_red")} == {"luca"}
    assert not any(i.startswith("wide_yellow") for i in members)


def _frame_grab(cutout: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``cutout`` over a set (sky above grass, a little noise), with no alpha: a screenshot."""
    h, w = 160, 200
    out = np.zeros((h, w, 3), np.float32)
    out[: h // 2], out[h // 2 :] = (150, 190, 230), (70, 140, 60)
    out += rng.normal(0, 4, out.shape)
    y, x = (h - cutout.shape[0]) // 2, (w - cutout.shape[1]) // 2
    a = cutout[..., 3:].astype(np.float32) / 255
    region = out[y : y + cutout.shape[0], x : x + cutout.shape[1]]
    region[:] = region * (1 - a) + cutout[..., :3] * a
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def test_a_picture_is_told_from_a_cut_out():
    """A reference with no transparency, or a solid rectangle in transparent margins (a window
    screenshot: rounded corners, a soft shadow), is a picture to cut out; a character's cut-out is not."""
    shot = np.full((60, 80, 4), 255, np.uint8)
    assert picture_box(shot) == (0, 0, 80, 60)
    window = np.zeros((100, 120, 4), np.uint8)
    window[3:97, 3:117, 3] = 40  # the shadow
    window[8:92, 8:112] = (90, 120, 200, 255)
    for y, x in ((8, 8), (8, 111), (91, 8), (91, 111)):  # rounded corners
        window[y, x, 3] = 0
    assert picture_box(window) == (8, 8, 104, 84)
    assert picture_box(render(CHARACTERS[2], 0, np.random.default_rng(1))) is None
    assert picture_box(np.zeros((10, 10, 4), np.uint8)) is None
    soft = np.zeros((40, 40, 4), np.uint8)
    soft[5:35, 5:35, 3] = 200
    soft[20, 20, 3] = 255  # a soft matte with one solid pixel: a cut-out
    assert picture_box(soft) is None


def test_a_screenshot_reference_is_cut_out_before_it_names_a_cluster(tmp_path):
    """A reference with no transparency (a frame grab, JPEG) is cut out by the project's segmenter
    (``classic`` here: no weights) and names its character's cluster; embedded whole, the set
    around the character keeps it far under ``cluster.name_similarity``."""
    ws, ids = _project_with_characters(tmp_path)
    rng = np.random.default_rng(9)
    ref_dir = ws.root / "references" / "luca"
    for n in range(3):
        write_image(ref_dir / f"{n}.jpg", _frame_grab(render(CHARACTERS[1], n % 2, rng), rng))
    (ws.characters_dir / "luca.yaml").write_text(yaml.safe_dump({"references": ["../references/luca"]}))
    sets = {"segment": {"backend": "classic"}}
    run_identity(ws, sets)
    out = ws.root / "clustered"
    luca = sorted((out / "luca").glob("*.png"))
    assert [p.stem for p in luca] == [i for i in ids if i.startswith("round_red")]
    report = json.loads((out / "cluster_report.json").read_text())
    assert report["references"] == [{"name": "luca", "negative": False, "images": 3, "cut_out": 3, "whole": 0}]
    assert all(c["reference_similarity"] > 0.95 for c in report["per_cluster"] if c["name"] == "luca")

    # the same frame grabs embedded whole, against the luca cluster's centre
    settings = load_settings(ws.root, overrides=sets).settings
    embedder, _ = get_embedder(settings)
    refs = references([ws.characters_dir], ws.root)
    [(_, whole)], [counts] = embed_references(refs, embedder)
    assert counts == {"name": "luca", "negative": False, "images": 3, "cut_out": 0, "whole": 3}
    centre = normalise(normalise(embedder.embed([read_image(p, "RGBA") for p in luca])).mean(0, keepdims=True))[0]
    assert float((whole @ centre).max()) < settings.cluster.name_similarity - 0.1
    # the references named outside characters/ are part of the naming's fingerprint
    seen = dict(_references_fingerprint([ws.characters_dir], ws.root))
    assert all(str(ref_dir / f"{n}.jpg") in seen for n in range(3)) and REFERENCE_RULE[0] in seen


def test_decisions_survive_rerun_of_embed_and_cluster(tmp_path):
    ws, ids = _project_with_characters(tmp_path)
    run_identity(ws)
    with ws.open_catalog() as catalog:
        state = decisions.ReviewState.load(catalog)
        red = state.assign["round_red_015"]
        purple = state.assign["tall_purple_030"]
        decisions.record(catalog, "rename", {"cluster": red, "snapshot": state.snapshot(red), "name": "luca"})
        decisions.record(catalog, "move", {"instances": ["round_red_016", "round_red_017"], "to": "noise"})
        decisions.record(catalog, "not_character", {"cluster": purple, "snapshot": state.snapshot(purple)})
        decisions.record(catalog, "rename", {"cluster": purple, "snapshot": state.snapshot(purple), "name": "x"})
        decisions.undo(catalog)  # the last rename is undone, not lost
        decisions.refresh_members(catalog)

    def members():
        with ws.open_catalog() as catalog:
            return dict(catalog.rows("SELECT instance_id, character FROM character_members"))

    expected_luca = sorted(i for i in ids if i.startswith("round_red") and i not in ("round_red_016", "round_red_017"))
    before = members()
    assert sorted(i for i, c in before.items() if c == "luca") == expected_luca
    assert not any(i.startswith("tall_purple") for i in before)

    # new cut-outs of the same characters arrive: embed and cluster re-run, cluster ids change
    rng = np.random.default_rng(42)
    new = [render(CHARACTERS[1], k % 2, rng) for k in range(6)]
    add_instances(ws, new, [f"round_red_new{k}" for k in range(6)])
    summaries = run_identity(ws)
    assert [s.items_skipped for s in summaries] == [1, 0]  # the earlier batch is not redone
    after = members()
    assert sorted(i for i, c in after.items() if c == "luca") == sorted(expected_luca + [f"round_red_new{k}" for k in range(6)])
    assert "round_red_016" not in after and not any(i.startswith("tall_purple") for i in after)

    # a forced re-run of cluster keeps them too
    run_identity(ws, stages=("cluster",), force=True)
    assert members() == after
    with ws.open_catalog() as catalog:
        assert decisions.redo(catalog) is not None  # the undone rename is still in the log
        assert catalog.one("SELECT COUNT(*) FROM review_decisions")[0] == 4


def test_cluster_cli_standalone(tmp_path):
    import subprocess
    import sys

    images, labels, _ = dataset(per_character=14, seed=4)
    src = tmp_path / "in"
    for n, image in enumerate(images):
        write_image(src / f"{n:03d}.png", image)
    repo = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "animlora", "cluster", "--input-dir", str(src), "--output-dir", str(tmp_path / "out"),
           "--min-cluster-size", "6", "--min-samples", "2", "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, env={"PYTHONPATH": str(repo / "src"), "PATH": "/usr/bin"})
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert [s["stage"] for s in result["stages"]] == ["embed", "cluster"]
    report = json.loads((tmp_path / "out" / "cluster_report.json").read_text())
    assert report["clusters"] == 4 and report["settings"]["min_cluster_size"] == 6


def test_project_without_instances_gives_an_empty_result(tmp_path):
    ws = make_project(tmp_path / "p")  # segment ran and found no character
    summaries = run_identity(ws)
    assert [s.failures for s in summaries] == [(), ()]
    report = json.loads((ws.root / "clustered" / "cluster_report.json").read_text())
    assert (report["instances"], report["clusters"]) == (0, 0)


def test_run_chains_embed_and_cluster(tmp_path):
    import subprocess
    import sys

    ws, ids = _project_with_characters(tmp_path, per_character=12)
    repo = Path(__file__).resolve().parents[1]
    env = {"PYTHONPATH": str(repo / "src"), "PATH": "/usr/bin"}
    cmd = [sys.executable, "-m", "animlora", "run", "--project", str(ws.root), "--from", "embed", "--to", "cluster", "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert [s["stage"] for s in json.loads(done.stdout)["stages"]] == ["embed", "cluster"]
    again = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert [s["up_to_date"] for s in json.loads(again.stdout)["stages"]] == [True, True]
    with ws.open_catalog() as catalog:
        assert catalog.one("SELECT COUNT(DISTINCT character) FROM character_members")[0] == 4


def test_turbo_path_matches_direct_and_keeps_rare_characters():
    from animlora.identity.clustering import ClusterParams, cluster_embeddings

    rng = np.random.default_rng(0)
    dim, parts, truth = 96, [], []
    common = rng.normal(size=dim)
    common /= np.linalg.norm(common)
    for k, size in enumerate([900, 700, 500, 400, 300, 25]):  # the last one: a rare side character
        centre = 0.7 * common + 0.7 * (v := rng.normal(size=dim)) / np.linalg.norm(v)
        parts.append(centre + rng.normal(scale=0.04, size=(size, dim)))
        truth += [k] * size
    x = np.concatenate(parts)
    truth = np.asarray(truth)
    turbo = cluster_embeddings(x, ClusterParams(turbo_threshold=1000, turbo_sample=1000, turbo_pca_dim=8))
    direct = cluster_embeddings(x, ClusterParams(turbo_threshold=10_000))
    assert (turbo.method, direct.method) == ("turbo", "direct")
    assert adjusted_rand_score(truth, direct.labels) > 0.99
    assert adjusted_rand_score(truth, turbo.labels) >= adjusted_rand_score(truth, direct.labels) - 0.005
    rare = turbo.labels[truth == 5]
    assert (rare == rare[0]).all() and rare[0] != -1 and (truth[turbo.labels == rare[0]] == 5).all()
