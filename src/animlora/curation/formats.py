"""Trainer formats: sd-scripts dataset TOML and JSONL metadata, the ``{repeats}_{name}`` layout.

The keys allowed at each level of an sd-scripts dataset config come from its
``library/config_util.py`` (``ConfigSanitizer``, kohya-ss/sd-scripts commit 264167fa): ``[general]``
takes dataset- and subset-level keys, ``[[datasets]]`` the dataset keys plus ascendable subset keys,
``[[datasets.subsets]]`` the subset keys of its kind (DreamBooth: ``image_dir`` + captions by file
extension; fine-tuning: ``metadata_file``). ``validation_split`` is dataset-level only, and
``caption_extension`` defaults to ``.caption`` there, so it is always written.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

_SUBSET_ASCENDABLE = {
    "color_aug", "face_crop_aug_range", "flip_aug", "num_repeats", "random_crop", "shuffle_caption",
    "keep_tokens", "keep_tokens_separator", "secondary_separator", "caption_separator", "enable_wildcard",
    "token_warmup_min", "token_warmup_step", "caption_prefix", "caption_suffix", "custom_attributes",
}
_DROPOUT = {"caption_dropout_every_n_epochs", "caption_dropout_rate", "caption_tag_dropout_rate"}
_DB_ASCENDABLE = {"caption_extension", "class_tokens", "cache_info"}
_DB_DISTINCT = {"image_dir", "is_reg", "alpha_mask"}
_FT_DISTINCT = {"metadata_file", "image_dir", "alpha_mask"}
_DATASET_ASCENDABLE = {
    "batch_size", "bucket_no_upscale", "bucket_reso_steps", "enable_bucket", "max_bucket_reso", "min_bucket_reso",
    "validation_seed", "validation_split", "resolution", "network_multiplier",
}

# level -> keys sd-scripts' schema accepts there (train_network.py: DreamBooth + fine-tuning, dropout on)
SD_SCRIPTS_KEYS: dict[str, frozenset[str]] = {
    "general": frozenset(_DATASET_ASCENDABLE | _SUBSET_ASCENDABLE | _DB_ASCENDABLE | _DROPOUT),
    "dataset_dreambooth": frozenset(_DATASET_ASCENDABLE | _SUBSET_ASCENDABLE | _DB_ASCENDABLE | _DROPOUT | {"subsets"}),
    "dataset_finetune": frozenset(_DATASET_ASCENDABLE | _SUBSET_ASCENDABLE | _DROPOUT | {"subsets"}),
    "subset_dreambooth": frozenset(_SUBSET_ASCENDABLE | _DB_DISTINCT | _DB_ASCENDABLE | _DROPOUT),
    "subset_finetune": frozenset(_SUBSET_ASCENDABLE | _FT_DISTINCT | _DROPOUT),
}
REQUIRED = {"subset_dreambooth": {"image_dir"}, "subset_finetune": {"metadata_file"}}


# -- TOML -------------------------------------------------------------------------------
def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError(f"not a TOML number: {v}")
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # a JSON string is a valid TOML basic string
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _table(lines: list[str], header: str, data: Mapping[str, Any]) -> None:
    lines.append(header)
    for key, value in data.items():
        if value is None or isinstance(value, list | tuple) and value and isinstance(value[0], Mapping):
            continue
        lines.append(f"{key} = {_value(value)}")
    lines.append("")


def sd_scripts_toml(general: Mapping[str, Any], datasets: list[Mapping[str, Any]], comment: str = "") -> str:
    """A dataset config: ``general`` plus datasets, each with a ``subsets`` list of mappings."""
    lines = [f"# {line}" for line in comment.splitlines()] + ([""] if comment else [])
    _table(lines, "[general]", general)
    for dataset in datasets:
        _table(lines, "[[datasets]]", {k: v for k, v in dataset.items() if k != "subsets"})
        for subset in dataset.get("subsets", []):
            _table(lines, "[[datasets.subsets]]", subset)
    return "\n".join(lines).rstrip() + "\n"


def check_sd_scripts_config(config: Mapping[str, Any]) -> list[str]:
    """Problems of a parsed dataset config against :data:`SD_SCRIPTS_KEYS` (empty = accepted)."""
    problems = []
    for key in config:
        if key not in ("general", "datasets"):
            problems.append(f"top level: unknown table {key!r}")
    for key in config.get("general", {}):
        if key not in SD_SCRIPTS_KEYS["general"]:
            problems.append(f"[general]: {key!r} not allowed")
    for i, dataset in enumerate(config.get("datasets", [])):
        subsets = dataset.get("subsets", [])
        kind = "finetune" if subsets and all("metadata_file" in s for s in subsets) else "dreambooth"
        for key in dataset:
            if key not in SD_SCRIPTS_KEYS[f"dataset_{kind}"]:
                problems.append(f"datasets[{i}]: {key!r} not allowed in a {kind} dataset")
        for j, subset in enumerate(subsets):
            for key in subset:
                if key not in SD_SCRIPTS_KEYS[f"subset_{kind}"]:
                    problems.append(f"datasets[{i}].subsets[{j}]: {key!r} not allowed in a {kind} subset")
            for key in REQUIRED[f"subset_{kind}"] - set(subset):
                problems.append(f"datasets[{i}].subsets[{j}]: {key!r} missing")
    return problems


def jsonl(records: list[Mapping[str, Any]]) -> str:
    """sd-scripts' optional JSONL metadata: one ``{"image_path", "caption", "image_size"}`` a line."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def balanced_repeats(counts: Mapping[str, int], base: int = 1) -> dict[str, int]:
    """Repeats per character so each contributes about as many samples per epoch as the largest."""
    if not counts:
        return {}
    top = max(counts.values())
    return {name: max(1, round(base * top / max(1, n))) for name, n in counts.items()}


def kohya_folder(repeats: int, name: str) -> str:
    """The ``{repeats}_{name}`` folder name of sd-scripts' train_data_dir layout."""
    safe = "".join(c if c.isalnum() or c in "-_ " else "_" for c in name).strip() or "character"
    return f"{repeats}_{safe}"

