"""Weights shipped inside npm packages.

``@imgly/background-removal-data`` carries the ISNet general-use matting model as ONNX,
split into 4 MiB chunks named by their sha256 and listed in ``dist/resources.json``
(``/models/medium``: fp16 weights with float32 input/output; ``/models/small``: uint8
quantised). The fetcher gets the package tarball with ``npm pack`` (or straight from the
registry URL when npm is not installed), checks every chunk's hash and reassembles the
model as ``isnet.onnx``; the resolver then checks the whole file's sha256.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from animlora.errors import AnimloraError, BadInputError

IMGLY_PACKAGE = "@imgly/background-removal-data"
IMGLY_VERSION = "1.4.5"
IMGLY_RESOURCE = "/models/medium"
IMGLY_TARBALL = (
    "https://registry.npmjs.org/@imgly/background-removal-data/-/background-removal-data-1.4.5.tgz"
)


def download_tarball(package: str, version: str, url: str, folder: Path) -> Path:
    """The package's .tgz in ``folder``: ``npm pack`` when npm exists, else the registry URL."""
    npm = shutil.which("npm")
    if npm is not None:
        done = subprocess.run(
            [npm, "pack", f"{package}@{version}", "--silent"], cwd=folder, capture_output=True, text=True
        )
        tgz = sorted(folder.glob("*.tgz"))
        if done.returncode == 0 and tgz:
            return tgz[0]
    target = folder / "package.tgz"
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(target, "wb") as out:
            shutil.copyfileobj(response, out)
    except OSError as exc:
        raise AnimloraError(f"cannot download {package}@{version} from npm ({exc})") from exc
    return target


def assemble_from_tarball(tgz: Path, resource: str, target: Path) -> Path:
    """Reassemble ``resource`` (e.g. /models/medium) from the chunks in an npm tarball."""
    with tarfile.open(tgz, "r:gz") as tar:
        try:
            index = json.load(tar.extractfile("package/dist/resources.json"))  # type: ignore[arg-type]
        except KeyError as exc:
            raise BadInputError(tgz, "no dist/resources.json: not a background-removal-data package") from exc
        entry: dict[str, Any] | None = index.get(resource)
        if entry is None:
            raise BadInputError(tgz, f"no {resource} in dist/resources.json (has: {', '.join(index)})")
        written = 0
        with open(target, "wb") as out:
            for chunk in sorted(entry["chunks"], key=lambda c: c["offsets"][0]):
                member = tar.extractfile(f"package/dist/{chunk['hash']}")
                if member is None:
                    raise BadInputError(tgz, f"chunk {chunk['hash']} missing")
                data = member.read()
                start, end = chunk["offsets"]
                if hashlib.sha256(data).hexdigest() != chunk["hash"] or len(data) != end - start or start != written:
                    raise BadInputError(tgz, f"chunk {chunk['hash'][:12]}… is corrupt")
                out.write(data)
                written += len(data)
        if written != entry["size"]:
            raise BadInputError(tgz, f"{resource}: {written} bytes reassembled, {entry['size']} expected")
    return target


def fetch_imgly_isnet(spec: Any, dest: Path) -> None:
    """``other_source`` of the ``isnet`` model: write ``dest/isnet.onnx``."""
    with tempfile.TemporaryDirectory(prefix="animlora-npm-") as tmp:
        tgz = download_tarball(IMGLY_PACKAGE, IMGLY_VERSION, IMGLY_TARBALL, Path(tmp))
        assemble_from_tarball(tgz, IMGLY_RESOURCE, Path(dest) / "isnet.onnx")
