"""A padded cut-out is placed at its padded box (it was squeezed into the tight box: the film's
dataset alpha IoU 0.66-0.91 with the segment mask), and another object's piece is cut from the alpha."""

import numpy as np

from animlora.backends.segmentation.cutouts import cutout_box, padded_box
from animlora.curation import gate
from animlora.curation.images import cut_piece, mask_in_canvas, pack_piece, unpack_piece


def _scene(fw=320, fh=200, bbox=(40, 30, 100, 80), padding=0.05):
    """A frame-sized mask with an ellipse in ``bbox`` and its cut-out around the padded box."""
    import cv2

    mask = np.zeros((fh, fw), np.uint8)
    x, y, w, h = bbox
    cv2.ellipse(mask, (x + w // 2, y + h // 2), (w // 2, h // 2), 0, 0, 360, 255, -1)
    bx, by, bw, bh = padded_box(bbox, padding, fh, fw)
    cut = np.zeros((bh, bw, 4), np.uint8)
    cut[..., 3] = mask[by:by + bh, bx:bx + bw]
    return mask, cut


def test_padded_cutout_is_placed_where_it_was_cut():
    for bbox in [(40, 30, 100, 80), (0, 0, 120, 90), (230, 120, 90, 80)]:  # inside, at two frame corners
        mask, cut = _scene(bbox=bbox)
        assert cutout_box(bbox, cut.shape, (320, 200)) == padded_box(bbox, 0.05, 200, 320)
        placed = mask_in_canvas(cut, (320, 200), bbox)
        assert np.array_equal(placed > 127, mask > 127)


def test_tight_and_full_frame_cutouts_keep_their_placement():
    assert cutout_box((-20, 10, 60, 40), (40, 60, 4), (320, 200)) == (-20, 10, 60, 40)  # its box, past the edge
    assert cutout_box((5, 5, 10, 10), (200, 320, 4), (320, 200)) == (0, 0, 320, 200)
    assert cutout_box(None, (40, 60, 4), (320, 200)) is None


def test_piece_packs_and_is_cut_at_its_place():
    piece = np.zeros((20, 30), bool)
    piece[5:10, 20:30] = True
    assert np.array_equal(unpack_piece(pack_piece(piece)), piece)
    rgba = np.full((40, 60, 4), 255, np.uint8)  # the cut-out, twice the piece's size
    out = cut_piece(rgba, piece, (100, 50, 60, 40))
    assert out[..., 3][12:18, 42:58].max() == 0 and out[..., 3][30:, :30].min() == 255
    # the same piece on an enhanced crop of a larger region at 3x
    enhanced = np.full((3 * 60, 3 * 90, 4), 255, np.uint8)  # region (85, 40, 90, 60)
    out = cut_piece(enhanced, piece, (100, 50, 60, 40), (85, 40, 90, 60))
    ys, xs = np.nonzero(out[..., 3] == 0)
    assert abs((xs.mean() / 3 + 85) - (100 + 50)) < 3 and abs((ys.mean() / 3 + 40) - (50 + 15)) < 3


def test_what_the_cut_leaves_apart_in_the_image_goes_with_it():
    """Film f3052 and f3649: the piece judged at a smaller size, cut from the image at its own size (grown
    by a pixel of the piece), parts the far end of the object from the body; the remains there stay
    unless the image's own rule takes them: another colour goes, the body's colour stays."""
    rgba = np.zeros((60, 60, 4), np.uint8)
    rgba[20:60, 0:60] = (235, 235, 235, 255)  # the body, white
    rgba[10:20, 30:40] = (170, 60, 200, 255)  # the object, purple: judged at half size below
    rgba[2:10, 32:38] = (170, 60, 200, 255)  # its far end, beyond the piece judged: parted by the grown cut
    rgba[10:20, 5:15] = (235, 235, 235, 255)  # an ear, white, on the body
    piece = np.zeros((30, 30), bool)
    piece[5:10, 15:20] = True  # the object's rows 10-20 at half size
    out = cut_piece(rgba, piece, (0, 0, 60, 60))
    assert out[..., 3][2:10, 32:38].max() == 0  # the far end went with the cut
    assert (out[..., 3][20:60, :] == 255).sum() >= 0.9 * 40 * 60 and out[..., 3][10:20, 5:15].min() == 255
    rgba[2:10, 32:38] = (235, 235, 235, 255)  # the body's colour beyond the cut (a hand past a held stick): it stays
    out = cut_piece(rgba, piece, (0, 0, 60, 60))
    assert out[..., 3][3:8, 33:37].min() == 255


def test_a_piece_judged_small_is_cut_along_a_curve_not_a_staircase():
    """A piece judged at a sixth of the image's size (a wing on the film's enhanced crops): enlarged by
    nearest sampling, its diagonal edge was a staircase of 6-pixel steps in the dataset's alpha; now the
    cut's edge moves by at most two pixels a row. A lone piece pixel is still cut (smoothing keeps it)."""
    piece = np.zeros((20, 20), bool)
    piece[np.tril_indices(20)] = True  # a 45-degree edge: the lower-left triangle
    rgba = np.full((120, 120, 4), 255, np.uint8)
    out = cut_piece(rgba, piece, (0, 0, 120, 120))
    cut = out[..., 3] == 0
    edge = np.array([int(np.argmin(row)) if not row.all() else 120 for row in cut[10:110]])  # first kept column
    steps = np.abs(np.diff(edge))
    assert steps.max() <= 2 and (steps > 0).mean() > 0.6  # a slope, one row at a time
    lone = np.zeros((20, 20), bool)
    lone[10, 10] = True
    out = cut_piece(rgba, lone, (0, 0, 120, 120))
    assert out[60:66, 60:66, 3].max() == 0 and out[..., 3].min() == 0 and (out[..., 3] == 0).sum() < 20 * 20


def test_the_thin_rim_a_cut_leaves_around_its_hole_goes_with_it():
    """Film f5087: the wing Rinky holds, judged at 160 px, is cut from the 1024 px image; its soft
    outline beyond the piece stayed as a thin line around the hole. What the cut leaves thinner than a
    piece pixel near it goes too; the body's thin parts farther away stay."""
    rgba = np.zeros((120, 120, 4), np.uint8)
    rgba[60:120, :, :] = (200, 110, 50, 255)  # the body
    rgba[20:60, 40:80] = (210, 60, 220, 255)  # the wing above it
    rgba[10:12, 30:90, :] = (230, 200, 235, 60)  # its soft outline, 2 px wide, 8 px beyond the piece
    rgba[10:60, 30:32, :] = (230, 200, 235, 60)
    rgba[30:60, 4:6] = (200, 110, 50, 255)  # a thin part of the body (a whisker) far from the wing
    piece = np.zeros((20, 20), bool)
    piece[3:10, 7:13] = True  # the wing at a sixth of the size
    out = cut_piece(rgba, piece, (0, 0, 120, 120))
    assert out[20:60, 40:80, 3].max() == 0  # the wing
    assert out[10:12, 30:90, 3].max() == 0 and out[12:57, 30:32, 3].max() == 0  # its outline (to the body)
    assert out[30:60, 4:6, 3].min() == 255 and out[75:, :, 3].min() == 255  # the whisker, the body


def _orange(seed: int, blob: int = 0, alpha: int = 255) -> np.ndarray:
    """An RGBA orange figure; with a magenta blob of radius ``blob`` and ``alpha`` on its outline (a
    held butterfly)."""
    import cv2

    rng = np.random.default_rng(seed)
    img = np.zeros((80, 60, 4), np.uint8)
    cv2.ellipse(img, (30, 45), (18, 30), 0, 0, 360, (200, 110, 50, 255), -1)
    img[..., :3] = np.clip(img[..., :3].astype(int) + rng.integers(-6, 7, img[..., :3].shape), 0, 255)
    if blob:
        cv2.circle(img, (48, 20), blob, (210, 60, 220, alpha), -1)
    return img


def _figure(hue_piece: bool, seed: int):
    """(mask, bins) of an orange figure; with a magenta blob on its outline (a held butterfly)."""
    return gate.colour_bins(_orange(seed, 9 if hue_piece else 0))


def _alone(seed: int):
    import cv2

    img = np.zeros((40, 40, 4), np.uint8)
    cv2.circle(img, (20, 20), 15, (210, 60, 220, 255), -1)
    return gate.colour_bins(img)


def test_a_held_object_seen_alone_elsewhere_is_cut_and_the_figure_is_not():
    members = [(f"a{i}", "rinky", _figure(i < 3, i)) for i in range(9)]  # 3 of 9 hold it: a third
    members += [(f"g{i}", "grey", (np.ones((30, 30), bool), np.full((30, 30), 5, np.uint16))) for i in range(5)]
    noise = [(f"n{i}", _alone(i)) for i in range(3)]
    found = gate.foreign_pieces(members, noise)
    assert sorted(found) == ["a0", "a1", "a2"]
    assert all(0.03 <= v["share"] < gate.CUT_MAX for v in found.values())
    assert "seen alone in 3" in found["a0"]["why"]
    assert gate.foreign_pieces(members, noise[:1]) == {}  # seen alone once: not enough to cut


def test_a_small_piece_in_the_colours_of_a_character_seen_beside_it_is_cut():
    """Film f2774: the butterfly on Buck's hand, 1 % of the mask, under CUT_SHARE: cut when its colours
    are a cluster's that has members in a frame with this one's, not when no frame shows them together
    (another light on the same character, f1328)."""
    def figure(seed: int, speck: bool) -> tuple[np.ndarray, np.ndarray]:
        img = _orange(seed)
        if speck:
            img[17:21, 43:47] = (210, 60, 220, 255)  # 16 px on the outline: ~1 % of the mask
        return gate.colour_bins(img)

    members = [(f"r{i}", "rinky", figure(i, i == 0)) for i in range(8)]
    members += [(f"b{i}", "butterfly", _alone(i)) for i in range(5)]
    area = int(members[0][2][0].sum())
    assert gate.CUT_SMALL <= 16 / area < gate.CUT_SHARE
    found = gate.foreign_pieces(members, (), (), {frozenset(("rinky", "butterfly"))})
    assert list(found) == ["r0"] and found["r0"]["mask"].sum() >= 16
    assert "in colours butterfly's images have" in found["r0"]["why"]
    assert gate.foreign_pieces(members) == {}  # never seen beside it: not cut
    # the colour in another rinky image too (2 of 7 others: over COLOUR_OWN): her own, not cut
    members[1] = ("r1", "rinky", figure(1, True))
    members[2] = ("r2", "rinky", figure(2, True))
    assert "r0" not in gate.foreign_pieces(members, (), (), {frozenset(("rinky", "butterfly"))})


def test_a_small_piece_of_an_object_seen_alone_on_two_tracks_is_cut():
    """Film f2725: a bit of the butterfly's wing at Buck's hand (0.8 % of the mask), no cluster beside
    him: its colours his images lack and the butterfly seen alone on two tracks (the noise) cut it."""
    def figure(seed: int, speck: bool) -> tuple[np.ndarray, np.ndarray]:
        img = _orange(seed)
        if speck:
            img[16:21, 42:47] = (210, 60, 220, 255)  # 25 px: ~1.5 % of the mask, a blob
        return gate.colour_bins(img)

    members = [(f"r{i}", "rinky", figure(i, i == 0)) for i in range(8)]
    noise = [(f"n{i}", _alone(i)) for i in range(3)]
    area = int(members[0][2][0].sum())
    assert gate.CUT_SMALL <= 25 / area < gate.CUT_SHARE
    found = gate.foreign_pieces(members, noise, tracks={"n0": "t1", "n1": "t1", "n2": "t2"})
    assert list(found) == ["r0"] and found["r0"]["mask"].sum() >= 25
    assert "seen alone on 2 other tracks" in found["r0"]["why"]
    assert gate.foreign_pieces(members, noise) == {}  # no tracks given: not judged so
    assert gate.foreign_pieces(members, noise, tracks={"n0": "t1", "n1": "t1", "n2": "t1"}) == {}  # one shot


def test_a_held_object_the_matte_is_unsure_of_is_cut_when_seen_alone_on_two_tracks():
    """Film: the torn butterfly wings Rinky holds are half-transparent in the matte (out of the mask
    judged, opaque in the dataset's image); seen alone on two tracks they are cut, as one shot's frames
    of a part (seed 6: the robot's red, the colour of the blue boy's shirt) are not enough."""
    import cv2

    def holder(seed: int, held: str) -> np.ndarray:
        img = _orange(seed, 9 if held == "wing" else 0, 90)  # alpha 90: above 0.15, under 0.5
        if held == "rim":  # the matte's soft fringe in that colour: a line, no blob
            cv2.ellipse(img, (30, 45), (19, 31), 0, 200, 340, (210, 60, 220, 90), 1)
        return img

    images = {f"a{i}": holder(i, "wing" if i < 3 else "rim" if i == 3 else "") for i in range(9)}
    members = [(k, "rinky", gate.colour_bins(v)) for k, v in images.items()]
    unsure = {k: gate.unsure_matte(v, 0.15) for k, v in images.items()}
    assert unsure["a0"].sum() > 200 and not unsure["a8"].any()
    noise = [(f"n{i}", _alone(i)) for i in range(3)]
    found = gate.foreign_pieces(members, noise, unsure=unsure, tracks={"n0": "t1", "n1": "t1", "n2": "t2"})
    assert sorted(found) == ["a0", "a1", "a2"]  # not the rim (a3)
    assert found["a0"]["mask"][unsure["a0"]].mean() > 0.95 and not found["a0"]["mask"][members[0][2][0]].any()
    assert "where the matte is unsure" in found["a0"]["why"] and "on 2 other tracks" in found["a0"]["why"]
    assert gate.foreign_pieces(members, noise) == {}  # the mask judged alone does not see it
    assert gate.foreign_pieces(members, noise, unsure=unsure, tracks={"n0": "t1", "n1": "t1", "n2": "t1"}) == {}


def test_a_piece_in_colours_cut_from_its_tracks_other_frames_is_cut():
    """Film f5046, f5108: the wing Rinky holds is cut in other frames of the shot; where a piece of it
    passes none of the rules on its own (here under CUT_SHARE, no cluster beside it), the colours its
    track's cuts took tell it."""
    members = [(f"a{i}", "rinky", gate.colour_bins(_orange(i, (9, 9, 4)[i] if i < 3 else 0))) for i in range(9)]
    area = int(members[2][2][0].sum())
    small = int((members[2][2][0] & (np.arange(80)[:, None] < 25) & (np.arange(60)[None, :] > 43)).sum())
    assert gate.CUT_SMALL * area <= small < gate.CUT_SHARE * area
    noise = [(f"n{i}", _alone(i)) for i in range(3)]
    assert sorted(gate.foreign_pieces(members, noise)) == ["a0", "a1"]
    found = gate.foreign_pieces(members, noise, tracks={"a0": "t1", "a1": "t1", "a2": "t1"})
    assert sorted(found) == ["a0", "a1", "a2"] and found["a2"]["mask"].sum() >= small - 2
    assert "in colours cut from the other frames of its track" in found["a2"]["why"]
    # the same piece in a frame of another track: not cut
    assert "a2" not in gate.foreign_pieces(members, noise, tracks={"a0": "t1", "a1": "t1", "a2": "t2"})


def test_parts_the_cut_leaves_apart_go_with_it():
    mask = np.zeros((100, 100), bool)
    mask[20:80, 10:60] = True  # the body: 3000 px
    mask[40:50, 60:70] = True  # the piece cut
    mask[42:48, 70:75] = True  # a wing tip joined to the body only through the piece: 30 px
    mask[5:8, 90:93] = True  # a speck apart from the start, away from the cut: not the cut's business
    cut = np.zeros_like(mask)
    cut[40:50, 60:70] = True
    apart = gate.left_apart(mask, cut)
    assert apart.sum() == 30 and apart[42:48, 70:75].all()
    mask[30:60, 70:90] = True  # now what lies beyond the cut is 600 px (>= 5 % of the mask): a part kept
    assert not gate.left_apart(mask, cut).any()
    assert not gate.left_apart(mask, np.zeros_like(mask)).any()  # nothing cut: nothing goes


def test_a_part_of_the_bodys_colour_beyond_the_cut_stays():
    """Film f2580: a butterfly across Buck's head parts his ears from his body; the ears are his."""
    mask = np.zeros((100, 100), bool)
    mask[40:100, 20:80] = True  # the body: 3600 px, white
    mask[32:40, 20:80] = True  # the object lying across the head: 480 px, purple
    mask[20:32, 30:40] = True  # an ear beyond it: 120 px, 3 % of the mask, white
    mask[26:32, 80:86] = True  # the object's far wing tip, beyond its edge: 36 px
    mask[32:40, 80:86] = True  # its wing
    cut = np.zeros_like(mask)
    cut[32:40, 20:86] = True
    body = np.zeros_like(mask)
    body[40:100, 20:80] = body[20:32, 30:40] = True
    img = np.zeros((100, 100, 4), np.uint8)
    img[mask] = (170, 60, 200, 255)  # the object's purple
    img[body] = (235, 235, 235, 255)  # the body's white
    _, bins = gate.colour_bins(img)
    apart = gate.left_apart(mask, cut, bins)
    assert apart[26:32, 80:86].all() and apart.sum() == 36  # the wing tip goes with the cut
    assert not apart[20:32, 30:40].any()  # the ear stays
    assert gate.left_apart(mask, cut)[20:32, 30:40].all()  # without the colours, it went too (the old rule)


def test_a_large_part_of_another_colour_beyond_the_cut_goes():
    """Film f3649: the piece cut from Gimera's mask was part of Rinky, and the rest of Rinky (22 % of the
    mask) was left beside her, apart from her body; under 5 % only a part this large stayed."""
    mask = np.zeros((100, 100), bool)
    mask[30:100, 40:100] = True  # the body: 4200 px, grey
    mask[50:60, 30:40] = True  # the piece cut: 100 px
    mask[40:80, 5:30] = True  # beyond it, the rest of another character: 1000 px (18 % of the mask), orange
    cut = np.zeros_like(mask)
    cut[50:60, 30:40] = True
    img = np.zeros((100, 100, 4), np.uint8)
    img[mask] = (130, 130, 140, 255)
    img[40:80, 5:30] = (220, 110, 60, 255)
    _, bins = gate.colour_bins(img)
    apart = gate.left_apart(mask, cut, bins)
    assert apart[40:80, 5:30].all() and apart.sum() == 1000
    assert not gate.left_apart(mask, cut).any()  # without colours: over 5 % of the mask, it stays
    img[40:80, 5:30] = (130, 130, 140, 255)  # the body's own colour beyond the cut (an arm): it stays
    assert not gate.left_apart(mask, cut, gate.colour_bins(img)[1]).any()
    mask[5:40, 5:30] = True  # the part beyond grows to 1875 px of 6175: 30 % (under 35 %), another colour
    img[5:80, 5:30] = (220, 110, 60, 255)
    assert gate.left_apart(mask, cut, gate.colour_bins(img)[1]).sum() == 1875
    mask[80:100, 5:30] = True  # 2375 px of 6675: 36 %, no longer under the bound
    img[80:100, 5:30] = (220, 110, 60, 255)
    assert not gate.left_apart(mask, cut, gate.colour_bins(img)[1]).any()


def test_a_part_apart_from_the_body_in_another_colour_goes():
    """Film f4032, f4431: Rinky's ear tips lie beside Gimera in her mask, apart from her body and red on
    grey. Such a part goes with its soft rim wherever it lies; one of the body's colour (an ear the
    matte parted), one near the body (the robot's antenna tip past its lost stick) and one of 5 % of the
    mask or more (it may be the character's own, behind something thin in front) stay."""
    from animlora.curation.images import cut_strays

    rgba = np.zeros((120, 120, 4), np.uint8)
    rgba[30:110, 30:90] = (128, 128, 135, 255)  # the body, grey: 4800 px, diagonal 100
    rgba[10:18, 5:13] = (200, 50, 40, 255)  # a red bit 13 px off the body: 64 px
    rgba[9, 5:13, 3] = rgba[10:18, 4, 3] = 20  # its soft rim, under the alpha threshold
    rgba[10:20, 40:50] = (128, 128, 135, 255)  # an ear of the body's grey, 10 px off
    out, strays = cut_strays(rgba, 0.15)
    assert out[..., 3][9:18, 4:13].max() == 0 and strays.sum() == 64 and strays[10:18, 5:13].all()
    assert out[..., 3][10:20, 40:50].min() == 255 and (out[..., 3][30:110, 30:90] == 255).all()
    near = rgba.copy()
    near[10:18, 5:13, 3] = 0
    near[27:29, 60:62] = (200, 50, 40, 255)  # red, 1 px above the body: within 2 % of its diagonal
    assert not cut_strays(near, 0.15)[1].any()
    large = rgba.copy()
    large[0:10, 100:120] = (200, 50, 40, 255)  # red, 200 px more: 4 % of the mask, still a stray
    assert cut_strays(large, 0.15)[0][..., 3][0:10, 100:120].max() == 0
    large[0:28, 95:120] = (200, 50, 40, 255)  # 700 px: 13 % of the mask (a head above a shirt?) stays
    assert cut_strays(large, 0.15)[0][..., 3][0:28, 95:120].min() == 255


def test_a_stray_within_a_few_pixels_is_the_mattes_break_up():
    """Seed 4's robot, 78 px tall, kept its antenna's tip 2 px off the stick: 2 % of a small body's
    diagonal is under a pixel, so a part nearer than 3 px stays."""
    from animlora.curation.images import cut_strays

    small = np.zeros((60, 40, 4), np.uint8)
    small[20:60, 10:30] = (128, 128, 135, 255)  # the body: diagonal 45, 2 % of it under a pixel
    small[16:18, 19:21] = (200, 50, 40, 255)  # a red tip 2 px above it
    assert not cut_strays(small, 0.15)[1].any()
    small[16:18] = 0
    small[14:16, 19:21] = (200, 50, 40, 255)  # 4 px above it
    assert cut_strays(small, 0.15)[1].sum() == 4


def test_strays_are_judged_on_the_cutout_and_cut_from_the_enhanced_crop_as_they_are(tmp_path):
    """Film f4474: on the enhanced crop (1.65x) the butterfly's thin leg came apart from its body, where
    the cut-out at the frame's pixels holds it on; judged there, the leg went. Strays are judged on the
    cut-out and those same parts cut from the enhanced crop."""
    import cv2

    from animlora.curation.build import _render_enhanced, _without_others
    from animlora.curation.sources import Member
    from animlora.io.images import write_image

    cutout = np.zeros((100, 100, 4), np.uint8)
    cutout[30:100, 30:80] = (128, 128, 135, 255)  # the body, grey
    cutout[5:15, 5:15] = (200, 50, 40, 255)  # a red bit apart from it
    cutout[20:30, 55] = (40, 20, 60, 255)  # a thin dark leg, joined to the body
    enhanced = np.repeat(np.repeat(cutout, 2, axis=0), 2, axis=1)  # the same region at 2x
    enhanced[54:60, 110:112, 3] = 0  # where the enlargement parted the leg from the body
    write_image(tmp_path / "cut.png", cutout)
    write_image(tmp_path / "enh.png", enhanced)
    m = Member("i0", "c", str(tmp_path / "cut.png"), "i0", bbox=(0, 0, 100, 100), frame_size=(100, 100),
               enhanced_path=str(tmp_path / "enh.png"), enhanced_region=(0, 0, 100, 100), enhanced_scale=2.0)
    rgba, cut, share = _without_others(m, cutout, {}, 0.15, True)
    assert len(cut) == 1 and abs(share - 100 / (3500 + 100 + 10)) < 1e-6 and rgba[5:15, 5:15, 3].max() == 0
    kw = {"buckets": [(256, 256)], "step": 64, "margin": 0.0, "max_enlarge": 1.25, "min_side": 64,
          "background": "alpha", "color": (127, 127, 127), "alpha_threshold": 0.15, "max_aspect": 2.0,
          "fill_holes": 0.0}
    out = _render_enhanced(m, kw, None, cut)
    assert out is not None
    parts = cv2.connectedComponents((out.image[..., 3] > 38).astype(np.uint8), connectivity=8)[0] - 1
    assert parts == 2  # the body and its leg: the red bit is gone, the leg stays
