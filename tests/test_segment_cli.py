"""The three standalone commands chained on plain folders, and the project stage order."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from animlora.cli import app
from animlora.io.images import write_image
from animlora.stages import STAGES, select_stages
from segment_synth import scene


def test_segment_prefilter_inpaint_commands_chain_on_folders(tmp_path):
    for i in range(3):
        image, _ = scene(7, [((110 + 60 * i, 180), (60, 100), (220, 90, 60))], height=360, width=640)
        write_image(tmp_path / "frames" / "shot1" / f"f{i}.png", image)
    runner = CliRunner()
    seg, filtered, plates = tmp_path / "seg", tmp_path / "filtered", tmp_path / "plates"

    result = runner.invoke(app, ["segment", "--input-dir", str(tmp_path / "frames"), "--output-dir", str(seg),
                                 "--model", "classic", "--alpha-threshold", "0.25", "--batch-size", "2", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads((seg / "segmentation_results.json").read_text())
    assert report["settings"]["alpha_threshold"] == 0.25 and report["settings"]["batch_size"] == 2
    assert report["counts"]["instances"] == 3 and report["counts"]["tracks"] == 1

    result = runner.invoke(app, ["prefilter", "--input-dir", str(seg / "character"), "--output-dir", str(filtered),
                                 "--mode", "lenient", "--json"])
    assert result.exit_code == 0, result.output
    assert len(list(filtered.glob("*.png"))) == 3

    result = runner.invoke(app, ["inpaint-background", "--input-dir", str(seg), "--output-dir", str(plates),
                                 "--model", "opencv", "--json"])
    assert result.exit_code == 0, result.output
    plates_report = json.loads((plates / "inpaint_report.json").read_text())
    # the character moves, the camera does not: one plate for the shot
    assert plates_report["static_shots"] == ["shot_shot1"]
    assert [p.name for p in plates.glob("*.png")] == ["shot_shot1.png"]


def test_stages_run_in_pipeline_order_after_extract():
    assert list(STAGES)[:7] == ["extract", "segment", "prefilter", "inpaint", "embed", "cluster", "deocclude"]
    assert [STAGES[n][0] for n in ("segment", "prefilter", "inpaint")] == ["segmentation", "filtered", "inpainting"]
    assert [s.name for s in select_stages("segment", "inpaint")] == ["segment", "prefilter", "inpaint"]
