"""Issue 11, item 3: do *pretrained* image features see past the light where the colour vector
cannot (the film's Buck in four light-split folders)? Measured with the only pretrained image
classifiers a package registry ships here: the nsfwjs npm package (MIT) carries Keras
MobileNetV2 (224 px) and InceptionV3 (299 px) models, ImageNet-initialised and fine-tuned on 5
classes (drawing, hentai, neutral, porn, sexy), as uint8-quantised TensorFlow.js weights. They
are loaded into ``keras.applications``' own architectures (Keras 3, torch backend) by layer name
(MobileNetV2) or creation order (InceptionV3), and a layer's output, averaged over the image,
is the feature. Features are centred on the project's mean before any cosine (ReLU features
share a large common part: uncentred, every cluster pair measures 0.99).

    pip install keras            # and node + npm on the PATH (unpacking the weights)
    python benchmarks/pretrained_probe.py PROJECT --truth quality.json          # a cgi-bench seed
    python benchmarks/pretrained_probe.py FILM --same character_1+character_4+character_5+character_7
    ... --model inception_v3 ; --layer block_13_expand_relu (MobileNetV2's mid-level; default: the last)

Prints, as benchmarks/film_cnn.py does, ``nn_other_shot`` for the colour vectors, the
pretrained features and both concatenated, the ``--same`` light-split measure, and the cluster
pairs most alike in the pretrained space (centroid cosine) with their colour centroid cosine:
whether a bound on them would join one character's light-split clusters and nothing else.
Measured and not kept: docs/identity.md, "Pretrained features (nsfwjs' MobileNetV2; issue 11, session 21)".
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from film_cnn import _cutout, _on_grey, label_arguments, labelled_cutouts, report  # noqa: E402

PACKAGE = "nsfwjs@4.4.0"
SIZES = {"mobilenet_v2": 224, "inception_v3": 299}


def fetch(kind: str, cache: Path) -> dict[str, np.ndarray]:
    """The model's weights by TF.js name (dequantised float32), from the npm package (cached)."""
    folder = cache / kind
    if not (folder / "manifest.json").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["npm", "pack", PACKAGE, "--silent"], cwd=tmp, check=True, capture_output=True)
            with tarfile.open(next(Path(tmp).glob("*.tgz"))) as tar:
                tar.extractall(tmp, filter="data")
            models = Path(tmp) / "package" / "dist" / "models" / kind
            # the files are UMD modules: node evaluates the model's (a JS object literal, not JSON)
            script = ("const j=require(process.argv[1]);"
                      "process.stdout.write(JSON.stringify(j.weightsManifest));")
            manifest = json.loads(subprocess.run(["node", "-e", script, str(models / "model.min.js")], check=True,
                                                 capture_output=True, text=True).stdout)
            blob = b""
            for name in manifest[0]["paths"]:
                text = (models / f"{name}.min.js").read_text()
                blob += base64.b64decode(re.search(r'exports\s*=\s*"([A-Za-z0-9+/=]+)"', text).group(1))
        (folder / "weights.bin").write_bytes(blob)
        (folder / "manifest.json").write_text(json.dumps(manifest))
    manifest = json.loads((folder / "manifest.json").read_text())
    blob = (folder / "weights.bin").read_bytes()
    weights, offset = {}, 0
    for w in manifest[0]["weights"]:
        n = int(np.prod(w["shape"])) if w["shape"] else 1
        q = w.get("quantization")
        if q:
            raw = np.frombuffer(blob, q["dtype"], n, offset)
            offset += n * np.dtype(q["dtype"]).itemsize
            arr = raw.astype(np.float32) * q["scale"] + q["min"]
        else:
            arr = np.frombuffer(blob, np.float32, n, offset).copy()
            offset += n * 4
        weights[w["name"]] = arr.reshape(w["shape"])
    if offset != len(blob):
        raise SystemExit(f"{folder}: the weights file does not match its manifest")
    return weights


def build(kind: str, weights: dict[str, np.ndarray], layer: str | None) -> object:
    """keras.applications' architecture with the npm weights; returns images (N, S, S, 3 in
    0..1, as nsfwjs feeds them) -> (N, C) features of ``layer`` (default: the last, pooled)."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    size = SIZES[kind]
    if kind == "mobilenet_v2":
        model = keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=(size, size, 3))
        for lay in model.layers:
            names = [f"{lay.name}/depthwise_kernel" if isinstance(lay, keras.layers.DepthwiseConv2D) and v.name == "kernel"
                     else f"{lay.name}/{v.name}" for v in lay.weights]
            if names:
                lay.set_weights([weights[n] for n in names])
    else:
        model = keras.applications.InceptionV3(weights=None, include_top=False, input_shape=(size, size, 3))

        def order(lay: object) -> int:  # Keras names layers of a kind in creation order: conv2d, conv2d_1, ...
            m = re.search(r"_(\d+)$", lay.name)
            return int(m.group(1)) if m else 0

        convs = sorted((lay for lay in model.layers if isinstance(lay, keras.layers.Conv2D)), key=order)
        bns = sorted((lay for lay in model.layers if isinstance(lay, keras.layers.BatchNormalization)), key=order)
        for i, lay in enumerate(convs, 1):  # TF.js (Keras 2) names count from 1
            lay.set_weights([weights[f"conv2d_{i}/kernel"]])
        for i, lay in enumerate(bns, 1):
            lay.set_weights([weights[f"batch_normalization_{i}/{v.name}"] for v in lay.weights])
    sub = keras.Model(model.inputs, model.get_layer(layer).output if layer else model.outputs[0])

    def features(images: np.ndarray) -> np.ndarray:
        out = sub([images.astype(np.float32)])
        return np.asarray(out.detach().cpu() if hasattr(out, "detach") else out).mean(axis=(1, 2))

    return features


def centred(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(0)
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-9)


def cluster_pairs(project: Path, ids: list[str], spaces: dict[str, np.ndarray], labels: list[str | None],
                  top: int) -> None:
    """The cluster pairs most alike in the first space after colour, with their colour similarity
    and their majority labels (centroid cosines of the cluster stage's character clusters)."""
    index = {i: k for k, i in enumerate(ids)}
    members: dict[str, list[int]] = {}
    db = sqlite3.connect(project / "catalog.sqlite")
    for iid, character in db.execute("SELECT instance_id, character FROM character_members"):
        if iid in index:
            members.setdefault(character, []).append(index[iid])
    name = [k for k in spaces if k != "colour"][0]

    def centre(x: np.ndarray, ks: list[int]) -> np.ndarray:
        v = x[ks].mean(0)
        return v / np.linalg.norm(v)

    def majority(ks: list[int]) -> str:
        found = Counter(labels[k] for k in ks if labels[k] is not None)  # of its labelled members
        if not found:
            return "- 0/0"
        lab, n = found.most_common(1)[0]
        return f"{lab} {n}/{sum(found.values())}"

    names = sorted(members, key=lambda c: -len(members[c]))
    pairs = []
    for a in range(len(names)):
        for b in range(a + 1, len(names)):
            ka, kb = members[names[a]], members[names[b]]
            pairs.append((float(centre(spaces[name], ka) @ centre(spaces[name], kb)),
                          float(centre(spaces["colour"], ka) @ centre(spaces["colour"], kb)), names[a], names[b]))
    print(f"cluster pairs by {name} centroid cosine (colour's beside it):")
    for s, c, a, b in sorted(pairs, reverse=True)[:top]:
        same = majority(members[a]).split()[0] == majority(members[b]).split()[0]
        print(f"  {s:6.3f}  colour {c:.3f}  {'SAME' if same else '    '}  {a} ({majority(members[a])})"
              f" + {b} ({majority(members[b])})")


def main() -> None:
    ap = label_arguments(argparse.ArgumentParser(description=__doc__.split("\n\n")[0]))
    ap.add_argument("--model", choices=sorted(SIZES), default="mobilenet_v2")
    ap.add_argument("--layer", help="a layer's output, averaged over the image (default: the last)")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "animlora" / "nsfwjs")
    ap.add_argument("--pairs", type=int, default=12, help="cluster pairs to list")
    a = ap.parse_args()

    import cv2

    ids, rows, col, labels, folders = labelled_cutouts(a.project, a.truth, a.same)
    features = build(a.model, fetch(a.model, a.cache), a.layer)
    size = SIZES[a.model]
    out = []
    for k in range(0, len(rows), 32):  # cut-outs on grey, centred in a square with a margin
        batch = [cv2.resize(_on_grey(_cutout(a.project / r[1], size * 4 // 5)), (size, size)) for r in rows[k:k + 32]]
        out.append(features(np.stack(batch)))
    pre = centred(np.concatenate(out))
    print(f"{len(ids)} cut-outs, {sum(lab is not None for lab in labels)} labelled; {a.model} "
          f"{a.layer or 'last layer'}: {pre.shape[1]} features")
    name = a.model + ("" if not a.layer else f"[{a.layer}]")
    spaces = {"colour": col, name: pre, f"colour+{a.model}": np.concatenate([col, pre], 1)}
    report(spaces, labels, [r[3] for r in rows], folders, a.same)
    cluster_pairs(a.project, ids, spaces, labels, a.pairs)


if __name__ == "__main__":
    main()
