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
