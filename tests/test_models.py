from __future__ import annotations

import hashlib

import pytest

from animlora.config import load_settings
from animlora.errors import BadInputError, ModelNotFoundError
from animlora.models import MODELS, import_model, locate, resolve
from animlora.models.registry import ModelSpec, register


@pytest.fixture
def spec():
    payload = b"weights"
    s = ModelSpec(
        name="test-model", kind="segmentation", description="test", used_by=("segment.test",),
        hf_repo="nobody/test-model", sha256={"model.onnx": hashlib.sha256(payload).hexdigest()},
    )
    register(s)
    yield s, payload
    MODELS.pop("test-model")


def settings(**models):
    return load_settings(overrides={"models": models} if models else None).settings.models


def test_missing_model_error_names_places_and_fix(spec):
    with pytest.raises(ModelNotFoundError) as err:
        resolve("test-model", settings())
    message = str(err.value)
    assert message.startswith("model 'test-model' not found")
    assert "Hugging Face cache (nobody/test-model)" in message
    assert "the hub: skipped, offline" in message  # HF_HUB_OFFLINE=1 in tests
    assert "animlora models pull test-model" in message and "animlora models import test-model" in message


def test_configured_path_wins(spec, tmp_path):
    weights = tmp_path / "mine.onnx"
    weights.write_bytes(b"anything")
    assert resolve("test-model", settings(paths={"test-model": str(weights)})) == weights
    with pytest.raises(BadInputError, match="models.paths.test-model points to nothing"):
        resolve("test-model", settings(paths={"test-model": str(tmp_path / "gone.onnx")}))


def test_import_checks_sha256_then_resolves_from_the_store(spec, tmp_path):
    s, payload = spec
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not the weights")
    with pytest.raises(BadInputError, match="checksum mismatch"):
        import_model("test-model", bad, settings())
    assert locate("test-model", settings()).path is None
    good = tmp_path / "good.onnx"
    good.write_bytes(payload)
    dest = import_model("test-model", good, settings())
    assert (dest / "model.onnx").read_bytes() == payload
    where = locate("test-model", settings())
    assert (where.path, where.source) == (dest, "store")
    assert resolve("test-model", settings()) == dest


def test_unknown_model_lists_known_ones():
    with pytest.raises(Exception, match="unknown model 'nope'"):
        resolve("nope", settings())
