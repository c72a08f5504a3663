"""Caption stage: one caption per reviewed character instance.

Project: every ``character_members`` instance (kept by the prefilter) is captioned by the chosen
backend; the fields, the composed text, its source and confidence go to the ``captions`` table
and ``captions/<character>/<instance id>.txt``. Standalone: a folder of RGBA cut-outs is one
character; ``<output>/<image stem>.txt`` per image.

A caption a person edited in the review page is never overwritten: its text is kept, only the
measured fields are refreshed. When the instance's character is renamed in review (or the
instance moved to another character), the edit follows it, its leading trigger word swapped
for the new character's.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import replace
from importlib import import_module
from pathlib import Path
from typing import Any

from animlora.curation.sources import (
    Member,
    folder_members,
    project_members,
    stat_key,
    trigger_for,
)
from animlora.errors import BadInputError, MissingDependencyError, ModelNotFoundError, StageError
from animlora.io.files import atomic_write_json, atomic_write_text
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
from animlora.records import caption as records
from animlora.stages.fallback import Asked, FallsBack
from animlora.text.captions import character_clothed, retrigger

RESULTS_FILE = "caption_results.json"

_COUNTERS: dict[str, Any] = {}


def _counter(spec: str, models: Any):
    from animlora.text.captions import load_token_counter

    if spec not in _COUNTERS:
        _COUNTERS[spec] = load_token_counter(spec, models)
    return _COUNTERS[spec]


# Results captioned ahead: a VLM captions an item together with the next few (one batch on the
# GPU); their results wait here until the runner reaches them. Resume is unchanged: a result not
# found here is simply computed.
_AHEAD: dict[tuple[Any, ...], tuple[Any, list[str]]] = {}
_AHEAD_LIMIT = 512


def _ahead_key(settings: Any, member: Member) -> tuple[Any, ...]:
    return (settings.caption.fingerprint(), member.character, member.instance_id, stat_key(member.image_path))


def _load_input(member: Member, trigger: str, clothed: bool | None = None) -> tuple[Any, list[str]]:
    from animlora.backends.captioning.base import CaptionInput
    from animlora.io.images import read_image

    image = read_image(member.image_path, "RGBA")
    frame = None
    notes = []
    if member.frame_path:
        try:
            frame = read_image(member.frame_path, "RGB")
        except BadInputError as exc:
            notes.append(f"frame unreadable, captioned without it ({exc.problem})")
    return CaptionInput(member.instance_id, image, trigger, member.character, frame, member.bbox, clothed), notes


def caption_weights(cs: Any) -> list[str]:
    """The registry names of the weights ``caption.backend`` loads (``caption.model`` or its default)."""
    from animlora.backends.captioning import BACKENDS

    if cs.backend == "template" or cs.backend not in BACKENDS:
        return []
    return [cs.model or import_module(BACKENDS[cs.backend].target.partition(":")[0]).DEFAULT_MODEL]


def _captioner(settings: Any) -> tuple[Any, list[str]]:
    from animlora.backends.captioning import cached_captioner

    cs = settings.caption
    try:
        return cached_captioner(cs.backend, cs, settings.models), []
    except (ModelNotFoundError, MissingDependencyError) as exc:
        from animlora.backends.registry import fallback_for

        other = fallback_for("captioning", cs.backend, cs.fallback)
        if other is None:
            raise
        # allowed by caption.fallback; recorded on every caption and in the report
        return cached_captioner(other, cs, settings.models), [f"fallback to {other}: {exc}"]


def _caption_result(member: Member, trigger: str, settings: Any, ahead: list[Any],
                    clothed: bool | None = None) -> tuple[Any, list[str]]:
    cached = _AHEAD.pop(_ahead_key(settings, member), None)
    if cached is not None:
        return cached
    captioner, common = _captioner(settings)
    own, notes = _load_input(member, trigger, clothed)
    batch = [(member, own, notes)]
    if captioner.name != "template":
        for other_json, other_trigger, *other_clothed in ahead[: max(0, settings.caption.batch_size - 1)]:
            other = Member.from_json(other_json)
            if _ahead_key(settings, other) in _AHEAD:
                continue
            try:
                batch.append((other, *_load_input(other, other_trigger, (other_clothed or [None])[0])))
            except BadInputError:
                continue  # its own work item reports it
    results = captioner.caption([b[1] for b in batch])
    for (other, _, other_notes), result in zip(batch[1:], results[1:], strict=True):
        _AHEAD[_ahead_key(settings, other)] = (result, other_notes + common)
    while len(_AHEAD) > _AHEAD_LIMIT:
        _AHEAD.pop(next(iter(_AHEAD)))
    return results[0], notes + common


def caption_member(member: Member, trigger: str, settings: Any, *, edited_text: str | None = None,
                   ahead: list[Any] | None = None, clothed: bool | None = None) -> dict[str, Any]:
    """Caption one member with the configured backend: the row data (text, fields, source ...).
    ``ahead`` = (member json, trigger) of the next items, captioned in the same batch by a VLM."""
    from animlora.text.captions import caption_from_fields, compose, lint_text

    cs = settings.caption
    result, notes = _caption_result(member, trigger, settings, ahead or [], clothed)
    if clothed is False and "outfit" in result.fields:  # a VLM's "wearing ..." of a bare animal or a prop
        result = replace(result, fields={k: v for k, v in result.fields.items() if k != "outfit"})
    count, how = _counter(cs.tokenizer, settings.models)
    if result.fields:
        composed = caption_from_fields(trigger, result.fields, cs, count=count)
    elif result.text:
        composed = compose(trigger, cs.prefix, [lint_text(result.text, ban_words=cs.ban_words,
                                                          style_words=cs.style_words)],
                           max_tokens=cs.max_tokens, ban_words=cs.ban_words, style_words=cs.style_words, count=count)
    else:
        raise BadInputError(member.image_path, f"no caption could be made ({result.note or 'empty result'})")
    text = edited_text or composed.text
    return {
        "text": text,
        "auto_text": composed.text,
        "fields": result.fields,
        "source": result.source,
        "confidence": round(result.confidence, 3),
        "note": "; ".join(n for n in (result.note, *notes) if n) or None,
        "tokens": count(text),
        "token_count": how,
        "dropped": list(composed.dropped),
    }


class CaptionStage(FallsBack, Stage):
    name = "caption"
    folder = "captions"
    # 2: framing from every frame edge, view from eyes, no outfit on bare figures; 3: a padded
    #    cut-out placed at its padded box (framing saw a figure cut by the frame edge as whole)
    # 4: a side view only for a tall, human-like figure (its top rows are its head); the scene's
    #    light, time and background never read from the black of an iris or a porthole
    # 5: a front view only from eyes with their white or catchlight, not from two dark spots
    # 6: cool lighting only when the light is blue (grey-edge), not the background (a blue sky)
    # 7: at night also for a dark frame under a dark blue sky (moonlight), not only a black one
    version = "7"
    upstream = ("segment", "prefilter", "cluster")

    def check_inputs(self, job: StageJob) -> None:
        if job.standalone:
            path = job.input_path
            if path is None or not path.is_dir():
                raise BadInputError(path or "?", "expected a folder of RGBA cut-outs (e.g. clustered_refined/luca)")
        from animlora.backends.captioning import BACKENDS

        cs = job.settings.caption
        if cs.backend not in BACKENDS:
            raise StageError(f"unknown caption backend {cs.backend!r}; choices: {', '.join(BACKENDS)}")
        if cs.backend != "template" and cs.fallback == "none":
            # missing weights fail here, before anything is written
            from animlora.models import resolve

            for name in caption_weights(cs):
                resolve(name, job.settings.models)

    def asked(self, settings: Any) -> Asked:
        cs = settings.caption
        return Asked("captioning", cs.backend, caption_weights(cs), "caption.backend", ("caption.fallback", cs.fallback))

    def recorded(self, catalog: Any) -> list[str]:
        return records.backends_used(catalog)

    # -- plan --------------------------------------------------------------------------
    def _members(self, ctx: StageContext) -> tuple[list[Member], Path | None]:
        if ctx.job.standalone:
            assert ctx.job.input_path is not None
            name = ctx.settings.caption.character or ctx.job.input_path.name
            return folder_members(ctx.job.input_path, name), None
        members = project_members(ctx.catalog, ctx.workspace.root)
        if not members:
            ctx.log.warning("caption: no reviewed characters yet (the cluster stage writes them); nothing to caption")
        return members, ctx.workspace.root

    def plan(self, ctx: StageContext) -> list[WorkItem]:
        members, root = self._members(ctx)
        ctx.extra["unusable"] = [(m.character, m.instance_id, m.problem) for m in members if m.problem]
        triggers: dict[str, str] = {}

        def trigger(character: str) -> str:
            if character not in triggers:
                given = ctx.settings.caption.trigger if ctx.job.standalone else ""
                triggers[character] = given or trigger_for(root, character)
            return triggers[character]

        hints: dict[str, bool | None] = {}

        def clothed(character: str) -> bool | None:
            if character not in hints:
                hints[character] = character_clothed(root, character)
            return hints[character]

        edits = records.edited_texts(ctx.catalog)  # instance -> character -> edited text
        items = []
        for m in members:
            if m.problem:
                continue
            edited = edits[m.instance_id].get(m.character)
            carried = None
            if edited is None and edits[m.instance_id]:
                # the instance's character was renamed (or it was moved) in review since a
                # person edited its caption: the edit follows it, with the new trigger word
                carried, text = sorted(edits[m.instance_id].items())[0]
                edited = retrigger(text, trigger(carried), trigger(m.character))
            payload = {"member": m.to_json(), "trigger": trigger(m.character), "edited": edited,
                       "carried_from": carried, "clothed": clothed(m.character)}
            fingerprint = digest(stat_key(m.image_path), stat_key(m.frame_path), m.bbox, trigger(m.character), edited,
                                 clothed(m.character))
            items.append(WorkItem(f"{m.character}:{m.instance_id}", fingerprint, payload, f"{m.character}/{m.stem}"))
        # the next items ride along in a VLM batch (not part of the fingerprint: results are the same)
        ahead = max(0, ctx.settings.caption.batch_size - 1)
        for i, item in enumerate(items):
            item.payload["ahead"] = [(nxt.payload["member"], nxt.payload["trigger"], nxt.payload["clothed"])
                                     for nxt in items[i + 1 : i + 1 + ahead]]
        return items

    # -- process -----------------------------------------------------------------------
    def process(self, job: StageJob, item: WorkItem, progress: Progress) -> ItemOutput:
        member = Member.from_json(item.payload["member"])
        data = caption_member(member, item.payload["trigger"], job.settings, edited_text=item.payload["edited"],
                              ahead=item.payload.get("ahead"), clothed=item.payload.get("clothed"))
        rel = f"{member.stem}.txt" if job.standalone else f"{member.character}/{member.stem}.txt"
        atomic_write_text(job.output_dir / rel, data["text"] + "\n")
        data.update(instance_id=member.instance_id, character=member.character, file=rel,
                    carried_from=item.payload.get("carried_from"))
        progress(1, 1)
        return ItemOutput(files=(rel,), data=data)

    def commit(self, ctx: StageContext, item: WorkItem, output: ItemOutput) -> None:
        d = output.data
        records.write_stage_caption(ctx.catalog, instance_id=d["instance_id"], character=d["character"],
                                    text=d["text"], source=d["source"], fields=d["fields"], auto_text=d["auto_text"],
                                    confidence=d["confidence"], note=d["note"], carried_from=d.get("carried_from"))

    def forget(self, ctx: StageContext, item_key: str) -> None:
        character, _, instance_id = item_key.partition(":")
        records.forget_caption(ctx.catalog, instance_id, character)  # a person's edit outlives any re-run

    # -- finish ------------------------------------------------------------------------
    def finish(self, ctx: StageContext, summary: RunSummary) -> dict[str, Any]:
        rows = records.list_captions(ctx.catalog)
        per_char: dict[str, dict[str, Any]] = defaultdict(lambda: {"captions": 0, "edited": 0, "sources": Counter(),
                                                                   "fields": defaultdict(Counter), "words": [],
                                                                   "notes": Counter()})
        for r in rows:
            c = per_char[r.character]
            c["captions"] += 1
            c["edited"] += int(r.edited)
            c["sources"][r.source] += 1
            c["words"].append(len(r.text.split()))
            if r.note:
                c["notes"][r.note.split(":")[0].split(" (")[0]] += 1
            for name, entry in r.fields.items():
                if isinstance(entry, dict) and entry.get("value"):
                    c["fields"][name][entry["value"]] += 1
        report = {
            "backend": ctx.settings.caption.backend,
            "token_count": _counter(ctx.settings.caption.tokenizer, ctx.settings.models)[1],
            "characters": {
                name: {
                    "captions": c["captions"], "edited": c["edited"], "sources": dict(c["sources"]),
                    "mean_words": round(sum(c["words"]) / max(1, len(c["words"])), 1), "notes": dict(c["notes"]),
                    "fields": {f: dict(v.most_common()) for f, v in c["fields"].items()},
                }
                for name, c in per_char.items()
            },
            "unusable": [{"character": c, "instance": i, "problem": p} for c, i, p in ctx.extra.get("unusable", [])],
            "failed": [{"item": k, "error": e} for k, e in summary.failures],
        }
        atomic_write_json(ctx.output_dir / RESULTS_FILE, report)
        return report
