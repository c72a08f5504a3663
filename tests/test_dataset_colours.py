"""The dataset gate's colour rule (curation/gate.py ``foreign_colours``): a piece of a mask in colours
that the character's other images lack and another character's images share is another character
in the mask (the film: the butterfly on Buck's head), or the member is not this character at all."""

from __future__ import annotations

import json

import numpy as np
import pytest

from animlora.curation.gate import (
    COLOUR_REASON,
    colour_bins,
    colour_bins_and_edges,
    foreign_colours,
    off_track_colours,
)
from dataset_synth import blob, make_project, paint, run_stages, with_piece

WHITE, MAGENTA, ORANGE, GREEN, PALE_BLUE = (225, 225, 220), (230, 40, 200), (230, 120, 30), (40, 170, 40), (150, 190, 250)


def _bins(images: dict[str, tuple[str, np.ndarray]], gains=None):
    return [(iid, who, colour_bins(img, (gains or {}).get(iid))) for iid, (who, img) in images.items()]


def _cast() -> dict[str, tuple[str, np.ndarray]]:
    """Six white bodies (buck), six magenta ones (butterfly), six orange ones (rinky), four green (a
    cluster too small for a colour model)."""
    images = {}
    for k in range(6):
        images[f"buck_{k}"] = ("buck", blob(WHITE, 100 + 8 * k, shade=25 * (k % 3), seed=k))
        images[f"fly_{k}"] = ("butterfly", blob(MAGENTA, 60 + 6 * k, shade=20 * (k % 2), seed=10 + k))
        images[f"rinky_{k}"] = ("rinky", blob(ORANGE, 90 + 5 * k, shade=30 * (k % 3), seed=20 + k))
    for k in range(4):
        images[f"bird_{k}"] = ("bird", blob(GREEN, 70, seed=30 + k))
    return images


def test_another_characters_piece_in_a_mask_is_left_out_and_names_the_character() -> None:
    images = _cast()
    images["buck_fly"] = ("buck", with_piece(blob(WHITE, 120, seed=40), MAGENTA, 14))
    out = foreign_colours(_bins(images))
    assert list(out) == ["buck_fly"]
    assert out["buck_fly"].startswith(COLOUR_REASON + " (")
    assert "buck's other images lack and butterfly's have" in out["buck_fly"]


def test_a_member_that_is_another_character_is_left_out() -> None:
    images = _cast()
    images["rinky_in_buck"] = ("buck", blob(ORANGE, 110, shade=10, seed=41))
    assert list(foreign_colours(_bins(images))) == ["rinky_in_buck"]


@pytest.mark.parametrize("colour, radius", [(MAGENTA, 4), (GREEN, 14), (ORANGE, 14)])
def test_a_speck_or_a_colour_no_character_has_everywhere_is_kept(colour, radius) -> None:
    # a 4 px disc is ~0.5% of the mask (under COLOUR_PIECE); green is only the small bird
    # cluster's (no colour model); orange as a piece of a buck cluster that already has an orange
    # prop in 2 of its 7 images is its own colour too (support 2/6 >= COLOUR_OWN)
    images = _cast()
    images["buck_x"] = ("buck", with_piece(blob(WHITE, 120, seed=42), colour, radius))
    if colour == ORANGE:
        for k in (0, 1):
            images[f"buck_{k}"] = ("buck", with_piece(images[f"buck_{k}"][1], ORANGE, 12))
    assert foreign_colours(_bins(images)) == {}


def test_a_cluster_too_small_for_a_colour_model_is_neither_judged_nor_judge() -> None:
    images = _cast()
    images["bird_3"] = ("bird", with_piece(blob(GREEN, 70, seed=43), MAGENTA, 12))  # still 4 birds
    images["buck_bird"] = ("buck", blob(GREEN, 110, seed=44))  # green: only the 4-member bird's colour
    # the bird judges no one: buck_bird goes only as a member in colours buck's images never show
    out = foreign_colours(_bins(images))
    assert list(out) == ["buck_bird"] and "bird" not in out["buck_bird"] and out["buck_bird"].endswith("not buck)")


def test_a_member_in_colours_its_cluster_never_shows_is_left_out_whoever_has_them() -> None:
    # the film's bush in green-lit Buck's folder (0.24 of its mask in colours the cluster never shows) and
    # rock in Gimera's (0.17): colours no other cluster has throughout, so no piece is "another character's"
    bark = (110, 80, 50)
    images = _cast() | {"bush": ("buck", blob(bark, 110, shade=20, seed=50))}
    out = foreign_colours(_bins(images))
    assert list(out) == ["bush"]
    assert "% of the mask has colours that buck's other images (nearly) never show: not buck" in out["bush"]
    # a small piece (a held leaf, ~9% of the mask) is no stranger
    assert foreign_colours(_bins(_cast() | {"leaf": ("buck", with_piece(blob(WHITE, 120, seed=51), bark, 14))})) == {}
    # a quarter of the mask in a colour no other buck shows goes; seen in another buck's image (a
    # costume worn twice: support 1/7 among the others, over COLOUR_RARE) it is buck's own colour
    body = blob(WHITE, 120, seed=52)
    big = ("buck", with_piece(body, bark, 24))
    assert list(foreign_colours(_bins(_cast() | {"big": big}))) == ["big"]
    assert foreign_colours(_bins(_cast() | {"big": big, "again": ("buck", with_piece(blob(WHITE, 110, seed=53), bark, 22))})) == {}
    # the piece the dataset cuts from the member's alpha (foreign_pieces) is not counted
    piece = (big[1] != body).any(axis=-1)  # the disc (under COLOUR_SIDE: no resize)
    assert foreign_colours(_bins(_cast() | {"big": big}), cut={"big": piece}) == {}
    # a cluster where most members are such (a new outfit in every shot) has no palette to judge by
    outfits = [bark, (30, 60, 140), (200, 200, 40), (90, 20, 40), (20, 110, 90), (150, 150, 150)]
    images = _cast() | {f"buck_{k}": ("buck", with_piece(blob(WHITE, 100 + 8 * k, seed=k), outfits[k], 24))
                        for k in range(6)}
    assert foreign_colours(_bins(images)) == {}


def test_a_light_that_only_one_of_a_names_clusters_shows_is_that_characters_own() -> None:
    # the film named: Buck's clusters (one light set-up each) share his name and folder; the purple-lit
    # one (9 of his 177 members) showed colours his other images lack and the bird's and the
    # butterfly's have, so 6 whole Bucks of it went as "another character in this mask" (none did
    # while it was a folder of its own). Judged by its own cluster too, they stay; a butterfly on a
    # day-lit Buck still goes
    images = _cast()
    for k in range(6, 40):
        images[f"buck_{k}"] = ("buck", blob(WHITE, 96 + k, shade=25 * (k % 3), seed=k))
    for k in range(5):
        images[f"dusk_{k}"] = ("buck", blob(MAGENTA, 100 + 6 * k, shade=20 * (k % 2), seed=60 + k))
    images["buck_fly"] = ("buck", with_piece(blob(WHITE, 120, seed=70), MAGENTA, 24))
    groups = {iid: "c_dusk" if iid.startswith("dusk") else "c_day" for iid, (who, _) in images.items() if who == "buck"}
    before = foreign_colours(_bins(images))  # one cluster of 46: magenta in 5 of the others
    assert sorted(before) == ["buck_fly", *(f"dusk_{k}" for k in range(5))]
    assert all("buck's other images lack and butterfly's have" in why for why in before.values())
    assert list(foreign_colours(_bins(images), groups=groups)) == ["buck_fly"]
    # a light cluster too small for a colour model of its own (COLOUR_MEMBERS) is judged by the name's
    small = {i: g for i, g in groups.items() if i not in ("dusk_3", "dusk_4")}
    fewer = {i: v for i, v in images.items() if i not in ("dusk_3", "dusk_4")}
    assert sorted(foreign_colours(_bins(fewer), groups=small)) == ["buck_fly", "dusk_0", "dusk_1", "dusk_2"]
    # a cluster of masks with the same thing fused (seed 6: the fox with a tree crown behind him) does
    # not vouch for the thing: those members are mostly in the name's usual colours (COLOUR_LIGHT)
    fused = {f"fused_{k}": ("buck", with_piece(blob(WHITE, 110 + 4 * k, seed=80 + k), MAGENTA, 20)) for k in range(5)}
    with_fused = {i: v for i, v in images.items() if not i.startswith("dusk")} | fused
    fused_groups = {i: "c_fused" if i.startswith("fused") else "c_day" for i, (who, _) in with_fused.items() if who == "buck"}
    assert sorted(foreign_colours(_bins(with_fused), groups=fused_groups)) == ["buck_fly", *sorted(fused)]


def test_a_member_in_colours_no_other_frame_of_its_track_shows_is_left_out() -> None:
    # the film's shot 90: the tracker passed a trap's track on to Buck, and the trap's frame went with
    # Buck's images (0.24 of its mask in colours no other frame of the track shows); f7338: Rinky in
    # Frank's mask (0.19). A track's own frames agree in colour (the film's dataset images 0.084 or less)
    bark = (110, 80, 50)
    bodies = [(f"buck_{k}", "t1", colour_bins(blob(WHITE, 100 + 6 * k, shade=20 * (k % 2), seed=k)))
              for k in range(5)]
    trap = ("trap", "t1", colour_bins(blob(bark, 110, seed=9)))
    out = off_track_colours([*bodies, trap])
    assert list(out) == ["trap"] and out["trap"].startswith(COLOUR_REASON + " (")
    assert "no other frame of its track shows (5 frames)" in out["trap"]
    # frames in the noise witness the track's colours but are not judged
    assert list(off_track_colours([trap], bodies)) == ["trap"]
    assert off_track_colours(bodies[:1], [*bodies[1:], trap]) == {}
    # too few other frames to judge (TRACK_MATES), or another track
    assert off_track_colours([*bodies[:3], trap]) == {}
    assert off_track_colours([*bodies, ("trap", "t2", trap[2])]) == {}
    # a held piece the dataset cuts from the alpha is not counted
    body = blob(WHITE, 120, seed=5)
    held = with_piece(body, bark, 24)
    piece = (held != body).any(axis=-1)
    assert list(off_track_colours([*bodies, ("held", "t1", colour_bins(held))])) == ["held"]
    assert off_track_colours([*bodies, ("held", "t1", colour_bins(held))], cut={"held": piece}) == {}
    # two strangers of seven (under TRACK_STRANGERS: most frames agree) both go; a track whose frames
    # differ throughout (three strangers of eight) judges none
    pair = [*bodies, trap, ("leaf", "t1", colour_bins(blob((40, 140, 40), 110, seed=11)))]
    assert sorted(off_track_colours(pair)) == ["leaf", "trap"]
    assert off_track_colours([*pair, ("sky", "t1", colour_bins(blob((40, 60, 170), 110, seed=12)))]) == {}


def test_a_scenery_clusters_colours_mark_a_piece_of_the_set_and_its_members_are_not_judged() -> None:
    # a bush fused behind buck (cgi-bench seed 3: the robot with a bush in one mask); the bushes'
    # cluster is scenery: its colours are "another cluster's", its own odd member is not judged
    images = _cast()
    for k in range(6):
        images[f"bush_{k}"] = ("bushes", blob(GREEN, 80 + 6 * k, shade=15, seed=60 + k))
    images["buck_bush"] = ("buck", with_piece(blob(WHITE, 120, seed=46), GREEN, 16))
    images["bush_fly"] = ("bushes", with_piece(blob(GREEN, 90, seed=47), MAGENTA, 14))
    out = foreign_colours(_bins(images), scenery=["bushes"])
    assert list(out) == ["buck_bush"]
    assert "bushes's have" in out["buck_bush"] and "the set (a cluster taken for scenery)" in out["buck_bush"]
    assert sorted(foreign_colours(_bins(images))) == ["buck_bush", "bush_fly"]  # bushes judged as a character


def test_the_shots_light_is_divided_out_before_colours_are_compared() -> None:
    # a white body under a blue night light is as pale blue as the ghost: without the shot's gain it
    # reads as the ghost; with the gain that takes the blue cast out it is white again
    images = _cast()
    for k in range(6):
        images[f"ghost_{k}"] = ("ghost", blob(PALE_BLUE, 90 + 4 * k, seed=50 + k))
    images["buck_night"] = ("buck", blob(PALE_BLUE, 115, seed=45))
    assert list(foreign_colours(_bins(images))) == ["buck_night"]
    lin = (np.asarray(PALE_BLUE) / 255.0) ** 2.2
    gain = (lin.mean() / lin).tolist()  # the cast divided out, grey kept (white stays white)
    assert foreign_colours(_bins(images, {"buck_night": gain})) == {}


SKY = (170, 195, 245)


def _tinted(body: np.ndarray, colour, weight) -> np.ndarray:
    """``body`` washed towards ``colour`` by ``weight`` (a number, or per pixel), the background kept."""
    out = body.astype(np.float32)
    weight = np.broadcast_to(np.asarray(weight, np.float32), body.shape[:2])[..., None]
    out[..., :3] = out[..., :3] * (1 - weight) + np.asarray(colour, np.float32) * weight
    out[body[..., 3] == 0, :3] = 0
    return out.astype(np.uint8)


def _sky_lit(body: np.ndarray, sigma: float) -> np.ndarray:
    """``body`` lit by the sky on top of its head: a soft spot of ``SKY`` that fades into the body."""
    size = body.shape[0]
    yy, xx = np.mgrid[:size, :size]
    return _tinted(body, SKY, np.exp(-((yy - size * 0.28) ** 2 + (xx - size // 2) ** 2) / (2 * sigma**2)))


def _lit_cast() -> dict[str, tuple[str, np.ndarray]]:
    """Buck (white, two of his images in a cool light) and a boy in the sky's blue."""
    images = {}
    for k in range(6):
        images[f"buck_{k}"] = ("buck", blob(WHITE, 100 + 8 * k, shade=25 * (k % 3), seed=k))
        images[f"boy_{k}"] = ("boy", blob(SKY, 90 + 6 * k, shade=20 * (k % 3), seed=10 + k))
    for j, weight in enumerate((0.3, 0.5)):
        images[f"buck_cool_{j}"] = ("buck", _tinted(blob(WHITE, 110, shade=10 * j, seed=60 + j), SKY, weight))
    return images


@pytest.mark.parametrize("sigma", [14, 18])
def test_the_body_in_a_light_its_other_images_lack_is_no_piece_of_another_character(sigma) -> None:
    # cgi-bench seed 3's bunny at sunset (the top of his head lit by the sky), the film's Buck from behind
    # (his back lit yellow): a piece in the boy's colours, but the shading runs on into the body with no
    # edge and stays near its colour; the same colours as a disc with an edge are the boy's piece
    images = _lit_cast()
    images["buck_lit"] = ("buck", _sky_lit(blob(WHITE, 120, seed=40), sigma))
    images["buck_boy"] = ("buck", with_piece(blob(WHITE, 120, seed=41), SKY, 12))
    bins = _bins(images)
    edges = {iid: colour_bins_and_edges(img)[1] for iid, (_, img) in images.items()}
    assert sorted(foreign_colours(bins)) == ["buck_boy", "buck_lit"]  # by colours alone
    out = foreign_colours(bins, edges=edges)
    assert list(out) == ["buck_boy"] and "boy's have" in out["buck_boy"]


def test_the_dataset_leaves_the_member_out_with_its_reason_and_either_check_off_keeps_it(tmp_path) -> None:
    rows = make_project(tmp_path, {"character_0": 8, "character_1": 6}, shots=4)
    group = sorted(iid for iid, row in rows.items() if row["track_id"].endswith("_0"))[3]
    paint(tmp_path, rows, lambda row: (WHITE, MAGENTA) if row["id"] == group else
           WHITE if row["track_id"].endswith("_0") else MAGENTA)
    settings = {"dataset": {"target_size": 12, "small_size": 4, "resolution": 512, "min_bucket": 128,
                            "max_bucket": 1024, "report": True}}
    run_stages(tmp_path, ["dataset"], settings)
    report = json.loads((tmp_path / "training_data" / "dataset_results.json").read_text())
    assert report["characters"]["character_0"]["left_out"].get(COLOUR_REASON) == 1
    meta = json.loads((tmp_path / "training_data" / "character_0" / "metadata.json").read_text())
    skipped = [s for s in meta["skipped"] if s["code"] == COLOUR_REASON]
    assert [s["instance"] for s in skipped] == [group]
    assert group not in {r["instance_id"] for r in meta["images"]}
    assert "character_1's have" in skipped[0]["reason"]
    # one character's dataset alone: the other clusters' colours still count
    run_stages(tmp_path, ["dataset"], {"dataset": {**settings["dataset"], "character": "character_0"}})
    meta = json.loads((tmp_path / "training_data" / "character_0" / "metadata.json").read_text())
    assert [s["instance"] for s in meta["skipped"] if s["code"] == COLOUR_REASON] == [group]
    for off in ({"colour_check": False}, {"scenery_check": False}):
        run_stages(tmp_path, ["dataset"], {"dataset": {**settings["dataset"], **off}})
        meta = json.loads((tmp_path / "training_data" / "character_0" / "metadata.json").read_text())
        assert not any(s["code"] == COLOUR_REASON for s in meta["skipped"])
        assert group in {r["instance_id"] for r in meta["images"]}


def test_the_dataset_keeps_a_member_whose_odd_colours_are_its_own_body_in_another_light(tmp_path) -> None:
    from animlora.io.images import write_image

    rows = make_project(tmp_path, {"character_0": 8, "character_1": 6}, shots=4)
    own = sorted(iid for iid, row in rows.items() if row["track_id"].endswith("_0"))
    cool = {own[1]: _tinted_colour(0.3), own[2]: _tinted_colour(0.5)}
    paint(tmp_path, rows, lambda row: cool.get(row["id"], WHITE) if row["track_id"].endswith("_0") else SKY)
    lit = own[3]
    write_image(tmp_path / "segmentation" / rows[lit]["path"], _sky_lit(blob(WHITE, 140, seed=3), 17))
    run_stages(tmp_path, ["dataset"], {"dataset": {"target_size": 12, "small_size": 4, "resolution": 512,
                                                   "min_bucket": 128, "max_bucket": 1024}})
    meta = json.loads((tmp_path / "training_data" / "character_0" / "metadata.json").read_text())
    assert not [s for s in meta["skipped"] if s["code"] == COLOUR_REASON]
    assert lit in {r["instance_id"] for r in meta["images"]}


def _tinted_colour(weight: float) -> tuple[int, ...]:
    return tuple(round(w * (1 - weight) + s * weight) for w, s in zip(WHITE, SKY, strict=True))


def test_the_colour_check_is_kept_until_a_cut_out_or_a_cluster_changes(tmp_path, monkeypatch) -> None:
    """An `animlora run` with nothing new reads no cut-out for the colour check (the whole film's
    341 took 4.6 s of each run); a cut-out drawn again is judged again."""
    import animlora.curation.gate as gate

    rows = make_project(tmp_path, {"character_0": 8, "character_1": 6}, shots=4)
    group = sorted(iid for iid, row in rows.items() if row["track_id"].endswith("_0"))[3]
    paint(tmp_path, rows, lambda row: (WHITE, MAGENTA) if row["id"] == group else
           WHITE if row["track_id"].endswith("_0") else MAGENTA)
    settings = {"dataset": {"target_size": 12, "small_size": 4, "resolution": 512, "min_bucket": 128,
                            "max_bucket": 1024}}
    judged = []
    real = gate._judged_lab  # every cut-out the colour check reads is fitted here, once
    monkeypatch.setattr(gate, "_judged_lab", lambda *a, **k: judged.append(1) or real(*a, **k))

    def left_out() -> list[str]:
        meta = json.loads((tmp_path / "training_data" / "character_0" / "metadata.json").read_text())
        return [s["instance"] for s in meta["skipped"] if s["code"] == COLOUR_REASON]

    run_stages(tmp_path, ["dataset"], settings)
    assert left_out() == [group] and len(judged) == 14
    judged.clear()
    run_stages(tmp_path, ["dataset"], settings)
    assert judged == [] and left_out() == [group]
    paint(tmp_path, {group: rows[group]}, lambda row: WHITE)  # the piece painted out
    run_stages(tmp_path, ["dataset"], settings)
    assert len(judged) == 14 and left_out() == []


def test_a_named_characters_light_keeps_its_images_in_the_dataset(tmp_path) -> None:
    """The stage end to end: a name joining two clusters of the base clustering (``cluster_assignments``),
    one of them lit magenta like the butterfly: its images are written, as they were while that light
    was a folder of its own; judged against the whole name they went as another character's colours."""
    from animlora.catalog import Catalog

    rows = make_project(tmp_path, {"buck": 30, "butterfly": 6}, shots=6)
    bucks = sorted(iid for iid, row in rows.items() if row["track_id"].endswith("_0"))
    dusk = sorted(iid for iid in bucks if rows[iid]["shot_id"] == "v1_s5")  # one shot's light: 5 frames
    paint(tmp_path, rows, lambda row: MAGENTA if row["id"] in dusk or row["track_id"].endswith("_1") else WHITE)
    settings = {"dataset": {"target_size": 40, "small_size": 4, "resolution": 512, "min_bucket": 128,
                            "max_bucket": 1024, "min_size": 4}}

    def left_out() -> list[str]:
        meta = json.loads((tmp_path / "training_data" / "buck" / "metadata.json").read_text())
        return sorted(s["instance"] for s in meta["skipped"] if s["code"] == COLOUR_REASON)

    run_stages(tmp_path, ["dataset"], settings)  # no base clustering recorded: one cluster of 30
    assert left_out() == dusk
    cat = Catalog(tmp_path / "catalog.sqlite")
    cat.upsert("cluster_assignments", [{"instance_id": iid, "cluster_id": "c_dusk" if iid in dusk else "c_day",
                                        "distance": 0.1} for iid in bucks])
    cat.close()
    run_stages(tmp_path, ["dataset"], settings, force=True)  # (the cluster stage's run would redo it)
    assert left_out() == []
    written = {p.stem for p in (tmp_path / "training_data" / "buck" / "images").glob("*.png")}
    assert set(dusk) <= written
