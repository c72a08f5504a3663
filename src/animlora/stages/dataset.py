"""Dataset stage: one training set per character, in the folders trainers read as they are.

Per character (one work item):
1. gather usable instances (readable cut-out, source frame present, non-empty caption), listing
   every one left out and why;
2. quality (sharpness, size, truncation), near-duplicates out, farthest-point sampling on the
   embeddings with a shot/track/video spread penalty, up to ``target_size``;
3. captions: trigger word, prefix, fields (identity-intrinsic traits pruned), 77-token budget;
4. images: aspect-ratio bucket, crop around the character, background mode;
5. files: ``images/`` (image + .txt side by side: the diffusers/ai-toolkit layout and sd-scripts'
   DreamBooth layout), ``captions/``, ``metadata.json`` (lineage), ``metadata.jsonl``,
   ``dataset.toml`` (sd-scripts, DreamBooth style) and ``dataset_finetune.toml`` (JSONL metadata),
   optionally ``kohya/{repeats}_{name}/`` and a regularisation set ``reg/``.
``min_size`` and ``small_size`` count the images that are written: a character with fewer than
``min_size`` gets no dataset, one with fewer than ``small_size`` a dataset marked small; both are
warned about, and every instance left out is listed with its reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from animlora.curation.sources import (
    Member,
    folder_members,
    noise_nearest,
    project_members,
    stage_dir,
    stat_key,
    trigger_for,
)
from animlora.errors import BadInputError
from animlora.io.files import atomic_write_json, atomic_write_text, portable, safe_name
from animlora.pipeline.stage import (
    ItemOutput,
    Progress,
    RunSummary,
    Stage,
    StageContext,
    StageJob,
    WorkItem,
    digest,
)
from animlora.records import dataset as records

RESULTS_FILE = "dataset_results.json"
SKIPPED_DIR = ".skipped"


def _written_in(output_dir: Path) -> str | None:
    """The project folder a dataset written by an earlier release names: read from a
    character's ``dataset.toml`` (``image_dir = ".../<project>/<output folder>/<character>/images"``);
    None when there is none."""
    import tomllib

    for config in sorted(output_dir.glob("*/dataset.toml")):
        try:
            image_dir = tomllib.loads(config.read_text(encoding="utf-8"))["datasets"][0]["subsets"][0]["image_dir"]
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            continue
        folder = Path(image_dir)
        if folder.name == "images" and len(folder.parts) > 3 and folder.parts[-3] == output_dir.name:
            return str(folder.parents[2])
    return None


def _built_sets(output_dir: Path) -> Iterator[tuple[Path, str, list[dict[str, Any]]]]:
    """(its metadata.json, character, image records with a file and an instance) of each
    character's set built before: what the stage wrote, to compare with what is there now."""
    for meta_path in sorted(output_dir.glob("*/metadata.json")):
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        character = meta.get("character") if isinstance(meta, dict) else None
        if character:
            yield meta_path, character, [r for r in (meta.get("images") or [])
                                         if isinstance(r, dict) and r.get("file") and r.get("instance_id")]


class DatasetStage(Stage):
    name = "dataset"
    folder = "training_data"
    # 3: crops from the enhance stage where plain resampling is limited; small crops kept at
    #    their own size down to min_image_side
    # 4: a padded cut-out's alpha placed at its padded box (it was squeezed into the tight box)
    # 5: the small parts a foreign piece's cut leaves apart from the body go with it
    # 6: no outfit words for a character most of whose captions measured it bare
    # 7: what a foreign piece's cut leaves apart in the image itself goes with it (specks, remains)
    # 8: foreign pieces where the matte is unsure, and in colours cut from the track's other frames
    # 9: the parts of a mask apart from its body in another colour are cut (no piece needed)
    # 10: a piece is cut along a smooth outline, with the thin rim it leaves
    # 11: a hole in the matte that shows the set beside the figure stays open (not filled)
    # 12: a character's colours: also those of its own light's cluster, where a name joins several
    # 13: a gap the matte was unsure of (half-transparent) that shows the set stays open too
    # 14: a cluster still in more than half its shots is scenery (was: in 60% of them); a partner known to be
    #     another character may stand farther off (GROUP_NEAR_KNOWN)
    # 15: a piece in odd colours that is the body itself in another light (no edge, near its colour) is no
    #     other character's
    version = "15"
    upstream = ("caption", "cluster", "embed", "enhance")

    def settings_hash(self, settings: Any) -> str:
        # captions are composed here too (prefix, lint, token budget): caption settings count
        return digest(self.version, settings.dataset.fingerprint(), settings.caption.fingerprint(),
                      settings.project.seed)

    def check_inputs(self, job: StageJob) -> None:
        if job.standalone and (job.input_path is None or not job.input_path.is_dir()):
            raise BadInputError(job.input_path or "?", "expected a folder of cut-outs or an animlora project")
        s = job.settings.dataset
        if isinstance(s.min_size, int) and s.min_size > s.max_size:
            from animlora.errors import ConfigError

            raise ConfigError(f"dataset.min_size ({s.min_size}) is larger than dataset.max_size ({s.max_size})")

    # -- plan --------------------------------------------------------------------------
    def _sources(self, ctx: StageContext) -> tuple[list[Member], Any, Path | None]:
        """(members, catalog holding captions/embeddings or None, project root or None)."""
        s = ctx.settings.dataset
        wanted = [s.character] if s.character else None
        if not ctx.job.standalone:
            return project_members(ctx.catalog, ctx.workspace.root, wanted), ctx.catalog, ctx.workspace.root
        source = ctx.job.input_path
        assert source is not None
        if (source / "project.yaml").is_file():
            from animlora.workspace import Workspace

            project = Workspace(source)
            catalog = project.open_catalog()
            ctx.extra["source_catalog"] = catalog
            return project_members(catalog, source, wanted), catalog, source
        return folder_members(source, s.character or source.name), None, None

    def plan(self, ctx: StageContext) -> list[WorkItem]:
        from animlora.curation import background, gate, parts
        from animlora.text.captions import character_clothed

        if not ctx.job.standalone:
            built = list(_built_sets(ctx.output_dir))  # read once for both checks
            self._keep_hand_edits(ctx, built)  # first: relocating rewrites metadata.json, the edits' reference time
            self._keep_hand_deletions(ctx, built)
        moved_from = None if ctx.job.standalone else self._relocate(ctx)
        kind = ctx.settings.dataset.kind  # the background/style set: curation/background.py
        extra = background.plan(ctx) if kind != "character" else []
        if kind == "background":
            return extra
        members, catalog, root = self._sources(ctx)
        s = ctx.settings.dataset
        if s.character and not members and catalog is not None and root is not None:
            self._no_such_character(s.character, catalog, root)
        by_char: dict[str, list[Member]] = {}
        for m in members:
            by_char.setdefault(m.character, []).append(m)
        if not by_char:
            ctx.log.warning("dataset: no character instances found (run the cluster/review steps first)")
        captions = self._captions(ctx, catalog, members)
        min_size, min_size_why = gate.resolve_min_size(s.min_size, records.count_shots(catalog) if catalog else None)
        ctx.extra["min_size"] = {"setting": s.min_size, "value": min_size, "why": min_size_why}
        rows = self._instances(catalog) if catalog is not None and s.scenery_check else []
        units = gate.track_parts(rows)  # a track the tracker carried from one thing onto another, in parts
        measures, tracks = self._measures(rows, units)
        wanted = {m.instance_id for m in members}
        # every cluster's members, also when one character's dataset is built: the checks below judge
        # a member against the other characters and the scenery as in a run over all (the same images);
        # read only when a check uses them
        everyone = members
        if s.character and catalog is not None and root is not None and (rows or s.cut_foreign):
            everyone = project_members(catalog, root)
        clusters: dict[str, list[Member]] = {}
        for m in everyone:
            clusters.setdefault(m.character, []).append(m)
        scenery = {}
        by_track = gate.rows_by_track(rows)
        for character, group in clusters.items():
            evidence, shots = self._with_mates(group, measures, by_track)
            scenery[character] = "" if not measures or gate.trusted(character) else gate.not_character(
                evidence, ctx.settings.prefilter.max_text, shots)
        # two or more characters in one mask, a piece of the set segment cut off a character, a lone
        # frame of a track whose other frames are another character (curation/gate.py): left out like a
        # prop track; a member of a cluster taken for scenery is no known "other character"
        known = {m.instance_id: m.character for m in everyone if not scenery[m.character]}
        # the noise witnesses a track's character by the cluster nearest each of its frames
        nearest = ({iid: c for iid, c in noise_nearest(catalog, everyone).items() if not scenery[c]}
                   if rows and catalog is not None else {})
        apart = gate.track_strays(units, known, wanted, nearest) | gate.prop_pieces(rows, wanted) | gate.group_members(
            rows, wanted, known)
        pieces: dict[str, dict[str, Any]] = {}
        colours = bool(rows) and s.colour_check  # another cluster's colours in a mask (scenery_check on too)
        if catalog is not None and root is not None and (colours or s.cut_foreign):
            left_out, pieces = self._foreign_colours(catalog, root, everyone, [c for c, why in scenery.items() if why],
                                                     colours, s.cut_foreign, ctx.settings.caption.alpha_threshold)
            apart = left_out | apart
        # a bite the segment stage took out of a member, joined back into its image (curation/parts.py)
        bitten = parts.bites(members, rows, stage_dir(root, "segment")) if rows and root is not None else {}

        def was(path: str | Path) -> str:  # a project path as named before the project moved
            text = str(path)
            return text if moved_from is None or root is None else moved_from + text[len(str(root)):]

        items = []
        for character, group in sorted(by_char.items()):
            trigger = (ctx.settings.caption.trigger if ctx.job.standalone and root is None else "") or trigger_for(
                root, character)
            embeddings = self._embeddings(catalog, group, s.embedding_model) if catalog is not None else None
            reg = self._reg_frames(catalog, root, character, s.regularization) if catalog is not None else []
            caps = {m.instance_id: captions.get((m.instance_id, character)) for m in group}
            payload = {
                "character": character, "trigger": trigger, "members": [m.to_json() for m in group],
                "captions": caps, "embeddings": embeddings, "reg": reg, "clothed": character_clothed(root, character),
                "min_size": min_size, "min_size_why": min_size_why,
                "not_character": scenery[character],
                "props": {} if not measures or gate.trusted(character) else gate.prop_tracks(
                    [(m.instance_id, m.track_id) for m in group], tracks,
                    {k: np.frombuffer(v, dtype="<f4") for k, v in (embeddings or {}).get("vectors", {}).items()},
                    ctx.settings.prefilter.max_static, ctx.settings.prefilter.max_flat <= 1.0, units),
            }
            payload["props"] = {m.instance_id: apart[m.instance_id] for m in group if m.instance_id in apart
                                } | payload["props"]
            payload["pieces"] = {m.instance_id: pieces[m.instance_id] for m in group if m.instance_id in pieces}
            payload["bites"] = {m.instance_id: bitten[m.instance_id] for m in group if m.instance_id in bitten}
            recipe = (
                trigger, payload["clothed"], min_size, payload["not_character"], sorted(payload["props"].items()),
                *([sorted((k, v["bits"]) for k, v in payload["pieces"].items())] if payload["pieces"] else []),
                *([sorted((k, [p["id"] for p in v]) for k, v in payload["bites"].items())] if payload["bites"] else []),
                [(m.instance_id, stat_key(m.image_path), stat_key(m.frame_path), stat_key(m.filled_path),
                  stat_key(m.enhanced_path), m.enhanced_region, m.problem) for m in group],
                sorted((k, json.dumps(v, sort_keys=True)) for k, v in caps.items()),
                None if embeddings is None else (embeddings["model"], digest(sorted(embeddings["vectors"].items()))),
            )
            # where the project is is not in the recipe (a moved project's files are relocated:
            # :meth:`_relocate`); earlier releases held the output folder and absolute paths,
            # those of where it was when it has just moved
            items.append(WorkItem(character, digest(*recipe, [(portable(p, root), stat_key(p)) for p in reg]),
                                  payload, character,
                                  earlier=digest(*recipe, [(was(p), stat_key(p)) for p in reg], was(ctx.output_dir)),
                                  earlier_same=True))
        if s.character and not ctx.job.standalone:
            # only this character is built: the datasets earlier runs wrote for the others stay as they are
            from animlora.records.runs import done_items

            planned = {item.key for item in items + extra}
            items += [WorkItem(key, fingerprint, label=key, held=True)
                      for key, fingerprint in sorted(done_items(ctx.catalog, self.name).items()) if key not in planned]
        return items + extra

    @staticmethod
    def _no_such_character(name: str, catalog: Any, root: Path) -> None:
        """``dataset.character`` names no character of the project that has one: say which it has."""
        from animlora.curation.summary import name_order
        from animlora.errors import ConfigError

        names = sorted({m.character for m in project_members(catalog, root)}, key=name_order)
        if names:
            raise ConfigError(f"dataset.character {name!r}: no such character in this project "
                              f"(its characters: {', '.join(names)})")

    @staticmethod
    def _instances(catalog: Any) -> list[dict[str, Any]]:
        """Every instance row of the segment stage, its ``measures`` parsed (a dict or None): read
        once for the scenery, prop and group checks."""
        from animlora.curation.gate import parse_measures
        from animlora.records.segment import instance_rows

        return [row | {"measures": parse_measures(row.get("measures"))} for row in instance_rows(catalog)]

    def _foreign_colours(self, catalog: Any, root: Path, members: list[Member], scenery: list[str],
                         colours: bool = True, cut: bool = True, alpha_threshold: float = 0.15
                         ) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
        """(:func:`gate.foreign_colours` and :func:`gate.off_track_colours` of ``members`` when
        ``colours``, :func:`gate.foreign_pieces` of them when ``cut``, the noise witnessing, with the pixels the
        image keeps above ``alpha_threshold`` where the matte is unsure (:func:`gate.unsure_matte`); each piece's
        mask packed for :func:`curation.images.unpack_piece`), kept in ``.animlora/cache/foreign_colours.json`` with what they were computed
        from (each cut-out's size and modification time, the shots' light, the clusters, the rules): a
        run where none of it changed reads no cut-out (the whole film's 341 took 4.6 s of every
        `animlora run`, a project of many films minutes)."""
        from animlora.curation import gate
        from animlora.curation.images import pack_piece
        from animlora.curation.sources import noise_members
        from animlora.identity.light import cache_file, project_plates, shot_gains
        from animlora.records.cluster import assignments
        from animlora.records.embed import shot_light_gains
        from animlora.workspace import STATE_DIR

        gains = shot_light_gains(root) or shot_gains(project_plates(catalog, root), cache_file(root / STATE_DIR))
        noise = noise_members(catalog, root)
        # the base clustering's clusters, which a name or a review merge joins (one light set-up each)
        base = assignments(catalog)
        groups = {m.instance_id: base[m.instance_id] for m in members if m.instance_id in base}
        rules = (self.version, gate.COLOUR_SIDE, gate.COLOUR_BINS, gate.COLOUR_PRESENT, gate.COLOUR_OWN, gate.COLOUR_LIGHT,
                 gate.COLOUR_THEIRS, gate.COLOUR_PIECE, gate.COLOUR_MEMBERS, gate.COLOUR_RARE,
                 gate.COLOUR_STRANGER, gate.COLOUR_STRANGERS, gate.COLOUR_SHADE_APART, gate.COLOUR_SHADE_EDGE,
                 gate.TRACK_STRANGER, gate.TRACK_MATES, gate.TRACK_STRANGERS)
        if cut:
            rules += (gate.CUT_OWN, gate.CUT_SHARE, gate.CUT_MAX, gate.CUT_CHROMA, gate.CUT_APART, gate.CUT_OUTLINE,
                      gate.CUT_SEEN, gate.CUT_WITNESSES, gate.CUT_LEFT_APART, gate.CUT_BODY_COLOUR,
                      gate.CUT_LEFT_LARGE, gate.CUT_SMALL, gate.CUT_UNSURE, gate.CUT_UNSURE_OWN, gate.CUT_CORE,
                      gate.CUT_TRACK, alpha_threshold)
        key = digest(rules, colours, cut, sorted(scenery), sorted(
            (m.instance_id, m.character, groups.get(m.instance_id, ""), m.track_id, portable(m.image_path, root),
             stat_key(m.image_path), list(gains.get(m.shot_id or "") or [])) for m in members + noise if m.image_path))
        path = root / STATE_DIR / "cache" / "foreign_colours.json"
        try:
            kept = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            kept = None
        if (isinstance(kept, dict) and kept.get("key") == key and isinstance(kept.get("left_out"), dict)
                and isinstance(kept.get("pieces", {}), dict)):
            return kept["left_out"], kept.get("pieces", {})
        unsure: dict[str, Any] = {}
        edges: dict[str, np.ndarray] = {}
        judged = list(self._colours(members, gains, unsure if cut else None, alpha_threshold,
                                    edges if colours else None))
        witnesses = list(self._colours(noise, gains))
        frames: dict[str, set[str]] = {}
        for m in members:
            if m.frame_id:
                frames.setdefault(m.frame_id, set()).add(m.character)
        together = {frozenset((a, b)) for seen in frames.values() for a in seen for b in seen if a != b}
        track = {m.instance_id: m.track_id for m in members + noise}
        cuts = gate.foreign_pieces(judged, ((i, c) for i, _, c in witnesses), scenery, together, unsure,
                                   track, groups) if cut else {}
        cut_masks = {k: v["mask"] for k, v in cuts.items()}
        found = gate.off_track_colours([(i, track[i], c) for i, _, c in judged],
                                       [(i, track[i], c) for i, _, c in witnesses], cut_masks) if colours else {}
        found |= gate.foreign_colours(judged, scenery, cut_masks, groups, edges) if colours else {}
        pieces = {k: {"bits": pack_piece(v["mask"]), "share": v["share"], "why": v["why"]} for k, v in cuts.items()}
        atomic_write_json(path, {"key": key, "left_out": found, "pieces": pieces})
        return found, pieces

    @staticmethod
    def _colours(members: list[Member], gains: dict[str, list[float]], unsure: dict[str, Any] | None = None,
                 alpha_threshold: float = 0.15, edges: dict[str, np.ndarray] | None = None
                 ) -> Iterator[tuple[str, str, Any]]:
        """(instance id, character, :func:`gate.colour_bins`) of every member whose cut-out reads,
        the shot's light divided out (identity/light.py): the gains the embed stage applied, else
        measured on the plates as it would; each one's :func:`gate.unsure_matte` put in ``unsure`` and
        its colour gradient (:func:`gate.colour_bins_and_edges`) in ``edges``."""
        from animlora.curation.gate import colour_bins, colour_bins_and_edges, unsure_matte
        from animlora.io.images import read_image

        for m in members:
            if not m.image_path:
                continue
            try:  # read as the embed stage read it
                image = read_image(m.image_path, "RGBA")
            except BadInputError:
                continue  # not judged: the build reports a missing or unreadable cut-out
            if unsure is not None:
                unsure[m.instance_id] = unsure_matte(image, alpha_threshold)
            gain = gains.get(m.shot_id or "")
            if edges is None:
                yield m.instance_id, m.character, colour_bins(image, gain)
                continue
            bins, edges[m.instance_id] = colour_bins_and_edges(image, gain)
            yield m.instance_id, m.character, bins

    @staticmethod
    def _measures(rows: list[dict[str, Any]], parts: dict[str, str] | None = None
                  ) -> tuple[dict[str, dict[str, Any] | None], dict[str, list[dict[str, Any] | None]]]:
        """(instance id -> its segment measures (``static``, ``text``, ``flat``), track id -> the
        measures of every instance of that track, and part id -> those of the part where ``parts``
        (:func:`gate.track_parts`) cuts a track), for the scenery checks; ``rows``: :meth:`_instances`."""
        by_id: dict[str, dict[str, Any] | None] = {}
        tracks: dict[str, list[dict[str, Any] | None]] = {}
        for row in rows:
            by_id[row["id"]] = row["measures"]
            track = row.get("track_id")
            if track:
                tracks.setdefault(track, []).append(by_id[row["id"]])
                part = (parts or {}).get(row["id"], track)
                if part != track:
                    tracks.setdefault(part, []).append(by_id[row["id"]])
        return by_id, tracks

    @staticmethod
    def _with_mates(group: list[Member], measures: dict[str, Any], by_track: dict[str, list[dict[str, Any]]]
                    ) -> tuple[list[Any], list[str | None]]:
        """(measures, shots) of a cluster's members and of every other instance of their tracks
        (prefilter rejects included), each once: the scenery check's evidence. A cluster of
        one-instance picks of scenery tracks has too few measured members to judge alone (cgi-bench
        seed 3: six trees from six shots, 2 members with a known ``static``; with their tracks 4 of
        6 still, as the seeds' and the film's scenery clusters, 0.63-0.80; character clusters
        0-0.36 with their tracks)."""
        ids = {m.instance_id for m in group}
        tracks = sorted({m.track_id for m in group if m.track_id})
        extra = [r for t in tracks for r in by_track.get(t, ()) if r["id"] not in ids]
        return ([measures.get(m.instance_id) for m in group] + [r["measures"] for r in extra],
                [m.shot_id for m in group] + [r.get("shot_id") for r in extra])

    def _captions(self, ctx: StageContext, catalog: Any, members: list[Member]) -> dict[tuple[str, str], Any]:
        out: dict[tuple[str, str], Any] = {}
        if catalog is not None:
            from animlora.records.caption import list_captions

            for c in list_captions(catalog):
                out[(c.instance_id, c.character)] = {"text": c.text, "source": c.source, "fields": c.fields,
                                                     "edited": c.edited, "confidence": c.confidence}
            return out
        folder = Path(ctx.settings.dataset.captions_dir) if ctx.settings.dataset.captions_dir else None
        for m in members:
            for candidate in ((folder / f"{m.stem}.txt") if folder else None, Path(m.image_path).with_suffix(".txt")):
                if candidate is not None and candidate.is_file():
                    text = candidate.read_text(encoding="utf-8", errors="replace").strip()
                    out[(m.instance_id, m.character)] = {"text": text, "source": f"file:{candidate.name}",
                                                         "fields": {}, "edited": True, "confidence": None}
                    break
        return out

    @staticmethod
    def _embeddings(catalog: Any, group: list[Member], model: str) -> dict[str, Any] | None:
        from animlora.records.embed import instance_vectors

        rows = instance_vectors(catalog, [m.instance_id for m in group])
        if not rows:
            return None
        if not model:
            counts: dict[str, int] = {}
            for _, key, _ in rows:
                counts[key] = counts.get(key, 0) + 1
            model = max(sorted(counts), key=lambda k: counts[k])
        vectors = {iid: vector for iid, key, vector in rows if key == model}
        return {"model": model, "vectors": vectors}

    @staticmethod
    def _keep_hand_edits(ctx: StageContext, built: list[tuple[Path, str, list[dict[str, Any]]]]) -> None:
        """Caption files a person edited in the dataset folder (``images/<name>.txt``, what
        sd-scripts reads, or ``captions/<name>.txt``) become caption edits, as if made in the
        review, before anything builds the folder again: a later run (a video added, a cluster
        reviewed, a setting changed) wrote them over. Files written after the folder's
        ``metadata.json`` are read; one that differs from the caption written there is an edit
        (of the two files, the one changed last)."""
        from animlora.records.caption import store_edit

        kept: dict[str, int] = {}
        for meta_path, character, rows in built:
            try:
                written_at = meta_path.stat().st_mtime_ns
            except OSError:
                continue
            for record in rows:
                if not record.get("caption_file"):
                    continue
                edits = []
                for rel in (str(Path(record["file"]).with_suffix(".txt")), record["caption_file"]):
                    path = ctx.output_dir / rel
                    try:
                        stat = path.stat()
                        if stat.st_mtime_ns <= written_at:
                            continue
                        text = path.read_text(encoding="utf-8").strip()
                    except (OSError, UnicodeDecodeError):
                        continue
                    if text and text != (record.get("caption") or "").strip():
                        edits.append((stat.st_mtime_ns, text))
                if edits:
                    store_edit(ctx.catalog, record["instance_id"], character, max(edits)[1])
                    kept[character] = kept.get(character, 0) + 1
        for character, count in sorted(kept.items()):
            ctx.log.warning("dataset: %s: %d caption file(s) edited by hand, kept as caption edits (the review shows "
                            "them; `Revert` there drops one)", character, count)

    @staticmethod
    def _keep_hand_deletions(ctx: StageContext, built: list[tuple[Path, str, list[dict[str, Any]]]]) -> None:
        """Images a person deleted from a character's folder (its ``images/`` still there, with
        others in it: pruning, as kohya users do) leave that character: each deleted image's
        instances are moved to noise by a review decision (``move``), so the next build leaves
        them out and the review shows where they went (and moves one back). Before, the next run
        made a deleted image again (a deleted output is remade), and the pruning was lost."""
        from animlora.identity import decisions
        from animlora.records import decisions as decision_records

        gone: dict[str, list[dict[str, Any]]] = {}
        for meta_path, character, rows in built:
            missing = [r for r in rows if not (ctx.output_dir / r["file"]).exists()]
            if missing and len(missing) < len(rows) and (meta_path.parent / "images").is_dir():
                gone[character] = missing  # (the whole folder gone is remade: a deleted output)
        if not gone:
            return
        instances = {i for rows in gone.values() for r in rows for i in (r["instance_id"], *(r.get("joined") or []))}
        # logged as the review logs a move (replayed after a review or a new clustering); the
        # members now: these instances out, nothing else touched
        decisions.record(ctx.catalog, "move", {"instances": sorted(instances), "to": decisions.NOISE_ID})
        kept = {i: c for i, c in decision_records.members(ctx.catalog).items() if i not in instances}
        decision_records.replace_members(ctx.catalog, kept)
        for character, rows in sorted(gone.items()):
            ctx.log.warning("dataset: %s: %d image(s) deleted by hand from its folder, left out of it (moved to noise "
                            "in the review, where `animlora review` can move one back)", character, len(rows))

    @staticmethod
    def _relocate(ctx: StageContext) -> str | None:
        """A project moved or copied elsewhere (``mv``, ``cp -a``): the text files this stage
        wrote name the folder it was in — sd-scripts' ``dataset.toml`` reads ``image_dir``
        absolute, ``metadata.json`` gives each image's lineage — so the old folder is replaced by
        the new one in each of them, instead of building every image again (the whole film:
        49 s; and the images' new times made a trained character train again). The one write a
        plan makes in the stage's folder: nothing else there names the project. Returns the
        folder it was in, or None when it did not move."""
        root = str(ctx.workspace.root)
        then = records.written_in(ctx.catalog) or _written_in(ctx.output_dir)
        if then is None or then == root:
            return None
        replace = {then + "/": root + "/"}
        for ascii_only in (True, False):  # as json.dumps escapes a path, with either setting
            old, new = json.dumps(then, ensure_ascii=ascii_only)[1:-1], json.dumps(root, ensure_ascii=ascii_only)[1:-1]
            replace.setdefault(old + "/", new + "/")
        moved = 0
        for path in sorted(ctx.output_dir.rglob("*")):
            if path.suffix not in (".toml", ".json", ".jsonl") or not path.is_file():
                continue
            text = path.read_text(encoding="utf-8")
            changed = text
            for old, new in replace.items():
                changed = changed.replace(old, new)
            if changed != text:
                atomic_write_text(path, changed)
                moved += 1
        records.set_written_in(ctx.catalog, root)
        ctx.log.info("dataset: the project moved from %s: %d dataset files name its new folder", then, moved)
        return then

    @staticmethod
    def _reg_frames(catalog: Any, root: Path | None, character: str, count: int) -> list[str]:
        """Frames in which the character does not appear, spread over the film."""
        if count <= 0 or root is None:
            return []
        from animlora.curation.sources import stage_dir
        from animlora.records.extract import frames_without

        rows = frames_without(catalog, character)
        if not rows:
            return []
        idx = np.linspace(0, len(rows) - 1, min(count, len(rows))).round().astype(int)
        frames = stage_dir(root, "extract")
        return [str(frames / rows[i]) for i in sorted(set(idx.tolist()))]

    # -- process -----------------------------------------------------------------------
    def process(self, job: StageJob, item: WorkItem, progress: Progress) -> ItemOutput:
        from animlora.curation import background
        from animlora.curation.build import build_character

        if item.key == background.KEY:
            return background.build(job, item.payload, progress)
        sub = "" if job.standalone else safe_name(item.payload["character"])
        return build_character(job, item.payload, sub, progress)

    def commit(self, ctx: StageContext, item: WorkItem, output: ItemOutput) -> None:
        d = output.data
        records.delete_character(ctx.catalog, item.key)
        if d.get("kind") == "background":  # its lineage is in its metadata.json
            return
        if d.get("skipped_character"):
            ctx.log.warning("dataset: %s skipped: %s", item.key, d["skipped_character"])
            return
        if d.get("status") == "small":
            ctx.log.warning("dataset: %s has only %d images (dataset.small_size %d): built, marked small",
                            item.key, len(d["images"]), ctx.settings.dataset.small_size)
        records.replace_character(ctx.catalog, item.key, [
            records.DatasetItem(item.key, r["instance_id"], r["file"], r["caption_file"], r["score"])
            for r in d["images"]
        ])

    def forget(self, ctx: StageContext, item_key: str) -> None:
        records.delete_character(ctx.catalog, item_key)

    # -- finish ------------------------------------------------------------------------
    def finish(self, ctx: StageContext, summary: RunSummary) -> dict[str, Any]:
        from animlora.curation.build import combined_config, read_character_reports

        if not ctx.job.standalone:
            records.set_written_in(ctx.catalog, str(ctx.workspace.root))

        source_catalog = ctx.extra.pop("source_catalog", None)
        if source_catalog is not None:
            source_catalog.close()
        from animlora.curation import background

        built, skipped = read_character_reports(ctx.output_dir, ctx.job.standalone)
        built = {name: m for name, m in built.items() if m.get("kind") != "background"}
        report: dict[str, Any] = {
            "characters": {
                name: {
                    "images": m["count"], "status": m.get("status", "ok"), "candidates": m["candidates"],
                    "skipped_instances": len(m["skipped"]), "left_out": m.get("left_out_counts", {}),
                    "shots": m["coverage"]["shots"], "candidate_shots": m["coverage"]["candidate_shots"],
                    "videos": m["coverage"]["videos"], "folder": m["folder"],
                    "enlargement": m.get("enlargement"), "pieces_cut": m.get("pieces_cut", 0),
                }
                for name, m in built.items()
            },
            "skipped_characters": [{k: v for k, v in sk.items() if k != "left_out"} for sk in skipped],
            "failed": [{"item": k, "error": e} for k, e in summary.failures],
            "min_size": ctx.extra.pop("min_size", None),
        }
        if ctx.settings.dataset.kind != "character":
            report["background"] = background.summary(
                ctx.output_dir if ctx.job.standalone else ctx.output_dir / background.FOLDER)
        upstream: list[dict[str, str]] = []
        if not ctx.job.standalone:
            from animlora.curation.summary import upstream_counts, upstream_left_out

            report["upstream"] = upstream_counts(ctx.catalog)
            upstream = upstream_left_out(ctx.catalog)
        if not ctx.job.standalone and len(built) > 1:
            report["combined_config"] = combined_config(ctx.output_dir, built, ctx.settings)
        elif not ctx.job.standalone:  # one character or none now: an earlier run's combined set is stale
            import shutil

            (ctx.output_dir / "dataset_all.toml").unlink(missing_ok=True)
            shutil.rmtree(ctx.output_dir / "kohya_all", ignore_errors=True)
        if ctx.settings.dataset.report and (built or skipped or upstream):
            from animlora.curation.report import write_report

            report["report"] = write_report(ctx.output_dir, built, skipped, upstream, report["min_size"])
        atomic_write_json(ctx.output_dir / RESULTS_FILE, report)
        return report

