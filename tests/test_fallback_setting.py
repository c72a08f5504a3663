"""One form for every stage's ``fallback`` setting: none | auto | a backend name; the booleans
of earlier releases read as auto/none and hash as they did, so upgrading redoes nothing."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from animlora.backends.registry import fallback_chain, fallback_for
from animlora.config import load_settings, parse_set_options
from animlora.errors import ConfigError


def settings(*sets: str):
    return load_settings(overrides=parse_set_options(list(sets))).settings


def test_every_section_takes_none_and_auto():
    s = settings("inpaint.fallback=auto", "enhance.fallback=none", "embed.fallback=auto", "caption.fallback=auto",
                 "deocclude.fallback=auto", "segment.fallback=none")
    assert (s.inpaint.fallback, s.enhance.fallback, s.embed.fallback, s.caption.fallback, s.deocclude.fallback) == (
        "auto", "none", "auto", "auto", "auto")
    assert s.segment.fallback == "none" and settings("segment.fallback=auto").segment.fallback == "auto"
    assert settings("segment.fallback=classic").segment.fallback == "classic"
    with pytest.raises(ConfigError):
        settings("inpaint.fallback=sometimes")


def test_booleans_of_earlier_releases_read_as_auto_and_none_and_hash_as_before():
    on = settings("inpaint.fallback=true", "enhance.fallback=true", "segment.fallback=true")
    off = settings("inpaint.fallback=false", "segment.fallback=false")
    assert (on.inpaint.fallback, on.enhance.fallback, off.inpaint.fallback) == ("auto", "auto", "none")
    assert (on.segment.fallback, off.segment.fallback) == ("auto", "none")
    assert settings().inpaint.fallback == settings().segment.fallback == "auto"  # the shipped defaults, as `true` was
    # the fingerprint an earlier release computed: the section's values with fallback a boolean
    for section in ("inpaint", "segment"):
        for s, old in ((on, True), (off, False)):
            now = getattr(s, section)
            values = now.model_dump(mode="json") | {"fallback": old}
            values.pop("plates", None)  # whether inpaint makes plates (added later) is never hashed
            for name, same in now.added_fields.items():
                if values.get(name) == same:
                    values.pop(name)
            blob = json.dumps(values, sort_keys=True, separators=(",", ":"))
            assert now.fingerprint() == hashlib.sha256(blob.encode()).hexdigest()
        assert getattr(on, section).fingerprint() != getattr(off, section).fingerprint()


def test_the_setting_picks_from_the_declared_fallbacks():
    assert fallback_chain("inpainting", "sd", "auto") == ["sd", "lama", "opencv"]
    assert fallback_chain("inpainting", "sd", "opencv") == ["sd", "opencv"]
    assert fallback_for("inpainting", "sd", "auto") == "lama"
    assert fallback_for("inpainting", "lama", "auto") == fallback_for("inpainting", "lama", True) == "opencv"
    assert fallback_for("inpainting", "lama", "none") is None and fallback_for("inpainting", "opencv", "auto") is None
    assert fallback_for("embedding", "siglip", "color") == fallback_for("embedding", "siglip", "auto") == "color"
    assert fallback_for("captioning", "florence2", "auto") == "template"
    assert fallback_for("enhance", "spandrel", "auto") == "opencv"
    assert fallback_chain("segmentation", "sam2", "auto") == ["sam2", "isnet", "classic"]
    assert fallback_chain("segmentation", "sam2", "classic") == ["sam2", "classic"]
    assert fallback_chain("segmentation", "isnet", "none") == ["isnet"]


def test_a_stage_that_fell_back_runs_again_once_its_own_backend_can(tmp_path):
    # A first run on a machine without ISNet's weights segments with the weightless fallback
    # (segment.fallback auto). Once the weights are there (`animlora models pull isnet`, here
    # models.paths, which is not part of segment's settings), the same command must segment
    # again with ISNet: it said "up to date" and kept the fallback's masks.
    from typer.testing import CliRunner

    from animlora.cli import app
    from animlora.io.images import write_image
    from segment_synth import scene
    from test_segment_backends import tiny_isnet

    for i in range(2):
        image, _ = scene(3 + i, [((100 + 20 * i, 90), (40, 55), (220, 90, 60))])
        write_image(tmp_path / "frames" / "shot1" / f"f{i}.png", image)
    out, store = tmp_path / "seg", tmp_path / "empty_store"
    store.mkdir()
    command = ["segment", "--input-dir", str(tmp_path / "frames"), "--output-dir", str(out), "--model", "isnet",
               "--json", "--set", f"models.store={store}", "--set", "models.offline=true"]

    def run(*more: str) -> tuple[dict, dict]:
        result = CliRunner().invoke(app, [*command, *more])
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout[result.stdout.index("{"):])
        return next(s for s in summary["stages"] if s["stage"] == "segment"), json.loads(
            (out / "segmentation_results.json").read_text())

    _, report = run()
    assert list(report["backends_used"]) == ["classic"] and report["fallback"]
    stage, _ = run()
    assert stage["up_to_date"]  # still no weights: nothing to redo
    weights = f"models.paths.isnet={tiny_isnet(tmp_path / 'isnet.onnx')}"
    stage, report = run("--set", weights)
    assert not stage["up_to_date"] and stage["items_skipped"] == 0 and stage["items_done"] == 1
    assert list(report["backends_used"]) == ["isnet"] and report["fallback"] == []
    stage, _ = run("--set", weights)
    assert stage["up_to_date"]  # ran with what was asked for: up to date from then on
    # the same weights copied elsewhere (a moved store) redo nothing; another checkpoint does
    (tmp_path / "moved").mkdir()
    shutil.copy(tmp_path / "isnet.onnx", tmp_path / "moved" / "isnet.onnx")
    stage, _ = run("--set", f"models.paths.isnet={tmp_path / 'moved' / 'isnet.onnx'}")
    assert stage["up_to_date"]
    other = f"models.paths.isnet={tiny_isnet(tmp_path / 'other.onnx', size=32)}"
    stage, report = run("--set", other)
    assert not stage["up_to_date"] and stage["items_done"] == 1 and list(report["backends_used"]) == ["isnet"]
    stage, _ = run("--set", other)
    assert stage["up_to_date"]


# (stage, the backend asked for, its weights' registry name, the fallback, the settings that ask for it)
FELL_BACK = [
    ("inpaint", "lama", "big-lama", "opencv", ("inpaint.plates=always",)),
    ("deocclude", "lama", "big-lama", "opencv", ()),
    ("enhance", "spandrel", "realesrgan-x4plus", "opencv", ("enhance.backend=spandrel",)),
    ("caption", "blip", "blip-large", "template", ("caption.backend=blip", "caption.fallback=auto")),
]


@pytest.mark.parametrize(("stage_name", "wanted", "model", "fallback", "asked"), FELL_BACK)
def test_outputs_a_fallback_made_are_made_again_once_the_backend_asked_for_can_run(tmp_path, stage_name, wanted,
                                                                                    model, fallback, asked):
    # e.g. inpaint.backend lama falls back to OpenCV where torch, spandrel or big-lama's weights
    # are missing (the base install): the plates and the occluders' fills are made again once
    # LaMa runs. What ran is read from the stage's own records.
    for package in ("torch", "spandrel", "transformers"):
        pytest.importorskip(package)
    from types import SimpleNamespace

    from animlora.catalog import Catalog
    from animlora.records import caption, deocclude, enhance, inpaint
    from animlora.stages import get_stage
    from animlora.stages.fallback import fallback_lines

    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"stand-in: only looked for, never loaded")
    store = tmp_path / "empty_store"
    store.mkdir()
    stage = get_stage(stage_name)
    with Catalog(tmp_path / "catalog.sqlite") as cat:
        def record(backend: str) -> None:
            if stage_name == "inpaint":
                inpaint.replace_shot(cat, "s1", [{"id": "s1", "shot_id": "s1", "frame_ids": "[]", "path": "s1.png",
                                                  "static": 1, "backend": backend, "hole_fraction": 0.1}], None)
            elif stage_name == "deocclude":
                deocclude.replace_frame(cat, "f1", [deocclude.Fill("f1_i0", "f1", "a.jpg", "a_o.jpg", (0, 0, 4, 4),
                                                                   0.2, backend)])
            elif stage_name == "enhance":
                method = "spandrel:realesrgan-x4plus (ESRGAN x4)" if backend == "spandrel" else backend
                enhance.replace(cat, enhance.Enhanced("f1_i0", "a.png", (0, 0, 4, 4), (8, 8), 2.0, method, 0.9,
                                                      "accepted"))
            else:
                caption.write_stage_caption(cat, instance_id="f1_i0", character="luca", text="luca",
                                            source=f"{backend}+template" if backend != "template" else backend,
                                            fields={}, auto_text=None, confidence=None, note=None)

        def why(*sets: str) -> str | None:
            return stage.outdated(SimpleNamespace(catalog=cat, job=SimpleNamespace(standalone=False), settings=settings(
                f"models.store={store}", "models.offline=true", *asked, *sets)))

        def ending(*sets: str) -> list[str]:
            return [line for line in fallback_lines(cat, settings(f"models.store={store}", "models.offline=true",
                                                                   *asked, *sets)) if line.startswith(stage_name)]

        record(fallback)
        assert why() is None  # the weights still missing: what the fallback made stands
        # the run's ending says so, and what to pull
        setting = f"{'inpaint' if stage_name == 'deocclude' else stage_name}.backend"  # deocclude inherits it
        assert ending() == [f"{stage_name}: made with '{fallback}', not '{wanted}' as {setting} asks: its weights are "
                            f"not here (`animlora models pull {model}`); then `animlora run` makes it again (or set "
                            f"{setting}: {fallback} to stay with it)"]
        found = why(f"models.paths.{model}={weights}")
        assert found is not None and f"'{fallback}'" in found and f"'{wanted}' can run now" in found
        if stage_name == "inpaint":  # a character dataset's project run makes no plates; `inpaint-background` does
            plain = settings(f"models.store={store}", "models.offline=true", f"models.paths.{model}={weights}")
            for standalone, redo in ((False, False), (True, True)):
                ctx = SimpleNamespace(catalog=cat, job=SimpleNamespace(standalone=standalone), settings=plain)
                assert (stage.outdated(ctx) is not None) == redo
        assert ending(f"models.paths.{model}={weights}") == [
            f"{stage_name}: made with '{fallback}', not '{wanted}' as {setting} asks: '{wanted}' can run now, and the next "
            "`animlora run` makes it again with it"]
        record(wanted)  # the item made again, by what was asked for: nothing left to redo
        assert why(f"models.paths.{model}={weights}") is None and ending() == []


def test_doctor_names_the_stages_whose_backend_cannot_run_here(tmp_path):
    from animlora.stages.fallback import cannot_run_lines

    store = tmp_path / "empty_store"
    store.mkdir()
    bare = [f"models.store={store}", "models.offline=true"]
    lines = cannot_run_lines(settings(*bare))
    assert ("segment: 'isnet' cannot run here: its weights are not here (`animlora models pull isnet`); until then a "
            "run uses 'classic' instead (segment.fallback: auto)") in lines
    strict = cannot_run_lines(settings(*bare, "segment.fallback=none", "segment.backend=sam2"))
    assert [line.split("; until then ")[1] for line in strict if line.startswith("segment")] == [
        "a run stops with this error (segment.fallback: none)"]
    assert not any(line.startswith("inpaint") for line in lines)  # no plates for a character dataset: it never runs
    weights = tmp_path / "isnet.onnx"
    weights.write_bytes(b"stand-in")
    assert not any(line.startswith("segment") for line in cannot_run_lines(settings(*bare, f"models.paths.isnet={weights}")))
    assert not any(line.startswith("caption") for line in lines)  # the template captioner needs no weights


def test_a_stage_turned_off_asks_for_no_backend(tmp_path):
    # enhance.backend none is no backend of the registry: nothing to run again, nothing missing
    from types import SimpleNamespace

    from animlora.catalog import Catalog
    from animlora.records import enhance
    from animlora.stages import get_stage
    from animlora.stages.fallback import cannot_run_lines, fallback_lines

    off = settings("enhance.backend=none")
    assert not any(line.startswith("enhance") for line in cannot_run_lines(off))
    with Catalog(tmp_path / "catalog.sqlite") as cat:
        enhance.replace(cat, enhance.Enhanced("f1_i0", "a.png", (0, 0, 4, 4), (8, 8), 2.0, "opencv", 0.9, "accepted"))
        ctx = SimpleNamespace(catalog=cat, job=SimpleNamespace(standalone=False), settings=off)
        assert get_stage("enhance").outdated(ctx) is None
        assert not any(line.startswith("enhance") for line in fallback_lines(cat, off))


def test_sam2_prompted_by_the_fallback_runs_again_once_isnet_can(tmp_path):
    # segment.backend sam2 runs with its own weights here but its ISNet prompter's missing: the
    # masks are sam2's from classic prompts ('sam2+classic'). The ending and doctor say what to
    # pull, and which setting keeps them; with ISNet here the stage runs again.
    for package in ("torch", "transformers"):
        pytest.importorskip(package)
    from types import SimpleNamespace

    from animlora.catalog import Catalog
    from animlora.records import segment
    from animlora.stages import get_stage
    from animlora.stages.fallback import cannot_run_lines, fallback_lines

    store = tmp_path / "empty_store"
    store.mkdir()
    (tmp_path / "sam2").mkdir()
    (tmp_path / "sam2" / "model.safetensors").write_bytes(b"stand-in: only looked for, never loaded")
    isnet = tmp_path / "isnet.onnx"
    isnet.write_bytes(b"stand-in")

    def here(**more: str):  # the SAM 2 checkpoint's registry name has dots: --set cannot name it
        paths = {"sam2.1-hiera-tiny": str(tmp_path / "sam2")} | more
        return load_settings(overrides={"models": {"store": str(store), "offline": True, "paths": paths},
                                        "segment": {"backend": "sam2", **segment_sets}}).settings

    segment_sets: dict[str, str] = {}
    stage = get_stage("segment")
    with Catalog(tmp_path / "catalog.sqlite") as cat:
        def record(backend: str) -> None:
            segment.replace_shot(cat, "s1", [{"frame_id": "f1", "shot_id": "s1", "source": "f1.png", "status": "ok",
                                              "n_instances": 1, "backend": backend}], [], [], tmp_path)

        def why(**paths: str) -> str | None:
            ctx = SimpleNamespace(catalog=cat, job=SimpleNamespace(standalone=False), settings=here(**paths))
            return stage.outdated(ctx)

        record("sam2+classic")
        assert why() is None  # ISNet still missing: what the fallback made stands
        assert [line for line in fallback_lines(cat, here()) if line.startswith("segment")] == [
            "segment: made with 'sam2+classic', not 'sam2' as segment.backend asks: its weights are not here "
            "(`animlora models pull isnet`); then `animlora run` makes it again (or set segment.sam2_prompter: classic "
            "to stay with it)"]
        assert [line for line in cannot_run_lines(here()) if line.startswith("segment")] == [
            "segment: 'sam2' cannot run here: its weights are not here (`animlora models pull isnet`); until then a run "
            "uses 'sam2+classic' instead (segment.fallback: auto)"]
        found = why(isnet=str(isnet))
        assert found is not None and "'sam2+classic'" in found
        record("sam2")  # made again with ISNet's prompts: nothing left to redo
        assert why(isnet=str(isnet)) is None
        segment_sets["sam2_prompter"] = "classic"  # asked for (the hint's setting): classic's prompts are 'sam2'
        assert why() is None and fallback_lines(cat, here()) == []
