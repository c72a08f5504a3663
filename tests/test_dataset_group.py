"""The dataset gate's group check (curation/gate.py ``group_members``): a mask that is two
characters is left out, found from what the shot shows in its other frames."""

from __future__ import annotations

import json

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
