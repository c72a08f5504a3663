"""Schema-guided VLM captions: the prompt that asks for fields, and a parser that survives what
VLMs actually answer (code fences, single quotes, trailing commas, cut-off JSON, prose).

:func:`parse_fields` returns ``(fields, how)``; ``how`` is ``"json"``, ``"repaired"``, ``"lines"``
or ``""`` when nothing usable was found (the caller retries, then falls back to a plain caption
and records that).
"""

from __future__ import annotations

import json
import re
from typing import Any

from animlora.backends.captioning.base import FIELDS

PROMPT = (
    "Describe the character in this image for an image-generation training caption. "
    "Answer with JSON only, one short phrase per key, no names, no art-style words:\n"
    '{"view": "front view | side view | from behind | three-quarter view", "pose": "...", '
    '"expression": "...", "outfit": "...", "lighting": "...", '
    '"framing": "close-up | upper body | full body", "background": "..."}'
)
RETRY_PROMPT = (
    "Reply with one JSON object and nothing else. Keys: view, pose, expression, outfit, lighting, "
    'framing, background. Example: {"view": "side view", "pose": "running", "expression": "smiling", '
    '"outfit": "red hoodie", "lighting": "warm sunset light", "framing": "full body", "background": "street"}'
)

ALIASES = {
    "camera": "framing", "shot": "framing", "shot_type": "framing", "camera_framing": "framing",
    "clothing": "outfit", "clothes": "outfit", "attire": "outfit", "costume": "outfit",
    "facing": "view", "orientation": "view", "angle": "view", "camera_angle": "view",
    "time": "time_of_day", "time of day": "time_of_day", "setting": "background", "environment": "background",
    "scene": "background", "emotion": "expression", "facial_expression": "expression", "action": "pose",
    "light": "lighting",
}
EMPTY = {"", "unknown", "none", "n/a", "na", "null", "not visible", "unclear", "...", "-"}
CONFIDENCE = {"json": 0.8, "repaired": 0.7, "lines": 0.6}
MAX_WORDS = 12


def _strip_fences(text: str) -> str:
    fenced = re.search(r"```(?:json)?\s*(.*?)(?:```|$)", text, re.S | re.I)
    return fenced.group(1) if fenced else text


def _repair(text: str) -> str:
    """Close what a truncated answer left open; fix single quotes and trailing commas."""
    s = text.strip()
    if '"' not in s and "'" in s:
        s = s.replace("'", '"')
    s = re.sub(r",\s*([}\]])", r"\1", s)
    if s.count('"') % 2:
        s += '"'
    s = re.sub(r',\s*"[^"]*"\s*$', "", s)  # a key cut off before its value
    s = re.sub(r":\s*$", ': ""', s)
    s = re.sub(r",\s*$", "", s)
    depth = 0
    for ch in s:
        depth += {"{": 1, "}": -1}.get(ch, 0)
    return s + "}" * max(0, depth)


def _load(text: str) -> dict[str, Any] | None:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _clean(value: Any) -> str:
    if isinstance(value, list):
        value = ", ".join(str(v) for v in value if v)
    if isinstance(value, dict):
        value = ", ".join(str(v) for v in value.values() if v)
    text = " ".join(str(value).split()).strip(" .,;\"'")
    if text.lower() in EMPTY:
        return ""
    words = text.split()
    return " ".join(words[:MAX_WORDS])


def _normalise(data: dict[str, Any], how: str) -> dict[str, dict[str, Any]]:
    fields: dict[str, dict[str, Any]] = {}
    for key, value in data.items():
        name = str(key).strip().lower().replace("-", "_")
        name = ALIASES.get(name, ALIASES.get(name.replace("_", " "), name))
        if name not in FIELDS:
            continue
        text = _clean(value)
        if text and name not in fields:
            fields[name] = {"value": text, "confidence": CONFIDENCE[how]}
    return fields


def parse_fields(answer: str) -> tuple[dict[str, dict[str, Any]], str]:
    """Fields from a VLM answer; ``({}, "")`` when none could be read."""
    body = _strip_fences(answer or "")
    start = body.find("{")
    if start >= 0:
        end = body.rfind("}")
        candidate = body[start : end + 1] if end > start else body[start:]
        data = _load(candidate)
        if data is not None:
            fields = _normalise(data, "json")
            if fields:
                return fields, "json"
        data = _load(_repair(body[start:] if end <= start else candidate))
        if data is None and end > start:
            data = _load(_repair(body[start:]))
        if data is not None:
            fields = _normalise(data, "repaired")
            if fields:
                return fields, "repaired"
    # "key: value" lines (a VLM that ignored the JSON request but kept the keys)
    pairs = {}
    for line in re.split(r"[\n;]", body):
        m = re.match(r'^\s*[-*"\']*\s*([A-Za-z_ ]{3,20})["\']?\s*[:=]\s*(.+)$', line)
        if m:
            pairs[m.group(1)] = m.group(2)
    fields = _normalise(pairs, "lines") if pairs else {}
    return (fields, "lines") if fields else ({}, "")


def plain_caption(answer: str) -> str:
    """A usable sentence from an answer that has no fields; "" for a failed JSON attempt or a
    refusal (neither describes the image)."""
    raw = (answer or "").strip()
    if "{" in raw or re.match(r"(?i)^(i cannot|i can't|i can not|sorry|as an ai|i'm unable|i am unable)", raw):
        return ""
    text = re.sub(r"[{}\[\]\"`]", " ", _strip_fences(answer or ""))
    text = re.sub(r"\b(json|JSON)\b", " ", text)
    text = " ".join(text.split()).strip(" .,:;")
    return text if len(text.split()) >= 2 else ""
