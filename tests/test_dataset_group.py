"""The dataset gate's group check (curation/gate.py ``group_members``): a mask that is two
characters is left out, found from what the shot shows in its other frames."""

from __future__ import annotations

import json

import pytest

from animlora.curation.gate import GROUP_REASON, group_members


def _row(frame: int, track: str, box: tuple[int, int, int, int], prop: bool = False, mixed: bool = False,
         shot: str = "v_s1") -> dict:
    x, y, w, h = box
    measures = {"prop": prop, "static": 0.9 if prop else 0.3} | ({"mixed": True} if mixed else {})
    return {"id": f"v_f{frame}_{track}", "shot_id": shot, "frame_id": f"v_f{frame}", "track_id": f"{shot}_{track}",
            "bbox": json.dumps([x, y, w, h]), "area_fraction": w * h * 0.7 / (1280 * 720),
            "measures": json.dumps(measures)}


def _shot() -> list[dict]:
    """Frames 10-12: a (track a) and b (track b) apart, side by side; frames 20-21: one mask over
    both (track a), b gone; frame 30: a alone, a little larger (it came closer)."""
    rows = []
    for f in (10, 11, 12):
        rows += [_row(f, "a", (200, 100, 300, 400)), _row(f, "b", (520, 150, 200, 300))]
    rows += [_row(20, "a", (200, 100, 520, 400)), _row(21, "a", (205, 100, 510, 410))]
    rows += [_row(30, "a", (200, 100, 330, 420))]
    return rows


def test_a_mask_that_took_in_its_neighbour_is_a_group() -> None:
    out = group_members(_shot())
    assert sorted(out) == ["v_f20_a", "v_f21_a"]
    assert all(why.startswith(GROUP_REASON + " (") for why in out.values())


def test_only_the_wanted_members_are_judged() -> None:
    assert sorted(group_members(_shot(), {"v_f21_a", "v_f30_a"})) == ["v_f21_a"]


def test_no_partner_seen_apart_no_group() -> None:
    # the same wide masks, but the shot never shows the track beside a partner
    rows = [r for r in _shot() if "_b" not in r["id"]]
    assert group_members(rows) == {}


def test_a_still_partner_or_a_still_reference_is_no_evidence() -> None:
    # a rock beside the character in the reference frames: a character growing over a rock's place is
    # the camera or the character coming closer, and a still "track seen alone" is a prop
    rows = _shot()
    assert group_members([r | ({"measures": json.dumps({"prop": True})} if "_b" in r["id"] else {})
                          for r in rows]) == {}
    assert group_members([r | ({"measures": json.dumps({"prop": True})} if r["id"].endswith(("10_a", "11_a", "12_a"))
                               else {}) for r in rows]) == {}


def test_partner_still_in_the_frame_is_no_group() -> None:
    # b is there, apart, in the wide frame: the wide mask is the track alone
    rows = _shot() + [_row(20, "b", (760, 150, 200, 300))]
    assert "v_f20_a" not in group_members(rows)


def test_a_mask_the_segment_stage_marked_mixed_is_a_group() -> None:
    rows = [_row(5, "a", (0, 0, 100, 100), mixed=True, shot="v_s2")]
    assert list(group_members(rows)) == ["v_f5_a"]


def _grown(scale: float) -> list[dict]:
    """Frames 10-12: track a (300x400) beside track b (200x300); frame 20: track a's mask widened to
    ``scale`` x its area over b's place, b gone."""
    rows = []
    for f in (10, 11, 12):
        rows += [_row(f, "a", (200, 100, 300, 400)), _row(f, "b", (520, 150, 200, 300))]
    return rows + [_row(20, "a", (200, 100, round(300 * scale), 400))]


def test_a_partner_clustered_as_another_character_needs_less_growth() -> None:
    # 1.4x: under GROUP_GROW (1.55), over GROUP_GROW_KNOWN (1.3) -- a group only when b is known to be
    # another character (film shot 35: Frank and Rinky in one mask at 1.34-1.53x)
    rows = _grown(1.4)
    assert group_members(rows) == {}
    other = {r["id"]: ("frank" if r["track_id"].endswith("_a") else "rinky") for r in rows}
    out = group_members(rows, characters=other)
    assert list(out) == ["v_f20_a"]
    assert "(clustered as rinky)" in out["v_f20_a"]
    # b in the same cluster as a (a piece of the same character, Buck's head beside his body): no group
    same = dict.fromkeys(other, "frank")
    assert group_members(rows, characters=same) == {}
    # 1.2x: under both bounds
    assert group_members(_grown(1.2), characters={r["id"]: other.get(r["id"], "frank") for r in _grown(1.2)}) == {}


def test_a_small_partner_clustered_as_another_character_counts() -> None:
    # the film's shot 23: Frank (track b), a fifth of whole Buck's area (track a), beside him, later
    # on his head in one mask, 1.4x Buck's lone area. Under GROUP_PARTNER (0.25) of the track's area
    # an unknown partner is a speck or a leaf; one clustered as another character is no speck
    rows = []
    for f in (10, 11, 12):
        rows += [_row(f, "a", (200, 100, 500, 400)), _row(f, "b", (720, 150, 100, 400))]
    rows += [_row(20, "a", (200, 100, 700, 400))]
    assert group_members(rows) == {}
    assert group_members(rows, characters={r["id"]: "buck" for r in rows}) == {}  # a piece of Buck
    who = {r["id"]: ("buck" if r["track_id"].endswith("_a") else "frank") for r in rows}
    out = group_members(rows, characters=who)
    assert list(out) == ["v_f20_a"] and "(clustered as frank)" in out["v_f20_a"]
    # a partner under GROUP_PARTNER_KNOWN (0.15) of the track's area: still no evidence
    tiny = [r | {"bbox": json.dumps([720, 150, 50, 400]), "area_fraction": 50 * 400 * 0.7 / (1280 * 720)}
            if r["track_id"].endswith("_b") else r for r in rows]
    assert group_members(tiny, characters=who) == {}


def test_a_partner_clustered_as_another_character_may_stand_farther_off() -> None:
    # cgi-bench seed 5, shot 3: the blue boy (track b) a little farther from the bunny (track a) than
    # GROUP_NEAR (0.15 x sqrt of a's box area: 52 px here) where the shot shows them apart, one mask
    # over both before. Known to be another character, GROUP_NEAR_KNOWN (0.25: 87 px) holds
    rows = []
    for f in (10, 11, 12):
        rows += [_row(f, "a", (200, 100, 300, 400)), _row(f, "b", (570, 150, 200, 300))]  # 70 px apart
    rows += [_row(20, "a", (200, 100, 570, 400))]
    assert group_members(rows) == {}
    who = {r["id"]: ("bunny" if r["track_id"].endswith("_a") else "boy") for r in rows}
    out = group_members(rows, characters=who)
    assert list(out) == ["v_f20_a"] and "(clustered as boy)" in out["v_f20_a"]
    # farther still: no evidence, known or not
    far = [r | {"bbox": json.dumps([620, 150, 200, 300])} if r["track_id"].endswith("_b") else r for r in rows]
    assert group_members(far, characters=who) == {}


@pytest.mark.parametrize("idle", ["a", "b"])
def test_an_idle_track_or_partner_beside_another_character_is_evidence(idle: str) -> None:
    # a (the track, film shot 29) or b (the partner: Frank sitting still beside Buck in the film's
    # shot 23, then on his head in one mask) seen idle (segment's prop) in the reference frames: no
    # evidence while b's identity is unknown or the same cluster as a (a still rock, a still piece of
    # one character); evidence when b is clustered as another character
    rows = [r | ({"measures": json.dumps({"prop": True})} if r["id"].endswith((f"10_{idle}", f"11_{idle}", f"12_{idle}"))
                 else {}) for r in _grown(1.7)]
    assert group_members(rows) == {}
    assert group_members(rows, characters={r["id"]: "frank" for r in rows}) == {}
    other = {r["id"]: ("frank" if r["track_id"].endswith("_a") else "rinky") for r in rows}
    out = group_members(rows, characters=other)
    assert list(out) == ["v_f20_a"] and "(clustered as rinky)" in out["v_f20_a"]


def _walked_over(idle_box: tuple[int, int, int, int] = (900, 150, 200, 300)) -> list[dict]:
    """cgi-bench seed 5, shot 17: the bunny (track a) sits still at the right, the fox (track b)
    walks at the left, far from it; later one mask over both keeps the bunny's track, the fox's
    track ends."""
    rows = []
    for f in (10, 11, 12):
        rows += [_row(f, "a", idle_box, prop=True), _row(f, "b", (100, 150, 200, 300))]
    return rows + [_row(20, "a", (600, 150, 400, 300))]


def test_a_mask_clustered_as_the_character_that_walked_into_another_tracks_object_is_a_group() -> None:
    rows = _walked_over()
    fox = {"v_f20_a": "fox"} | {r["id"]: "fox" for r in rows if r["track_id"].endswith("_b")}
    # the frame-20 mask is the fox's colours (clustered as the fox) on the bunny's track, twice its
    # area, and the fox's own track is gone: the bunny (in no cluster) and the fox in one mask,
    # although the two were never near each other nor still where the mask is in the frames apart
    out = group_members(rows, characters=fox)
    assert list(out) == ["v_f20_a"] and "v_s1_b" in out["v_f20_a"]
    assert group_members(rows) == {}  # nothing clustered: no evidence
    # the track's object alone clustered as the fox too: a piece of the same character, no evidence
    assert group_members(rows, characters=fox | {r["id"]: "fox" for r in rows}) == {}
    # the track's object a speck beside the character (a leaf the tracker passed on to the
    # butterfly's close-up on the film): the mask is the character, no group
    small = _walked_over((900, 150, 60, 100))
    assert group_members(small, characters={"v_f20_a": "fox"} | {r["id"]: "fox" for r in small
                                                                  if r["track_id"].endswith("_b")}) == {}


def _two_shots(anchor_dx: int = 0, shot: str = "v_s3") -> tuple[list[dict], dict[str, str]]:
    """Shot 1: a beside b, with c standing at the right; ``shot``: one mask over a and b in every frame,
    c where it stood (``anchor_dx`` pixels to the right: the camera moved)."""
    rows = []
    for f in (10, 11):
        rows += [_row(f, "a", (200, 100, 300, 400)), _row(f, "b", (520, 150, 200, 300)),
                 _row(f, "c", (900, 300, 240, 280))]
    for f in (40, 41):
        rows += [_row(f, "a", (200, 100, 520, 400), shot=shot), _row(f, "c", (900 + anchor_dx, 300, 240, 280), shot=shot)]
    who = {r["id"]: {"a": "frank", "b": "rinky", "c": "gimera"}[r["track_id"][-1]] for r in rows}
    return rows, who


def test_a_shot_grouped_throughout_is_judged_by_a_nearby_shot_framed_alike() -> None:
    rows, who = _two_shots()
    assert group_members(rows) == {}  # no character known: nothing links the shots
    out = group_members(rows, characters=who)
    assert sorted(out) == ["v_f40_a", "v_f41_a"]
    assert "framed alike" in out["v_f40_a"] and "rinky" in out["v_f40_a"]
    # the neighbour not where it stood (another framing), or the other shot too far away: no evidence
    assert group_members(*_two_shots(anchor_dx=220)[:1], characters=_two_shots(anchor_dx=220)[1]) == {}
    far, who_far = _two_shots(shot="v_s30")
    assert group_members(far, characters=who_far) == {}
    # b's character present in the grouped frame: the wide mask is a alone
    rows_b = rows + [_row(40, "b", (760, 60, 120, 200), shot="v_s3")]
    assert "v_f40_a" not in group_members(rows_b, characters=who | {"v_f40_b": "rinky"})
