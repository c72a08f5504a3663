"""Caption composition and lint: trigger first, 2D words and banned words out, token budget."""

from __future__ import annotations

import pytest

from animlora.text.captions import (
    compose,
    estimate_tokens,
    intrinsic_traits,
    load_token_counter,
    prune_fields,
    tokenizer_counter,
)


def test_trigger_first_then_prefix_then_fields():
    c = compose("luca", "a 3d animated character, pixar style", ["close-up", "front view"], max_tokens=77)
    assert c.text == "luca, a 3d animated character, pixar style, close-up, front view"
    assert c.parts[0] == "luca"


def test_style_and_banned_words_removed_and_duplicates_dropped():
    c = compose(
        "luca", "a 3d animated character", ["anime style drawing of a boy", "Close-up", "close-up", "luca smiling",
                                            "watermark"],
        max_tokens=77, ban_words=["watermark"], style_words=["anime", "drawing", "2d"],
    )
    assert c.text == "luca, a 3d animated character, style of a boy, Close-up, smiling"
    assert "anime" not in c.text and "watermark" not in c.text


def test_word_boundaries_respected():
    # "2d" must not eat "2door", "anime" must not eat "animated"
    c = compose("luca", "", ["animated 2door car"], max_tokens=77, style_words=["anime", "2d"])
    assert c.text == "luca, animated 2door car"


def test_trimmed_from_the_end_to_the_budget():
    fields = [f"field number {i} with several words" for i in range(30)]
    c = compose("luca", "a 3d animated character", fields, max_tokens=40)
    assert estimate_tokens(c.text) <= 40
    assert c.text.startswith("luca, a 3d animated character, field number 0")
    assert c.dropped and c.dropped[-1] == "field number 29 with several words" or len(c.dropped) > 0


def _tiny_clip_tokenizer(tmp_path):
    """A real CLIPTokenizer built in memory whose vocabulary is single characters (byte-level
    alphabet, no merges): one token per character, plus BOS and EOS."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in sorted(ByteLevel.alphabet()):
        vocab[ch] = len(vocab)
        vocab[ch + "</w>"] = len(vocab)
    tok = CLIPTokenizer(vocab=vocab, merges=[])
    tok.save_pretrained(str(tmp_path / "tok"))
    return tok


def test_token_budget_counted_with_a_clip_tokenizer(tmp_path):
    tok = _tiny_clip_tokenizer(tmp_path)
    count = tokenizer_counter(tok)
    assert count("ab, c") == 2 + 4  # a b , c + BOS + EOS
    c = compose("luca", "a 3d character", ["close-up", "front view", "wearing red and white"], max_tokens=40,
                count=count)
    assert count(c.text) <= 40
    assert c.text == "luca, a 3d character, close-up, front view"
    counter, how = load_token_counter(str(tmp_path / "tok"))
    assert how.startswith("tokenizer") and counter("ab, c") == 6
    counter, how = load_token_counter(str(tmp_path / "missing"))
    assert how.startswith("estimate") and counter is estimate_tokens


def test_intrinsic_traits_pruned():
    fields = [
        {"outfit": {"value": "wearing red and blue", "colors": ["red", "blue"], "confidence": 0.8}},
        {"outfit": {"value": "wearing green and blue", "colors": ["green", "blue"], "confidence": 0.8}},
        {"outfit": {"value": "wearing blue", "colors": ["blue"], "confidence": 0.8}},
    ]
    drop = intrinsic_traits(fields, 0.8)
    assert drop == {("colors", "blue")}
    assert prune_fields(fields[0], drop)["outfit"]["value"] == "wearing red"
    assert prune_fields(fields[2], drop)["outfit"]["value"] == ""


@pytest.mark.parametrize("text", ["", "   "])
def test_empty_edit_refused(tmp_path, text):
    from animlora.catalog import Catalog
    from animlora.errors import BadInputError
    from animlora.records.caption import store_edit

    with Catalog(tmp_path / "c.sqlite") as cat, pytest.raises(BadInputError):
        store_edit(cat, "i1", "luca", text)
