"""The run's ending: per character, what the dataset stage wrote, what it left out and why, and
what to do when no usable dataset came out. ``animlora run`` prints it; ``--json`` carries it."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from animlora.records import decisions, prefilter, segment

if TYPE_CHECKING:
    from animlora.catalog import Catalog


def upstream_counts(catalog: Catalog) -> dict[str, Any]:
    """What never reached a character: instances found, rejected by the prefilter (per reason),
    and kept but in no character (identity noise)."""
    return {
        "instances": segment.count_instances(catalog),
        "prefilter_rejected": prefilter.rejected_counts(catalog),
        "in_no_character": len(_in_no_character(catalog)),
    }


def upstream_left_out(catalog: Catalog) -> list[dict[str, str]]:
    """Every instance that never reached a character's dataset before this stage: rejected by
    the prefilter (with its reason) or kept but in no character (identity noise)."""
    out: list[dict[str, str]] = []
    for instance_id, reason in prefilter.rejected(catalog):
        out.append({"instance": instance_id, "code": f"prefilter: {reason}",
                    "reason": f"rejected by the prefilter ({reason})"})
    for instance_id in _in_no_character(catalog):
        out.append({"instance": instance_id, "code": "in no character",
                    "reason": "kept by the prefilter, but clustered into no character (noise)"})
    return out


def _in_no_character(catalog: Catalog) -> list[str]:
    """Instances the prefilter kept that no character has (identity noise), by id."""
    members = decisions.members(catalog)
    return [v.instance_id for v in prefilter.verdicts(catalog).values() if v.kept and v.instance_id not in members]


def name_order(name: str) -> list[Any]:
    """A sort key that puts ``character_2`` before ``character_10`` (runs of digits by value)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def ending(results_path: Path) -> dict[str, Any] | None:
    """The ending table's rows and verdict from ``dataset_results.json`` (None without one): the
    characters written, then those skipped, each in :func:`name_order`, then failed items."""
    if not results_path.is_file():
        return None
    report = json.loads(results_path.read_text(encoding="utf-8"))
    rows = []
    for name, c in sorted(report.get("characters", {}).items(), key=lambda kv: name_order(kv[0])):
        rows.append({"character": name, "status": c.get("status", "ok"), "images": c["images"],
                     "shots": c["shots"], "candidate_shots": c.get("candidate_shots"),
                     "left_out": c.get("left_out", {}), "folder": c.get("folder"), "reason": "",
                     "enlargement": c.get("enlargement") or {}, "pieces_cut": c.get("pieces_cut", 0)})
    for sk in sorted(report.get("skipped_characters", []), key=lambda sk: name_order(sk["character"])):
        rows.append({"character": sk["character"], "status": sk.get("status", "no dataset"), "images": 0, "shots": 0,
                     "candidate_shots": None, "left_out": sk.get("left_out_counts", {}), "folder": None,
                     "reason": sk["reason"]})
    for failed in report.get("failed", []):
        rows.append({"character": failed["item"], "status": "failed", "images": 0, "shots": 0,
                     "candidate_shots": None, "left_out": {}, "folder": None, "reason": failed["error"]})
    usable = [r for r in rows if r["status"] in ("ok", "small")]
    lines = []
    if not usable:
        lines.append("No usable dataset came out. " + _advice(rows, report.get("upstream", {})))
    min_size = report.get("min_size") or {}
    if min_size.get("setting") == "auto":  # what auto chose, and from what
        lines.append(min_size["why"])
    for r in rows:
        if r["status"] == "no dataset":
            lines.append(f"{r['character']}: no dataset — {r['reason']}")
        if r["status"] == "not character":
            lines.append(f"{r['character']}: not a character, no dataset — {r['reason']}")
    # one line per finding, every character it concerns on it (a film gives a dozen folders)
    small = [r for r in rows if r["status"] == "small"]
    if small:
        names = _listed(small, lambda r: r["images"])
        lines.append(f"marked small, built with fewer images than dataset.small_size: {names}; a LoRA from so few "
                     "overfits: add footage with these characters, or review their clusters.")
    enlarged = [r for r in rows if (r.get("enlargement") or {}).get("enhanced")
                or (r.get("enlargement") or {}).get("below_min_bucket")]
    if enlarged:  # what was done to small crops, after the verdicts
        enhanced = _listed(enlarged, lambda r: f"{r['enlargement'].get('enhanced', 0)} of {r['images']}")
        below = _listed([r for r in enlarged if r["enlargement"].get("below_min_bucket")],
                        lambda r: r["enlargement"]["below_min_bucket"]) or "none"
        most = max(r["enlargement"].get("resample_max", 0) for r in enlarged)
        lines.append(f"images from enhanced crops: {enhanced}; kept at their own size below dataset.min_bucket "
                     f"(sd-scripts bucket_no_upscale): {below}; plain resampling at most {most:.2f}x")
    cut = [r for r in rows if r.get("pieces_cut")]
    if cut:
        pieces = _listed(cut, lambda r: f"{r['pieces_cut']} of {r['images']}")
        lines.append(f"images with another object's piece cut from the mask: {pieces} (metadata.json piece_cut; "
                     "dataset.cut_foreign: false keeps them whole)")
    from animlora.curation.build import LOOSE_OUTLINE

    loose = [r for r in rows if r["left_out"].get(LOOSE_OUTLINE)]
    if loose:  # a count the table shows among the others, said once with what it means and how to keep them
        counts = _listed(loose, lambda r: r["left_out"][LOOSE_OUTLINE])
        lines.append(f"left out as not whole (the matte stopped inside the character or ran on into the set; "
                     f"{LOOSE_OUTLINE}): {counts} (dataset.max_loose_outline: 1 keeps them)")
    from animlora.curation.gate import trusted

    # folders the cluster stage numbered (character_0, ...): no one has said yet which are one character
    unnamed = sum(not trusted(r["character"]) for r in usable)
    return {"characters": rows, "usable": len(usable), "unnamed": unnamed, "min_size": min_size or None,
            "upstream": report.get("upstream", {}), "lines": lines,
            "report": str(results_path.parent / report["report"]["html"]) if report.get("report") else None}


def _listed(rows: list[dict[str, Any]], figure: Callable[[dict[str, Any]], Any]) -> str:
    """``name figure, name figure``: the characters a line of the ending concerns."""
    return ", ".join(f"{r['character']} {figure(r)}" for r in rows)


def _advice(rows: list[dict[str, Any]], upstream: dict[str, Any]) -> str:
    if not rows:
        found = upstream.get("instances", 0)
        if not found:
            return ("No instances were found: check the segment stage (`animlora status`) and that the videos "
                    "show characters.")
        return (f"{found} instances were found but none belongs to a character: name clusters in "
                "`animlora review`, or lower cluster.min_cluster_size for a short film.")
    if all(r["status"] == "not character" for r in rows):
        return ("Every cluster looked like scenery or title cards (still in every shot, or text): check the "
                "clusters in `animlora review` and name the characters (a named cluster is always kept), or "
                "set dataset.scenery_check: false.")
    if any(r["status"] == "no dataset" for r in rows):
        from animlora.curation.build import more_images

        left_out: dict[str, int] = {}
        for r in rows:
            for code, n in r["left_out"].items():
                left_out[code] = left_out.get(code, 0) + n
        return f"Every character had too few images that could be written: {more_images(left_out)}."
    return "Every character failed: see the errors above (`animlora status`)."


def counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {code}" for code, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))) or "-"


def print_ending(summary: dict[str, Any], console: Any) -> None:
    """The ending as a rich table plus its verdict lines."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="datasets")
    for column in ("character", "status", "images", "shots", "left out (why)"):
        table.add_column(column)
    for r in summary["characters"]:
        shots = str(r["shots"]) + (f"/{r['candidate_shots']}" if r.get("candidate_shots") else "")
        table.add_row(r["character"], r["status"], str(r["images"]), shots, counts_text(r["left_out"]))
    up = summary.get("upstream") or {}
    if summary["characters"]:
        console.print(table)
    if up:
        rejected = sum(up.get("prefilter_rejected", {}).values())
        console.print(f"before the datasets: {up.get('instances', 0)} instances, {rejected} rejected by the prefilter "
                      f"({counts_text(up.get('prefilter_rejected', {}))}), {up.get('in_no_character', 0)} in no "
                      "character", highlight=False)
        if up.get("in_no_character"):
            console.print("  (those in no character: `animlora review`, then 'Suggest from noise' on a character "
                          "offers the ones nearest it, a track at a time)", highlight=False)
    if summary.get("unnamed", 0) >= 2:  # named folders are the user's word on who is who
        console.print("  (one character may be in several folders, split by light: in `animlora review`, 'Same "
                      "character?' above the overview offers the folder pairs most alike, a click to merge; or "
                      "name the characters, characters/<name>.yaml with two or three screenshots each: the "
                      "clusters that take one name share its folder, with the views left between them)",
                      highlight=False)
    for line in summary["lines"]:
        console.print(f"[yellow]![/] {escape(line)}", highlight=False, soft_wrap=True)  # "animlora[models]"
    if summary.get("report"):
        console.print(f"every left-out instance with its reason: {summary['report']}", highlight=False)
