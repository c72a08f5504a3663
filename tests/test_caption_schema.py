"""The VLM answer parser on good, broken and truncated answers."""

from __future__ import annotations

import pytest

from animlora.backends.captioning.schema import parse_fields, plain_caption

GOOD = ('{"view": "side view", "pose": "running", "expression": "smiling", "outfit": "red hoodie", '
        '"lighting": "warm sunset light", "framing": "full body", "background": "a street"}')


def values(fields):
    return {k: v["value"] for k, v in fields.items()}


def test_good_json():
    fields, how = parse_fields(GOOD)
    assert how == "json"
    assert values(fields) == {"view": "side view", "pose": "running", "expression": "smiling",
                              "outfit": "red hoodie", "lighting": "warm sunset light", "framing": "full body",
                              "background": "a street"}
    assert all(f["confidence"] == 0.8 for f in fields.values())


def test_fenced_with_prose_and_aliases():
    answer = 'Sure! Here it is:\n```json\n{"Camera": "close-up", "clothing": ["blue scarf", "white shirt"], ' \
             '"emotion": "unknown", "Setting": "kitchen"}\n```\nHope this helps.'
    fields, how = parse_fields(answer)
    assert how == "json"
    assert values(fields) == {"framing": "close-up", "outfit": "blue scarf, white shirt", "background": "kitchen"}


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        # single quotes and a trailing comma
        ("{'view': 'front view', 'pose': 'sitting',}", {"view": "front view", "pose": "sitting"}),
        # truncated inside a value
        ('{"view": "from behind", "pose": "walking away", "outfit": "green jack',
         {"view": "from behind", "pose": "walking away", "outfit": "green jack"}),
        # truncated after a key
        ('{"view": "side view", "pose": "jumping", "expression":', {"view": "side view", "pose": "jumping"}),
        # truncated before a value's key ends
        ('{"framing": "medium shot", "lig', {"framing": "medium shot"}),
    ],
)
def test_broken_and_truncated_json_repaired(answer, expected):
    fields, how = parse_fields(answer)
    assert how == "repaired"
    assert values(fields) == expected
    assert all(f["confidence"] == 0.7 for f in fields.values())


def test_key_value_lines():
    fields, how = parse_fields("View: side view\nPose: crouching behind a rock\nfoo: bar")
    assert how == "lines"
    assert values(fields) == {"view": "side view", "pose": "crouching behind a rock"}


@pytest.mark.parametrize("answer", ["", "a boy riding a bicycle", "{}", "{not json at all", "[1, 2]"])
def test_nothing_usable(answer):
    assert parse_fields(answer) == ({}, "")


def test_plain_caption_fallback():
    assert plain_caption("a boy riding a bicycle on a street.") == "a boy riding a bicycle on a street"
    assert plain_caption('```json\n{"') == ""
    assert plain_caption("I cannot describe people.") == ""


def test_long_values_clipped():
    fields, _ = parse_fields('{"pose": "' + "very " * 40 + 'long"}')
    assert len(fields["pose"]["value"].split()) == 12
