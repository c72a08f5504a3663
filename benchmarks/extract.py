"""Extract benchmark: `animlora extract` vs PySceneDetect's CLI, our shot detection vs
PySceneDetect's, the whole stage vs a plain decode, and what scene-mode sampling gives.

Whole processes (the target): ``animlora extract --input F --output D`` against
``scenedetect -i F -o D detect-adaptive save-images -n 3`` (PySceneDetect's CLI doing the
same job: find the shots, save frames of each), each a subprocess, run round-robin
``--repeat`` times into fresh folders, best wall time kept (and the children's CPU time);
the sampling report (candidates per shot, shots without one) comes from our run.

In ONE process, on the same file, each measured ``--repeat`` times (best kept, since other
work on the machine only ever slows a run down):

- plain decode: PyAV decodes every frame (threaded, its default thread count), nothing
  else: the floor the target is set against; once more with the decoder thread count
  the stage uses (``animlora.io.video.decode_threads``), a stricter floor;
- PySceneDetect: ``scenedetect.detect(path, AdaptiveDetector())`` with its defaults;
- ours: ``animlora.video.shots.detect_shots`` with the extract defaults;
- accuracy: every cut PySceneDetect finds must be found by ours at the same frame;
- the whole extract stage in scene mode (standalone run into a temp folder);
- on the 10-minute film, the stage once more in a child process, for its peak RSS alone.

Usage::

    python benchmarks/extract.py [--trailer PATH] [--film PATH | --fetch-film] [--repeat N] [--cli-only]
    python benchmarks/extract.py --cli-only --repeat 6 --against HEAD~1   # a change, paired with the commit before
    python benchmarks/extract.py --truth /work/cgi/seed2 [--truth /work/cgi/seed3]   # cut F1 etc.

The 10-minute film (Big Buck Bunny, 14,315 frames) is inside the moviepy 2.2.1 sdist;
``--fetch-film`` gets it with pip into ``~/.cache/animlora/bench`` and checks its sha256.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

FILM_SHA256_PREFIX = "475fbbf3"
FILM_ZIP = "moviepy-2.2.1/docs/_static/medias/getting_started/moviepy_10_minutes/moviepy_10_minutes.zip"
CACHE = Path.home() / ".cache" / "animlora" / "bench"


def fetch_film() -> Path | None:
    """bbb.mp4 from the moviepy sdist (pip download), cached; None when it cannot be had."""
    import tarfile

    target = CACHE / "bbb.mp4"
    if target.is_file():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "moviepy==2.2.1",
           "-d", str(CACHE)]
    if subprocess.run(cmd, capture_output=True).returncode != 0:
        print("could not download moviepy 2.2.1 (offline?): skipping the 10-minute film")
        return None
    sdist = next(CACHE.glob("moviepy-2.2.1.tar.gz"))
    with tarfile.open(sdist) as tar:
        member = tar.extractfile(FILM_ZIP)
        assert member is not None
        with zipfile.ZipFile(member) as zf:
            name = next(n for n in zf.namelist() if n.endswith("resources/bbb.mp4"))
            target.write_bytes(zf.read(name))
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    if not digest.startswith(FILM_SHA256_PREFIX):
        target.unlink()
        raise SystemExit(f"bbb.mp4 sha256 {digest[:8]} != {FILM_SHA256_PREFIX}: not the expected file")
    return target


def measure(repeat: int, named: dict) -> dict:
    """Run every function ``repeat`` times, round-robin (so a burst of load from other
    processes hits all of them alike); keep each one's best wall and CPU seconds."""
    best = {name: [float("inf"), float("inf"), None] for name in named}
    for _ in range(repeat):
        for name, fn in named.items():
            wall, cpu = time.perf_counter(), time.process_time()
            result = fn()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            entry = best[name]
            entry[0], entry[1], entry[2] = min(entry[0], wall), min(entry[1], cpu), result
    return best


def plain_decode(path: Path, threads: int = 0) -> int:
    """PyAV's threaded decode of every frame; ``threads`` 0 = its default thread count."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if threads:
            stream.thread_count = threads
        return sum(1 for _ in container.decode(stream))


def pyscenedetect(path: Path) -> list[int]:
    from scenedetect import AdaptiveDetector, detect

    scenes = detect(str(path), AdaptiveDetector())
    return [start.frame_num for start, _ in scenes[1:]]


def ours(path: Path) -> tuple[list, int]:
    from animlora.config import load_settings
    from animlora.video.shots import detect_shots

    s = load_settings().settings.extract
    found, count, _ = detect_shots(path, detector=s.detector, threshold=s.threshold,
                                   min_shot_frames=s.min_shot_frames, analysis_width=s.analysis_width,
                                   dissolve_threshold=s.dissolve_threshold)
    return found, count


def stage(path: Path, quality: str = "high") -> dict:
    from animlora.config import load_settings
    from animlora.pipeline.runner import Runner
    from animlora.stages import get_stage
    from animlora.workspace import Workspace

    with tempfile.TemporaryDirectory() as tmp:
        loaded = load_settings(overrides={"extract": {"mode": "scene", "quality": quality}})
        runner = Runner(Workspace.for_output(Path(tmp) / "out"), loaded, input_path=path)
        runner.run([get_stage("extract")])
        report = json.loads((Path(tmp) / "out" / "extraction_results.json").read_text())
    return report["totals"]


def child_stage(path: Path) -> tuple[float, float]:
    """The stage alone in a child process: (seconds, peak RSS in MiB)."""
    code = (
        "import sys, time, resource; sys.path.insert(0, {!r}); sys.path.insert(0, {!r});"
        "from extract import stage; t = time.perf_counter(); stage(__import__('pathlib').Path({!r}));"
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    ).format(str(REPO / "src"), str(REPO / "benchmarks"), str(path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    seconds, rss = out.split()[-2:]
    return float(seconds), float(rss)


def _child_run(cmd: list[str], env: dict) -> tuple[float, float]:
    """(wall, CPU) seconds of one subprocess (CPU: user + system of the child and its threads)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _images_digest(folder: Path) -> str:
    """One digest of every image a run wrote (names and bytes): two runs wrote the same frames."""
    digest = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.suffix in (".jpg", ".png")):
        digest.update(f.relative_to(folder).as_posix().encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()


def cli_versus_pyscenedetect(path: Path, repeat: int, against: str | None = None) -> dict:
    """`animlora extract` vs `scenedetect ... detect-adaptive save-images -n 3`, whole processes;
    with ``against`` (a git revision), also `animlora extract` as that revision has it, in the
    same round-robin: a paired measure of a change, far steadier than two ratios to the CLI."""
    import os
    import shutil

    scenedetect = shutil.which("scenedetect") or str(Path(sys.executable).with_name("scenedetect"))
    ours, theirs, before = "animlora extract", "scenedetect CLI", f"animlora extract @{against}"
    best = {name: [float("inf"), float("inf")] for name in (ours, theirs, *([before] if against else []))}
    images, digests = {}, {}
    report = None
    loads = [os.getloadavg()[0]]  # the machine may be shared: the load during the runs is part of the result
    with tempfile.TemporaryDirectory() as tmp:
        sources = {ours: REPO / "src", theirs: REPO / "src"}
        if against:  # that revision's package, unpacked beside
            tree = Path(tmp) / "against"
            tree.mkdir()
            archive = subprocess.run(["git", "-C", str(REPO), "archive", against, "src"], check=True,
                                     capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
            sources[before] = tree / "src"
        for r in range(repeat):
            for name in best:
                out = Path(tmp) / f"run{len(images)}_{r}"
                if name == theirs:
                    cmd = [scenedetect, "-q", "-i", str(path), "-o", str(out), "detect-adaptive", "save-images",
                           "-n", "3"]
                else:
                    cmd = [sys.executable, "-m", "animlora", "extract", "--input", str(path), "--output", str(out)]
                wall, cpu = _child_run(cmd, {**os.environ, "PYTHONPATH": str(sources[name])})
                loads.append(os.getloadavg()[0])
                best[name] = [min(best[name][0], wall), min(best[name][1], cpu)]
                images[name] = sum(1 for f in out.rglob("*") if f.suffix in (".jpg", ".png"))
                if name != theirs and r == 0:
                    digests[name] = _images_digest(out)
                if name == ours:
                    report = json.loads((out / "extraction_results.json").read_text())
                shutil.rmtree(out)
    (ow, oc), (pw, pc) = best[ours], best[theirs]
    print(f"  whole process, best of {repeat} (round-robin):  animlora extract {ow:.2f} s wall / {oc:.2f} s CPU "
          f"({images[ours]} images);  scenedetect CLI {pw:.2f} s / {pc:.2f} s ({images[theirs]} images)")
    print(f"  animlora extract vs scenedetect CLI: wall {pw / ow:.2f}x, CPU {pc / oc:.2f}x   (target >= 2); "
          f"load average (1 min) during the runs {min(loads):.1f}-{max(loads):.1f}")
    if against:
        bw, bc = best[before]
        print(f"  this tree vs {against}: {bw:.2f} -> {ow:.2f} s wall ({bw / ow:.3f}x), {bc:.2f} -> {oc:.2f} CPU-s "
              f"({bc / oc:.3f}x); the same images: {'yes' if digests[before] == digests[ours] else 'NO'}")
    assert report is not None
    sampling_report(report)
    return {"ratio_wall": pw / ow, "ratio_cpu": pc / oc}


def sampling_report(report: dict) -> None:
    """Candidates per shot from one extract run's extraction_results.json."""
    from collections import Counter

    for video in report["videos"]:
        shots = video["shots"]
        kept = [s["kept"] for s in shots]
        hist = ", ".join(f"{k}: {n}" for k, n in sorted(Counter(kept).items()))
        print(f"  sampling: {sum(kept)} candidates (budget {video.get('budget')}) from {len(shots)} shots; "
              f"per shot min {min(kept)} / median {sorted(kept)[len(kept) // 2]} / max {max(kept)}")
        print(f"  candidates per shot -> shots: {hist}")
        print(f"  shots with no candidate: {len(video.get('shots_without_candidates', []))}; "
              f"all-black shots (none by design): {video.get('black_shots', [])}")


def score_cuts(boundaries: list[int], truth: dict, tolerance: int = 2) -> dict:
    """Shot boundaries against a cgi-bench ``truth.json`` (the definitions of
    benchmarks/quality.py): a boundary within ``tolerance`` frames of a truth cut is a hit
    (each cut matched once); the dissolve is one transition (the first boundary inside
    [first - tol, last + tol] is a hit, more are false); a boundary at the flash is false."""
    cuts = list(truth["cuts"])
    first, last = truth["dissolve"]
    flash = truth.get("flash_frames") or [truth["flash_frame"]]
    in_dissolve = [b for b in boundaries if first - tolerance <= b <= last + tolerance]
    at_flash = [b for b in boundaries if min(flash) - tolerance <= b <= max(flash) + tolerance]
    rest = [b for b in boundaries if b not in in_dissolve]
    unmatched = list(cuts)
    hits = 0
    for b in rest:
        near = [c for c in unmatched if abs(c - b) <= tolerance]
        if near:
            unmatched.remove(min(near, key=lambda c: abs(c - b)))
            hits += 1
    tp = hits + (1 if in_dissolve else 0)
    fp = len(boundaries) - tp
    fn = len(cuts) + 1 - tp
    precision = tp / max(1, tp + fp)
    recall = tp / max(1, tp + fn)
    f1 = 2 * precision * recall / max(1e-9, precision + recall)
    return {"f1": round(f1, 4), "precision": round(precision, 4), "recall": round(recall, 4),
            "missed_cuts": unmatched, "false": [b for b in rest if all(abs(c - b) > tolerance for c in cuts)],
            "dissolve_boundaries": len(in_dissolve), "flash_cut": bool(at_flash)}


def truth_check(folder: Path) -> dict:
    """Shot detection (the stage's settings) on a cgi-bench render: cut F1 >= 0.97, the
    dissolve found once, the flash not a cut."""
    found, _ = ours(folder / "film.mp4")
    truth = json.loads((folder / "truth.json").read_text())
    result = score_cuts([b.index for b in found], truth)
    ok = result["f1"] >= 0.97 and result["dissolve_boundaries"] == 1 and not result["flash_cut"]
    print(f"  {folder}: cut F1 {result['f1']} (P {result['precision']}, R {result['recall']}), dissolve "
          f"boundaries {result['dissolve_boundaries']} (want 1), flash a cut: {result['flash_cut']}; "
          f"missed {result['missed_cuts']}, false {result['false']}  -> {'met' if ok else 'NOT met'}")
    return result


def bench(path: Path, repeat: int, memory: bool) -> dict:
    from animlora.io.video import decode_threads

    print(f"\n== {path.name}")
    threads = decode_threads()
    runs = measure(repeat, {
        "plain decode": lambda: plain_decode(path),
        f"plain decode, {threads} threads": lambda: plain_decode(path, threads),
        "PySceneDetect detect()": lambda: pyscenedetect(path),
        "ours detect_shots()": lambda: ours(path),
        "extract stage, PNG": lambda: stage(path),
        "extract stage, JPEG": lambda: stage(path, "medium"),
    })
    frames = runs["plain decode"][2]
    psd_cuts = runs["PySceneDetect detect()"][2]
    found, count = runs["ours detect_shots()"][2]
    totals = runs["extract stage, PNG"][2]
    assert count == frames, (count, frames)
    our_cuts = [b.index for b in found]
    missed = [c for c in psd_cuts if c not in our_cuts]
    print(f"frames: {frames}   (best of {repeat}, run round-robin; CPU = process CPU time, all threads)")
    print(f"  {'':28s} {'wall frames/s':>14s} {'CPU frames/s':>14s}")
    for name, (wall, cpu, _) in runs.items():
        print(f"  {name:28s} {frames / wall:14.1f} {frames / cpu:14.1f}")

    def ratio(a: str, b: str) -> str:
        return f"wall {runs[b][0] / runs[a][0]:.2f}x, CPU {runs[b][1] / runs[a][1]:.2f}x"

    print(f"  shot detection vs PySceneDetect:      {ratio('ours detect_shots()', 'PySceneDetect detect()')}"
          "   (target >= 2)")
    print(f"  extract stage (PNG) vs plain decode:  {ratio('extract stage, PNG', 'plain decode')}"
          "   (target >= 0.8)")
    print(f"  extract stage (JPEG) vs plain decode: {ratio('extract stage, JPEG', 'plain decode')}")
    print(f"  extract stage (PNG) vs plain decode with our {threads} decoder threads: "
          f"{ratio('extract stage, PNG', f'plain decode, {threads} threads')}   (a stricter baseline)")
    print(f"  PySceneDetect cuts: {len(psd_cuts)}; ours: {len(our_cuts)} "
          f"({sum(b.transition == 'dissolve' for b in found)} of them dissolves/fades); "
          f"PySceneDetect cuts ours does not have at the same frame: {missed or 'none'}")
    print(f"  frames kept by the stage: {totals['kept']}, rejected: {totals['rejected']}")
    result = {"frames": frames, "missed": missed}
    if memory:
        seconds, rss = child_stage(path)
        print(f"  extract stage alone in a child process: {seconds:.1f} s, peak RSS {rss:.0f} MiB "
              f"(target < 1536)")
        result["rss_mib"] = rss
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    shared = next((p / "shared" for p in REPO.parents if (p / "shared" / "media").is_dir()), REPO.parent / "shared")
    parser.add_argument("--trailer", type=Path, default=shared / "media" / "trailer_bbb.mp4")
    parser.add_argument("--film", type=Path, default=CACHE / "bbb.mp4")
    parser.add_argument("--fetch-film", action="store_true", help="download the 10-minute film if missing")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--cli-only", action="store_true", help="only the whole-process comparison")
    parser.add_argument("--against", metavar="REV", help="also time `animlora extract` as git revision REV has it, "
                        "in the same round-robin, and say whether it wrote the same images")
    parser.add_argument("--truth", type=Path, action="append", default=[],
                        help="a cgi-bench render folder (film.mp4 + truth.json): score the cuts, then stop")
    args = parser.parse_args()
    if args.truth:
        for folder in args.truth:
            truth_check(folder)
        return
    import os

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load:.1f} at start")
    if args.trailer.is_file():
        print(f"\n== {args.trailer.name}: whole processes")
        cli_versus_pyscenedetect(args.trailer, args.repeat, args.against)
        if not args.cli_only:
            bench(args.trailer, args.repeat, memory=False)
    else:
        print(f"no trailer at {args.trailer}")
    film = args.film if args.film.is_file() else (fetch_film() if args.fetch_film else None)
    if film is not None:
        print(f"\n== {film.name}: whole processes")
        cli_versus_pyscenedetect(film, max(1, args.repeat - 1), args.against)
        if not args.cli_only:
            bench(film, max(1, args.repeat - 1), memory=True)
    else:
        print("\n(10-minute film not present: pass --film PATH or --fetch-film)")


if __name__ == "__main__":
    main()
