"""One form for every stage's ``fallback`` setting: none | auto | a backend name; the booleans
of earlier releases read as auto/none and hash as they did, so upgrading redoes nothing."""

from __future__ import annotations

import hashlib
import json

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
    assert s.segment.fallback is False and settings("segment.fallback=auto").segment.fallback is True
    with pytest.raises(ConfigError):
        settings("inpaint.fallback=sometimes")


def test_booleans_of_earlier_releases_read_as_auto_and_none_and_hash_as_before():
    on, off = settings("inpaint.fallback=true", "enhance.fallback=true"), settings("inpaint.fallback=false")
    assert (on.inpaint.fallback, on.enhance.fallback, off.inpaint.fallback) == ("auto", "auto", "none")
    assert settings().inpaint.fallback == "auto"  # the shipped default, as `true` was
    # the fingerprint an earlier release computed: the section's values with fallback a boolean
    for s, old in ((on, True), (off, False)):
        values = s.inpaint.model_dump(mode="json") | {"fallback": old}
        values.pop("plates")  # whether plates are made (added later) is never hashed
        for name, same in s.inpaint.added_fields.items():
            if values.get(name) == same:
                values.pop(name)
        blob = json.dumps(values, sort_keys=True, separators=(",", ":"))
        assert s.inpaint.fingerprint() == hashlib.sha256(blob.encode()).hexdigest()
    assert on.inpaint.fingerprint() != off.inpaint.fingerprint()


def test_the_setting_picks_from_the_declared_fallbacks():
    assert fallback_chain("inpainting", "sd", "auto") == ["sd", "lama", "opencv"]
    assert fallback_chain("inpainting", "sd", "opencv") == ["sd", "opencv"]
    assert fallback_for("inpainting", "sd", "auto") == "lama"
    assert fallback_for("inpainting", "lama", "auto") == fallback_for("inpainting", "lama", True) == "opencv"
    assert fallback_for("inpainting", "lama", "none") is None and fallback_for("inpainting", "opencv", "auto") is None
    assert fallback_for("embedding", "siglip", "color") == fallback_for("embedding", "siglip", "auto") == "color"
    assert fallback_for("captioning", "florence2", "auto") == "template"
    assert fallback_for("enhance", "spandrel", "auto") == "opencv"
