"""What a character needs before its dataset is written: min_size ``auto`` adapted to the
footage, being a character (a still cluster is left out as ``not_character:still``), and no prop
track inside it (left out as ``not_character:prop``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from animlora.catalog import Catalog
from animlora.curation.gate import (
    PIECE_REASON,
    not_character,
    prop_pieces,
    prop_tracks,
    resolve_min_size,
    track_strays,
    trusted,
)
from dataset_synth import make_project, run_stages

SETTINGS = {"dataset": {"target_size": 12, "small_size": 12, "resolution": 512, "min_bucket": 128,
                        "max_bucket": 1024, "report": True}}


def test_auto_min_size_scales_with_shots_between_floor_and_cap():
    assert resolve_min_size("auto", 14)[0] == 4  # cgi-bench's short film
    assert resolve_min_size("auto", 6)[0] == 4  # never under the floor
    assert resolve_min_size("auto", 24)[0] == 4  # cgi-bench's ~450-frame renders: pure 4-5 image folders
    assert resolve_min_size("auto", 36)[0] == 6
    assert resolve_min_size("auto", 48)[0] == 8
    assert resolve_min_size("auto", 136)[0] == 8  # the whole Big Buck Bunny film
    assert resolve_min_size("auto", None)[0] == 8  # a folder of cut-outs: shots unknown
    assert resolve_min_size(12, 14) == (12, "dataset.min_size 12 (set)")  # an explicit number wins
    assert "14 shots" in resolve_min_size("auto", 14)[1]


def _by_shot(statics: dict[str, list[float]]) -> dict[str, list]:
    """:func:`not_character`'s ``measures`` and ``shots`` of a cluster given as shot -> its instances' ``static``."""
    pairs = [({"static": v}, shot) for shot, values in statics.items() for v in values]
    return {"measures": [m for m, _ in pairs], "shots": [shot for _, shot in pairs]}


def test_a_cluster_still_in_most_of_its_shots_is_not_a_character():
    # cgi-bench seed 3's trees and rocks (7 of 9 shots still) and seed 6's trees (2 of 3)
    trees3 = {"s11": [1.0], "s12": [1.0], "s15": [1.0, 1.0], "s16": [1.0], "s2": [0.904, 0.936, 0.927, 0.059, 0.833],
              "s20": [1.0], "s7": [1.0], "s8": [0.982, 0.999, 1.0], "s9": [0.698, 0.951]}
    trees6 = {"s1": [1.0, 1.0, 0.999, 1.0, 0.999, 1.0, 1.0, 1.0], "s14": [0.832], "s2": [1.0] * 6}
    assert not_character(**_by_shot(trees3)).startswith("not_character:still (still in 7 of 9 shots, 10 of 17 ")
    assert not_character(**_by_shot(trees6)).startswith("not_character:still (still in 2 of 3 shots")
    # seed 6's trees as session 50's run clustered them: still in 4 of 7 shots, swaying (or close
    # to a moving camera) in the other three, one of them measured once; and the bunny, idle in
    # two of his four shots, hopping in the others: more than half is scenery, half is not
    trees = {"s1": [1.0] * 8, "s13": [0.29], "s18": [1.0, 1.0], "s2": [1.0] * 6, "s20": [1.0, 1.0],
             "s3": [0.58, 0.68, 0.67], "s8": [0.33, 0.03]}
    assert not_character(**_by_shot(trees)).startswith("not_character:still (still in 4 of 7 shots, 18 of 24 ")
    bunny = {"s1": [0.998, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0], "s17": [0.31, 0.52],
             "s2": [0.8, 0.73, 1.0, 1.0, 1.0, 1.0, 1.0], "s20": [0.6, 0.69]}
    assert not_character(**_by_shot(bunny)) == ""
    # seed 4's robot: idle through close shot 1 (10 of its 18 instances), moving in two others;
    # counted per instance (11 of 18 at >= 0.9, the rule before) it read as scenery: no dataset
    robot = {"s1": [0.992, 1.0, 0.997, 0.997, 1.0, 1.0, 1.0, 1.0, 0.999, 0.994], "s11": [0.94, 0.779],
             "s4": [0.425, 0.583, 0.636], "s7": [0.694, 0.547, 0.611]}
    assert not_character(**_by_shot(robot)) == ""
    # seed 6's green boy waving, looking and turning in a medium shot: most of him is unchanged
    boy = {"s13": [0.953, 0.972, 0.554], "s18": [0.949, 0.947], "s5": [0.895, 0.874, 0.988]}
    assert not_character(**_by_shot(boy)) == ""
    assert not_character([{"static": 1.0}, {"static": 1.0}, None]) == ""  # too little evidence
    assert not_character([{"static": 0.2, "text": 0.8}] * 3).startswith("not_character:text")
    assert trusted("buck") and not trusted("character_3")  # named in review: trusted
    # stillness seen in one shot only tells an idle character from nothing (the demo clip's
    # Buck, waking slowly in one static-camera shot: 7 of 10 instances still)
    buck = [{"static": s} for s in (0.99, 0.98, 0.4, 0.99, 0.975, 0.5, 0.996, 0.98, 0.3, 0.972)]
    assert not_character(buck).startswith("not_character:still (still in 7 of 10 instances")  # shots unknown
    assert not_character(buck, shots=["s0"] * 10) == ""
    assert not_character(buck, shots=["s0"] * 5 + ["s1"] * 5).startswith("not_character:still (still in 2 of 2")
    # a shot is still when more than half its measured instances are: a tie is motion
    assert not_character(buck, shots=["s0", "s0", "s1", "s1", "s2", "s2", "s3", "s3", "s4", "s4"]) == ""


def test_pieces_of_a_colour_split_are_no_evidence_of_motion():
    # shaped on seed 2's trees (main 213162c): two pieces of a tree cut off the walking blue boy by
    # the colour split (the boy moved over their pixels) beside the tree's own still instance
    statics = (1.0, 1.0, 0.391, 0.652, 0.33, 0.994)
    split = (False, False, True, True, False, False)
    trees = [{"static": s} | ({"colour_split": True} if c else {}) for s, c in zip(statics, split, strict=True)]
    shots = ["s0", "s10", "s10", "s10", "s11", "s13"]
    assert not_character(trees, shots=shots).startswith("not_character:still (still in 3 of 4 shots, 3 of 4 instances")
    assert not_character([{k: v for k, v in m.items() if k != "colour_split"} for m in trees], shots=shots) == ""
    # a character whose split pieces are still does not become scenery by them either
    boy = [{"static": s} for s in (0.1, 0.3, 0.95, 0.2)] + [{"static": 1.0, "colour_split": True}] * 4
    assert not_character(boy, shots=["s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8"]) == ""


def _cluster(tracks: dict[str, tuple[list[float], list[float], np.ndarray]], seed: int = 0):
    """(members, track measures, vectors) of one cluster: track -> (statics, flats, centre); two
    members per track, each its centre plus a little noise."""
    rng = np.random.default_rng(seed)
    members, measures, vectors = [], {}, {}
    for track, (statics, flats, centre) in tracks.items():
        measures[track] = [{"static": s, "flat": f} for s, f in zip(statics, flats, strict=True)]
        for k in range(2):
            iid = f"{track}_i{k}"
            members.append((iid, track))
            vectors[iid] = centre + rng.normal(scale=0.02, size=centre.shape)
    return members, measures, vectors


def test_a_still_flat_track_at_the_rim_of_its_cluster_is_a_prop_and_an_idle_character_is_not():
    rng = np.random.default_rng(1)
    core, far = rng.normal(size=16), rng.normal(size=16)
    moving = ([0.3, 0.2, 0.5], [0.2, 0.15, 0.25])
    # the whole film's stakes (track s70_t0): 4 of 5 still at 0.7, flat 0.48-0.54
    stake = ([0.54, 0.83, 0.81, 0.75, 0.74], [0.53, 0.54, 0.53, 0.49, 0.48])
    tracks = {"a": (*moving, core), "b": (*moving, core + 0.3 * rng.normal(size=16)),
              "c": (*moving, core + 0.3 * rng.normal(size=16)), "stake": (*stake, far)}
    members, measures, vectors = _cluster(tracks)
    out = prop_tracks(members, measures, vectors, max_static=0.7)
    assert sorted(out) == ["stake_i0", "stake_i1"]
    assert out["stake_i0"].startswith("not_character:prop (track stake: 4 of 5 instances unchanged")
    # an idle character: as still, but its fill is shaded (Buck, Frank idle: flat 0.14-0.38)
    idle = ([1.0, 0.95, 0.93], [0.2, 0.25, 0.3])
    members, measures, vectors = _cluster({**tracks, "stake": (*idle, far)})
    assert prop_tracks(members, measures, vectors, max_static=0.7) == {}
    # still and flat, but among the cluster's own views (a flat-painted character idle in one shot)
    members, measures, vectors = _cluster({**tracks, "stake": (*stake, core + 0.05 * rng.normal(size=16))})
    assert prop_tracks(members, measures, vectors, max_static=0.7) == {}
    # moving in most frames: a character, whatever its fill
    members, measures, vectors = _cluster({**tracks, "stake": ([0.2, 0.3, 0.9], [0.6, 0.6, 0.6], far)})
    assert prop_tracks(members, measures, vectors, max_static=0.7) == {}
    # no evidence: two tracks only (the demo clip's one Buck track and a prop), no embeddings, 2D
    members, measures, vectors = _cluster({"a": tracks["a"], "stake": tracks["stake"]})
    assert prop_tracks(members, measures, vectors, max_static=0.7) == {}
    members, measures, vectors = _cluster(tracks)
    assert prop_tracks(members, measures, None, max_static=0.7) == {}
    assert prop_tracks(members, measures, vectors, max_static=0.7, flat_check=False) == {}



def test_a_track_never_seen_to_move_far_out_is_a_prop_whatever_its_fill():
    """Seed 6's tree crown, still in all 8 frames of a pan (flat 0.13: leaves are not filled flat), 2.79x
    out in the green boy's cluster; the seeds' idle characters still in every frame sit 0.63-1.34x out."""
    rng = np.random.default_rng(3)
    core, far, noise = rng.normal(size=16), rng.normal(size=16), rng.normal(size=16)
    moving = ([0.3, 0.2, 0.5], [0.05, 0.04, 0.06])
    tracks = {"a": (*moving, core), "b": (*moving, core + 0.3 * rng.normal(size=16)),
              "c": (*moving, core + 0.3 * rng.normal(size=16))}
    tree = ([1.0, 1.0, 0.998, 1.0, 0.998], [0.13] * 5)
    members, measures, vectors = _cluster({**tracks, "tree": (*tree, far)})
    out = prop_tracks(members, measures, vectors, max_static=0.7)
    assert sorted(out) == ["tree_i0", "tree_i1"]
    assert out["tree_i0"].startswith("not_character:prop (track tree: all 5 instances unchanged relative to the set")
    # seen to move once (a character idle for most of a shot), or still in two frames only: no verdict
    for statics in ([1.0, 1.0, 0.9, 1.0, 0.998], [1.0, 0.998]):
        members, measures, vectors = _cluster({**tracks, "tree": (statics, [0.13] * len(statics), far)})
        assert prop_tracks(members, measures, vectors, max_static=0.7) == {}
    # never seen to move, but among the cluster's own views (an idle character, 1.19x out)
    members, measures, vectors = _cluster({**tracks, "tree": (*tree, core + 0.3 * noise)})
    assert prop_tracks(members, measures, vectors, max_static=0.7) == {}


def test_a_track_never_measured_is_a_prop_only_when_flat_and_far_out():
    """Seed 3's grey rock: one instance in a whip pan whose frames do not register (no ``static``),
    flat 0.43, 2.23x the cluster's typical distance; a character track that was never measured
    either (the film's: up to 1.89x, flat <= 0.36) stays."""
    rng = np.random.default_rng(2)
    core, far, noise = rng.normal(size=16), rng.normal(size=16), rng.normal(size=16)
    moving = ([0.3, 0.2, 0.5], [0.2, 0.15, 0.25])
    tracks = {"a": (*moving, core), "b": (*moving, core + 0.3 * rng.normal(size=16)),
              "c": (*moving, core + 0.3 * rng.normal(size=16))}
    members, measures, vectors = _cluster({**tracks, "rock": ([None], [0.43], far)})
    out = prop_tracks(members, measures, vectors, max_static=0.7)
    assert sorted(out) == ["rock_i0", "rock_i1"]
    assert out["rock_i0"].startswith("not_character:prop (track rock: motion never measured in its 1 instance(s)")
    # flat, but only 1.46x out (a flat-painted character's close-up the segment stage could not measure)
    members, measures, vectors = _cluster({**tracks, "rock": ([None], [0.52], core + 0.4 * noise)})
    assert prop_tracks(members, measures, vectors, max_static=0.7) == {}
    # far out, but shaded (the film's unmeasured Buck at 1.89x has flat 0.30)
    members, measures, vectors = _cluster({**tracks, "rock": ([None], [0.30], far)})
    assert prop_tracks(members, measures, vectors, max_static=0.7) == {}
    # one instance measured and moving: a character, whatever its fill and place
    members, measures, vectors = _cluster({**tracks, "rock": ([None, 0.2], [0.6, 0.6], far)})
    assert prop_tracks(members, measures, vectors, max_static=0.7) == {}


def test_the_part_of_a_track_carried_from_a_rock_onto_the_character_is_judged_on_its_own():
    """cgi-bench seed 6, a whip pan: one track is a rock in f419 (never measured, flat 0.49) and
    the blue boy in front of it in f430 (measured, moving). As one track it has one known
    ``static`` (too little to judge) and sits among the boy's views; its boxes jump (3.9x the
    area, IoU 0.19), so :func:`track_parts` cuts it and the rock's part is judged alone."""
    from animlora.curation.gate import track_parts

    rows = [{"id": "rock", "track_id": "t", "frame_id": "v_f419", "bbox": "[211, 144, 104, 48]"},
            {"id": "boy", "track_id": "t", "frame_id": "v_f430", "bbox": "[234, 46, 117, 167]"},
            {"id": "a1", "track_id": "a", "frame_id": "v_f10", "bbox": "[10, 10, 50, 100]"},
            {"id": "a2", "track_id": "a", "frame_id": "v_f12", "bbox": "[14, 10, 52, 100]"},  # a walk: one part
            {"id": "lone", "track_id": None, "frame_id": "v_f3", "bbox": "[0, 0, 9, 9]"}]
    parts = track_parts(rows)
    assert parts == {"rock": "t#0", "boy": "t#1", "a1": "a", "a2": "a"}
    rng = np.random.default_rng(3)
    core, far = rng.normal(size=16), rng.normal(size=16)
    moving = ([0.3, 0.2, 0.5], [0.2, 0.15, 0.25])
    members, measures, vectors = _cluster({"a": (*moving, core), "b": (*moving, core + 0.3 * rng.normal(size=16)),
                                           "c": (*moving, core + 0.3 * rng.normal(size=16))})
    members += [("rock", "t"), ("boy", "t")]
    vectors |= {"rock": far, "boy": core + 0.1 * rng.normal(size=16)}
    measures |= {"t": [{"static": None, "flat": 0.49}, {"static": 0.445, "flat": 0.09}],
                 "t#0": [{"static": None, "flat": 0.49}], "t#1": [{"static": 0.445, "flat": 0.09}]}
    assert prop_tracks(members, measures, vectors, max_static=0.7) == {}  # the whole track: no verdict
    out = prop_tracks(members, measures, vectors, max_static=0.7, parts=parts)
    assert list(out) == ["rock"]  # the boy's part stays
    assert out["rock"].startswith("not_character:prop (track t#0: motion never measured in its 1 instance(s)")


def test_a_lone_frame_of_a_track_whose_other_frames_are_another_character_is_left_out():
    """cgi-bench seed 4: the green boy's head alone at the frame's edge (f74) is the only frame of
    track s3_t2 in the bunny's cluster, its three other frames are in the green boy's; a piece of the
    fox's face (f299) likewise (two other frames in the fox's). Two frames of a track together in a
    cluster (seed 2's bunny and fox+bunny halves of one track, 2 and 2) stay."""
    units = {"f64": "s3_t2", "f68": "s3_t2", "f72": "s3_t2", "f74": "s3_t2",
             "f287": "s14_t0", "f293": "s14_t0", "f299": "s14_t0",
             "f392": "s21_t1", "f409": "s21_t1", "f402": "s21_t1", "f404": "s21_t1",
             "f10": "s1_t0", "f11": "s1_t0", "f12": "s1_t0"}
    characters = {"f64": "green", "f68": "green", "f72": "green", "f74": "bunny",
                  "f287": "fox", "f293": "fox", "f299": "bunny",
                  "f392": "bunny", "f409": "bunny", "f402": "fox", "f404": "fox",
                  "f10": "robot", "f12": "robot"}  # f11: in the noise, no witness
    out = track_strays(units, characters)
    assert sorted(out) == ["f299", "f74"]
    assert out["f74"].startswith("not_one_character:track (the only frame of track s3_t2 in bunny; 3 of its "
                                 "other frames are green's")
    assert track_strays(units, characters, wanted=["f74", "f64"]).keys() == {"f74"}
    # one other frame elsewhere is no evidence (a track of two, parted by the clustering)
    assert track_strays({"a": "t", "b": "t"}, {"a": "x", "b": "y"}) == {}


def test_the_noise_witnesses_a_lone_frames_track_by_the_cluster_nearest_it():
    """cgi-bench seed 6 (session 50's run): the green boy's head alone in f273 (his shirt joined the
    blue boy's mask) is the only frame of track s15_t0 in the fox's cluster; his head and shirt in
    f277 and f281 are in the noise, both nearest another cluster than the fox's. A noise frame
    nearest the lone frame's own cluster (a blurred view of the same character) keeps it."""
    units = {"f273": "s15_t0", "f277": "s15_t0", "f281": "s15_t0", "f285": "s15_t0",
             "f20": "s2_t0", "f22": "s2_t0", "f24": "s2_t0"}
    characters = {"f273": "fox", "f20": "fox"}
    assert track_strays(units, characters) == {}  # the noise alone: no witness
    nearest = {"f277": "boy", "f281": "boy", "f22": "fox", "f24": "boy"}
    out = track_strays(units, characters, nearest=nearest)
    assert list(out) == ["f273"]
    assert out["f273"].startswith("not_one_character:track (the only frame of track s15_t0 in fox; 2 of its other "
                                  "frames are boy's (2 in no character, nearest boy)")
    # a clustered frame of the same character outweighs the noise: the lone frame is no lone frame
    assert track_strays(units, characters | {"f285": "fox"}, nearest=nearest) == {}
    # one noise frame nearest another cluster is no evidence either
    assert track_strays(units, characters, nearest={"f277": "boy"}) == {}


def _stray_on_heros_track(root) -> tuple[dict, str]:
    """A project of character_0 (tracks tS_0, 2 frames each) and hero (tS_1, 3 each) whose tracker
    put one frame of character_0's on hero's track t0_1 (one box, no jump): (rows, that frame)."""
    rows = make_project(root, {"character_0": 8, "hero": 12}, shots=4)
    stray = next(iid for iid, row in rows.items() if row["track_id"] == "t0_0")
    with Catalog(root / "catalog.sqlite") as cat:
        if "measures" not in {r[1] for r in cat.rows("PRAGMA table_info(instances)")}:
            cat.execute("ALTER TABLE instances ADD COLUMN measures TEXT")
        cat.execute("UPDATE instances SET measures = ?", (json.dumps({"static": 0.3, "flat": 0.1, "text": 0.0}),))
        cat.execute("UPDATE instances SET track_id = 't0_1' WHERE id = ?", (stray,))
        cat.execute("UPDATE instances SET bbox = ? WHERE track_id = 't0_1'", (rows[stray]["bbox"],))
    return rows, stray


def test_a_lone_frame_of_another_characters_track_is_left_out_of_the_dataset(tmp_path):
    _, stray = _stray_on_heros_track(tmp_path)
    run_stages(tmp_path, ["dataset"], SETTINGS)
    meta = json.loads((tmp_path / "training_data" / "character_0" / "metadata.json").read_text())
    assert [s["instance"] for s in meta["skipped"] if s["code"] == "not_one_character:track"] == [stray]
    assert stray not in {r["instance_id"] for r in meta["images"]}
    hero = json.loads((tmp_path / "training_data" / "hero" / "metadata.json").read_text())
    assert not any(s["code"] == "not_one_character:track" for s in hero["skipped"])


def test_a_lone_frame_whose_track_is_in_the_noise_nearest_another_character_is_left_out(tmp_path):
    # the clustering's records: character_0's members in cluster c0 (the stray too), hero's in c1;
    # hero's three frames of track t0_1 in the noise, the cluster stage finding c1 nearest each
    rows, stray = _stray_on_heros_track(tmp_path)
    loose = [iid for iid, row in rows.items() if row["track_id"] == "t0_1"]
    with Catalog(tmp_path / "catalog.sqlite") as cat:
        for iid, row in rows.items():
            cluster = "noise" if iid in loose else ("c1" if row["track_id"].endswith("_1") else "c0")
            cat.execute("INSERT INTO cluster_assignments VALUES (?, ?, NULL)", (iid, cluster))
        cat.execute(f"DELETE FROM character_members WHERE instance_id IN ({', '.join('?' * len(loose))})", loose)

    def track_codes() -> list[str]:
        run_stages(tmp_path, ["dataset"], SETTINGS, force=True)
        meta = json.loads((tmp_path / "training_data" / "character_0" / "metadata.json").read_text())
        return [s["reason"] for s in meta["skipped"] if s["code"] == "not_one_character:track"]

    assert track_codes() == []  # no distances recorded: the noise witnesses nothing
    with Catalog(tmp_path / "catalog.sqlite") as cat:
        cat.conn.executemany("INSERT INTO identity_distances VALUES (?, 't0_1', 0, 0.0, 'noise', NULL, 'c1', 0.3)",
                             [(iid,) for iid in loose])
    reasons = track_codes()
    assert len(reasons) == 1 and "3 of its other frames are hero's (3 in no character, nearest hero)" in reasons[0]


def test_one_characters_build_knows_the_other_characters_as_a_run_over_all(tmp_path):
    """The group rule's lower bound for a partner clustered as another character (GROUP_GROW_KNOWN)
    holds in a build of one character's dataset (``dataset.character``) as in the run over all: the
    other clusters' members are read for it (the same images either way)."""
    rows = make_project(tmp_path, {"character_0": 8, "hero": 12}, shots=4)  # tracks tS_0, tS_1 per shot
    mine = [iid for iid, row in rows.items() if row["track_id"] == "t0_0"]
    partner = next(iid for iid, row in rows.items() if row["track_id"] == "t0_1")
    alone, grown = mine[0], mine[1]
    size = 640 * 360
    with Catalog(tmp_path / "catalog.sqlite") as cat:
        if "measures" not in {r[1] for r in cat.rows("PRAGMA table_info(instances)")}:
            cat.execute("ALTER TABLE instances ADD COLUMN measures TEXT")
        cat.execute("UPDATE instances SET measures = ?", (json.dumps({"static": 0.3, "flat": 0.1, "text": 0.0}),))
        # character_0 beside hero in one frame; in another frame of the shot one character_0 mask over
        # both, 1.4x its lone area: under GROUP_GROW (1.55), over GROUP_GROW_KNOWN (1.3)
        for iid, box in ((alone, (100, 50, 150, 200)), (partner, (260, 60, 100, 150)), (grown, (100, 50, 240, 175))):
            cat.execute("UPDATE instances SET bbox = ?, area_fraction = ? WHERE id = ?",
                        (json.dumps(box), box[2] * box[3] / size, iid))
        cat.execute("UPDATE instances SET frame_id = ? WHERE id = ?", (rows[partner]["frame_id"], alone))

    def skipped(overrides: dict) -> list[str]:
        run_stages(tmp_path, ["dataset"], overrides, force=True)
        meta = json.loads((tmp_path / "training_data" / "character_0" / "metadata.json").read_text())
        return [s["instance"] for s in meta["skipped"] if s["code"] == "not_one_character:group"]

    assert skipped(SETTINGS) == [grown]
    assert skipped({"dataset": SETTINGS["dataset"] | {"character": "character_0"}}) == [grown]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("gate")
    # seed 10: no member of one cluster shows colours another's members share (with seed 0
    # character_0's one back view shows hair that only hero's back views have, and the colour rule,
    # tests/test_dataset_colours.py, takes it for hero in character_0's mask)
    rows = make_project(root, {"character_0": 5, "character_1": 5, "hero": 5}, shots=6, seed=10)
    with Catalog(root / "catalog.sqlite") as cat:
        columns = {r[1] for r in cat.rows("PRAGMA table_info(instances)")}
        if "measures" not in columns:
            cat.execute("ALTER TABLE instances ADD COLUMN measures TEXT")
        for iid, row in rows.items():
            still = not row["track_id"].endswith("_0")  # character_1 and hero never move
            cat.execute("UPDATE instances SET measures = ? WHERE id = ?",
                        (json.dumps({"static": 1.0 if still else 0.3, "text": 0.0}), iid))
    return root


def test_short_project_gets_datasets_and_a_still_cluster_is_left_out_with_its_reason(project):
    run_stages(project, ["dataset"], SETTINGS)
    report = json.loads((project / "training_data" / "dataset_results.json").read_text())
    # 6 shots: auto gives the floor of 4, so clusters of 5 get their dataset
    assert report["min_size"]["value"] == 4 and report["min_size"]["setting"] == "auto"
    assert report["characters"]["character_0"]["images"] == 5
    # an unnamed still cluster: no dataset, its reason and every instance listed
    skipped = {s["character"]: s for s in report["skipped_characters"]}
    assert list(skipped) == ["character_1"]
    assert skipped["character_1"]["status"] == "not character"
    assert skipped["character_1"]["reason"].startswith("not_character:still (still in 5 of 5 shots, 5 of 5")
    assert skipped["character_1"]["left_out_counts"] == {"not_character:still": 5}
    assert not (project / "training_data" / "character_1").exists()
    # a named cluster is a character whatever its motion (an idle hero)
    assert report["characters"]["hero"]["images"] == 5
    from animlora.curation.summary import ending

    end = ending(project / "training_data" / "dataset_results.json")
    status = {r["character"]: r["status"] for r in end["characters"]}
    assert status == {"character_0": "small", "hero": "small", "character_1": "not character"}
    assert any(line.startswith("dataset.min_size auto = 4 (6 shots") for line in end["lines"])
    assert any(line.startswith("character_1: not a character") for line in end["lines"])
    page = (project / "training_data" / "dataset_report.html").read_text()
    assert "character_1 (not character): 5" in page and "dataset.min_size auto = 4" in page


def test_an_explicit_min_size_still_wins(project):
    run_stages(project, ["dataset"], {"dataset": {**SETTINGS["dataset"], "min_size": 6, "scenery_check": False}})
    report = json.loads((project / "training_data" / "dataset_results.json").read_text())
    assert report["characters"] == {}
    skipped = {s["character"]: s for s in report["skipped_characters"]}
    assert sorted(skipped) == ["character_0", "character_1", "hero"]  # scenery check off: all counted
    assert all(s["status"] == "no dataset" and "dataset.min_size 6 (set)" in s["reason"] for s in skipped.values())
    assert not (project / "training_data" / "character_0" / "metadata.json").exists()
    # the first run's sample plots of characters not built now are gone
    assert not list((project / "training_data").glob("report_samples_*.png"))


def _measure(tmp_path, rows, measures_of, vector_of) -> None:
    """Write each instance's segment measures and embedding into the synthetic project."""
    with Catalog(tmp_path / "catalog.sqlite") as cat:
        if "measures" not in {r[1] for r in cat.rows("PRAGMA table_info(instances)")}:
            cat.execute("ALTER TABLE instances ADD COLUMN measures TEXT")
        for iid, row in rows.items():
            cat.execute("UPDATE instances SET measures = ? WHERE id = ?", (json.dumps(measures_of(row)), iid))
            cat.execute("UPDATE embeddings SET vector = ? WHERE instance_id = ?",
                        (vector_of(row).astype("<f4").tobytes(), iid))


def test_a_prop_track_is_left_out_of_its_characters_dataset_with_its_reason(tmp_path):
    rows = make_project(tmp_path, {"character_0": 8}, shots=4)  # tracks t0_0 .. t3_0, two instances each
    rng = np.random.default_rng(3)
    core = rng.normal(size=32)

    def measures_of(row):  # t3_0: a prop; t2_0: a character standing idle
        prop, idle = row["track_id"] == "t3_0", row["track_id"] == "t2_0"
        return {"static": 1.0 if (prop or idle) else 0.3, "flat": 0.5 if prop else 0.2, "text": 0.0}

    _measure(tmp_path, rows, measures_of,
             lambda row: rng.normal(size=32) if row["track_id"] == "t3_0" else core + 0.3 * rng.normal(size=32))
    props = sorted(iid for iid, row in rows.items() if row["track_id"] == "t3_0")
    run_stages(tmp_path, ["dataset"], SETTINGS)
    report = json.loads((tmp_path / "training_data" / "dataset_results.json").read_text())
    assert report["characters"]["character_0"]["images"] == 6
    assert report["characters"]["character_0"]["left_out"] == {"not_character:prop": 2}
    meta = json.loads((tmp_path / "training_data" / "character_0" / "metadata.json").read_text())
    assert sorted(s["instance"] for s in meta["skipped"] if s["code"] == "not_character:prop") == props
    assert props[0] not in {r["instance_id"] for r in meta["images"]}
    from animlora.curation.summary import ending

    end = ending(tmp_path / "training_data" / "dataset_results.json")
    assert end["characters"][0]["left_out"] == {"not_character:prop": 2}
    # the check off: the prop's instances are candidates again
    run_stages(tmp_path, ["dataset"], {"dataset": {**SETTINGS["dataset"], "scenery_check": False}})
    meta = json.loads((tmp_path / "training_data" / "character_0" / "metadata.json").read_text())
    assert not any(s["code"] == "not_character:prop" for s in meta["skipped"])
    assert set(props) & {r["instance_id"] for r in meta["images"]}


def test_one_instance_picks_of_still_tracks_are_judged_with_their_tracks():
    """Six trees from six shots (cgi-bench seed 3): two members with a known ``static`` are too few
    to judge; with the other instances of their tracks (prefilter rejects) the cluster is still."""
    from animlora.curation.sources import Member
    from animlora.stages.dataset import DatasetStage

    def row(i, track, shot, static):
        return {"id": i, "track_id": track, "shot_id": shot, "measures": None if static is None else {"static": static}}

    group = [Member(f"m{k}", "character_2", "x.png", f"m{k}", shot_id=f"s{k}", track_id=f"t{k}") for k in range(6)]
    rows = [row("m0", "t0", "s0", 1.0), row("m1", "t1", "s1", 0.70)] + [row(f"m{k}", f"t{k}", f"s{k}", None)
                                                                        for k in range(2, 6)]
    rows += [row("d0", "t0", "s0", 1.0), row("d1", "t1", "s1", 1.0), row("d2", "t1", "s1", 1.0),
             row("d3", "t1", "s1", 0.99), row("other", "t9", "s1", 0.0)]
    assert not_character([r["measures"] for r in rows[:6]], shots=[r["shot_id"] for r in rows[:6]]) == ""
    by_track: dict[str, list] = {}
    for r in rows:
        by_track.setdefault(r["track_id"], []).append(r)
    evidence, shots = DatasetStage._with_mates(group, {r["id"]: r["measures"] for r in rows}, by_track)
    assert len(evidence) == 10 and shots.count("s1") == 4  # the members and their tracks' 4 others, not t9
    assert not_character(evidence, shots=shots).startswith("not_character:still (still in 2 of 2 shots, 5 of 6")


def test_a_piece_of_the_set_cut_off_a_character_is_left_out_and_the_character_kept(tmp_path):
    """The rock Buck leans on (the whole film, track s5_t1): segment cut it off his mask as the set
    (``cut_from_prop: false``; his side ``true``), it touches him and looks like him, so it lands in
    his cluster. The dataset leaves the piece out by the segment stage's own evidence."""
    rows = make_project(tmp_path, {"character_0": 8}, shots=4)
    rng = np.random.default_rng(5)
    core = rng.normal(size=32)

    def measures_of(row):  # one of a cut's two sides each; alike in every other way
        piece = row["track_id"] == "t3_0"
        return {"static": 1.0 if piece else 0.3, "prop": piece, "flat": 0.2, "text": 0.0, "cut_from_prop": not piece}

    _measure(tmp_path, rows, measures_of, lambda row: core + 0.3 * rng.normal(size=32))
    pieces = sorted(iid for iid, row in rows.items() if row["track_id"] == "t3_0")
    assert prop_pieces([{"id": i, "measures": json.dumps({"cut_from_prop": i not in pieces})} for i in rows]
                       ) == dict.fromkeys(pieces, PIECE_REASON)
    assert prop_pieces([{"id": i, "measures": {"cut_from_prop": False}} for i in pieces], {pieces[0]}) == {
        pieces[0]: PIECE_REASON}
    assert prop_pieces([{"id": "x", "measures": None}, {"id": "y", "measures": {"static": 1.0}}]) == {}
    run_stages(tmp_path, ["dataset"], SETTINGS)
    report = json.loads((tmp_path / "training_data" / "dataset_results.json").read_text())
    assert report["characters"]["character_0"]["images"] == 6
    assert report["characters"]["character_0"]["left_out"] == {"not_character:prop": 2}
    meta = json.loads((tmp_path / "training_data" / "character_0" / "metadata.json").read_text())
    assert sorted(s["instance"] for s in meta["skipped"] if s["code"] == "not_character:prop") == pieces
    assert not set(pieces) & {r["instance_id"] for r in meta["images"]}
