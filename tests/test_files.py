"""The one file hash and the one file-name sanitiser (io/files.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from animlora.io.files import file_sha256, portable, safe_name


def test_file_sha256_equals_hashlib_of_the_bytes(tmp_path: Path) -> None:
    data = bytes(range(256)) * 5000  # > 1 MiB: several blocks
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()


def test_safe_name_keeps_letters_digits_and_replaces_the_rest_one_for_one() -> None:
    assert safe_name("Big Buck Bunny (2008)") == "Big_Buck_Bunny__2008"
    assert safe_name("Amélie") == "Amélie"
    assert safe_name("../etc/passwd") == "etc_passwd"
    assert safe_name("a/b\\c:d") == "a_b_c_d"
    assert safe_name("shot-01.v2") == "shot-01.v2"
    assert safe_name("...", default="video") == "video"
    assert safe_name("") == "item"
    assert safe_name(42) == "42"


def test_portable_writes_paths_inside_the_project_relative_to_it_at_any_depth(tmp_path):
    root = tmp_path / "proj"
    value = {"source": str(root / "frames" / "a.jpg"), "masks": [(str(root / "m.png"), 3)],
             "outside": "/data/film.mp4", "sibling": str(tmp_path / "proj2" / "x.png"), "n": 1.5,
             "path": root / "p.png"}
    assert portable(value, root) == {"source": "frames/a.jpg", "masks": [("m.png", 3)], "outside": "/data/film.mp4",
                                     "sibling": str(tmp_path / "proj2" / "x.png"), "n": 1.5, "path": "p.png"}
    assert portable(value, None) is value
