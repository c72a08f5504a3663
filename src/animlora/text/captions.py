"""Caption text: composition, lint and the token budget (no catalog access; the captions
table is :mod:`animlora.records.caption`).

A caption is built as ``trigger, prefix, field, field, ...``: the trigger word first so that
sd-scripts' ``keep_tokens = 1`` keeps it in place when captions are shuffled, then the style
prefix, then the fields in ``caption.field_order`` (earlier fields survive trimming). Lint removes
banned words and words that pull a 3D character toward 2D illustration, drops duplicates, and
trims fields from the end until the text fits the text encoder (77 CLIP tokens, BOS/EOS included).

A caption a person edited in the review page (:func:`animlora.records.caption.store_edit`) is
kept verbatim across re-runs of the caption stage.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from animlora.config.schema import CaptionSettings, ModelsSettings

# Fields that describe who the character is rather than this shot; with pruning on, a value
# present in most of a character's captions is dropped so the trigger word absorbs it.
INTRINSIC_FIELDS = ("outfit", "appearance", "hair", "colors")

_WORD = re.compile(r"[A-Za-z]+|\d+|[^\sA-Za-z\d]")

TokenCounter = Callable[[str], int]


# -- token counting ---------------------------------------------------------------------
def estimate_tokens(text: str) -> int:
    """CLIP BPE token count estimate, BOS/EOS included: a common word is one token, a long or
    rare word a few, punctuation one each. Errs on the high side so trimming stays safe."""
    count = 2
    for piece in _WORD.findall(text):
        if piece.isalpha():
            count += 1 + max(0, len(piece) - 1) // 7
        elif piece.isdigit():
            count += math.ceil(len(piece) / 3)
        else:
            count += 1
    return count


def tokenizer_counter(tokenizer: Any) -> TokenCounter:
    """A counter from a Hugging Face tokenizer (CLIP's adds BOS and EOS itself)."""

    def count(text: str) -> int:
        return len(tokenizer(text, truncation=False)["input_ids"])

    return count


def load_token_counter(spec: str, models: ModelsSettings | None = None) -> tuple[TokenCounter, str]:
    """(counter, how): a CLIP tokenizer from a folder or a registry name when one is present
    locally (never downloaded for counting), else the estimate."""
    if not spec:
        return estimate_tokens, "estimate"
    path: Path | None = Path(spec).expanduser()
    if not path.exists():
        path = None
        if models is not None:
            try:
                from animlora.models import locate

                path = locate(spec, models).path
            except Exception:  # noqa: BLE001 - an unknown name means "estimate"
                path = None
    if path is None:
        return estimate_tokens, f"estimate ({spec} not found)"
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(path))
    except Exception as exc:  # noqa: BLE001 - a broken tokenizer folder must not stop captioning
        return estimate_tokens, f"estimate ({path}: {type(exc).__name__})"
    return tokenizer_counter(tok), f"tokenizer {path}"


# -- lint -------------------------------------------------------------------------------
def _phrase_pattern(words: Iterable[str]) -> re.Pattern[str] | None:
    words = sorted({w.strip().lower() for w in words if w.strip()}, key=len, reverse=True)
    if not words:
        return None
    alternatives = "|".join(re.escape(w) for w in words)
    return re.compile(rf"(?<![\w-])(?:{alternatives})(?![\w-])", re.IGNORECASE)


def remove_words(text: str, words: Iterable[str]) -> str:
    """Remove whole words/phrases (case-insensitive), tidying the spaces left behind."""
    pattern = _phrase_pattern(words)
    if pattern is None:
        return text
    out = pattern.sub("", text)
    out = re.sub(r"\s+", " ", out)
    out = re.sub(r"\s+([,.;])", r"\1", out)
    return out.strip(" ,;")


def split_parts(text: str) -> list[str]:
    return [p.strip(" .;\n\t") for p in re.split(r"[,\n]", text) if p.strip(" .;\n\t")]


@dataclass(frozen=True)
class ComposedCaption:
    text: str
    tokens: int
    parts: tuple[str, ...]
    dropped: tuple[str, ...]  # parts trimmed for length or removed by lint


def compose(
    trigger: str,
    prefix: str,
    parts: Sequence[str],
    *,
    max_tokens: int,
    ban_words: Sequence[str] = (),
    style_words: Sequence[str] = (),
    count: TokenCounter = estimate_tokens,
) -> ComposedCaption:
    """``trigger, prefix, parts...`` linted and trimmed to ``max_tokens`` (from the end)."""
    banned = [*ban_words, *style_words]
    dropped: list[str] = []
    seen: set[str] = set()
    out: list[str] = []
    trigger = trigger.strip()
    if trigger:
        out.append(trigger)
        seen.add(trigger.lower())
    fixed = 0  # trigger and prefix parts are never trimmed before the fields
    for group_index, group in enumerate((split_parts(prefix), [p for part in parts for p in split_parts(part)])):
        for part in group:
            # the trigger appears once, first
            clean = remove_words(part, [*banned, *([trigger] if trigger else [])])
            key = clean.lower()
            if not clean or key in seen:
                if part.strip():
                    dropped.append(part)
                continue
            seen.add(key)
            out.append(clean)
        if group_index == 0:
            fixed = len(out)
    while len(out) > 1 and count(", ".join(out)) > max_tokens:
        if len(out) > fixed:
            dropped.append(out.pop())
        else:
            # even trigger + prefix is too long: cut words off the last part
            words = out[-1].split()
            if len(words) > 1:
                out[-1] = " ".join(words[:-1])
            else:
                dropped.append(out.pop())
    text = ", ".join(out)
    return ComposedCaption(text, count(text), tuple(out), tuple(dropped))


def lint_text(text: str, *, ban_words: Sequence[str] = (), style_words: Sequence[str] = ()) -> str:
    """Lint a free text (an edit, a VLM sentence): banned and 2D words out, whitespace tidied."""
    return remove_words(text.replace("\n", " "), [*ban_words, *style_words])


# -- fields -----------------------------------------------------------------------------
def field_phrases(fields: dict[str, Any], order: Sequence[str], min_confidence: float) -> list[str]:
    """The phrases of the fields sure enough, in ``order`` (unknown fields after, sorted)."""
    names = [f for f in order if f in fields] + sorted(f for f in fields if f not in order)
    phrases = []
    for name in names:
        entry = fields[name]
        if isinstance(entry, dict):
            value, conf = entry.get("value"), float(entry.get("confidence", 1.0))
        else:
            value, conf = entry, 1.0
        if value and isinstance(value, str) and conf >= min_confidence:
            phrases.append(value)
    return phrases


def caption_from_fields(
    trigger: str, fields: dict[str, Any], settings: CaptionSettings, *, prefix: str | None = None,
    count: TokenCounter = estimate_tokens, drop: Iterable[tuple[str, str]] = (),
) -> ComposedCaption:
    """Compose a caption from fields with the caption settings; ``drop`` = (field, value or
    colour) pairs pruned as identity-intrinsic."""
    fields = prune_fields(fields, drop)
    return compose(
        trigger,
        settings.prefix if prefix is None else prefix,
        field_phrases(fields, settings.field_order, settings.min_field_confidence),
        max_tokens=settings.max_tokens,
        ban_words=settings.ban_words,
        style_words=settings.style_words,
        count=count,
    )


def outfit_phrase(colors: Sequence[str]) -> str:
    if not colors:
        return ""
    if len(colors) == 1:
        return f"wearing {colors[0]}"
    return f"wearing {', '.join(colors[:-1])} and {colors[-1]}"


_CLOTHES = re.compile(r"\b(wear\w*|dress\w*|cloth\w*|shirt\w*|t-shirt|jacket|trousers|pants|jeans|skirt|"
                      r"outfit|uniform|hat|cap|scarf|vest|shoes|boots|gloves|armou?r|suit|hoodie|sweater|"
                      r"overalls|apron|cape|robe)\b", re.I)
_BARE = re.compile(r"\b(animal|rabbit|bunny|hare|squirrel|chinchilla|rodent|bird|butterfly|insect|dog|puppy|"
                   r"cat|kitten|fox|bear|mouse|rat|wolf|deer|horse|cow|pig|sheep|goat|fish|frog|turtle|"
                   r"lizard|dragon|creature|fur|furry|feathers?|prop|rock|stone|tree|plant|object)s?\b", re.I)


def character_clothed(root: Path | None, character: str) -> bool | None:
    """:func:`clothed_hint` of ``<root>/characters/<character>.yaml`` (None without one)."""
    if root is None:
        return None
    path = Path(root) / "characters" / f"{character}.yaml"
    if not path.is_file():
        return None
    from animlora.config.loader import load_character

    return clothed_hint(load_character(path))


def clothed_hint(spec: Any) -> bool | None:
    """Whether a character wears clothes, from ``characters/<name>.yaml``: its ``clothed`` field,
    else its description (clothing words: yes; an animal, fur or a prop and no clothing word:
    no); None when nothing says (the captioner then decides from the colours)."""
    if spec is None:
        return None
    if getattr(spec, "clothed", None) is not None:
        return bool(spec.clothed)
    text = str(getattr(spec, "description", "") or "")
    if _CLOTHES.search(text):
        return True
    if _BARE.search(text):
        return False
    return None


def intrinsic_traits(all_fields: Sequence[dict[str, Any]], share: float) -> set[tuple[str, str]]:
    """(field, value) pairs — and ("colors", colour) for outfit palettes — found in at least
    ``share`` of a character's captions: traits of the character, not of the shot."""
    if not all_fields:
        return set()
    counts: Counter[tuple[str, str]] = Counter()
    for fields in all_fields:
        seen: set[tuple[str, str]] = set()
        for name in INTRINSIC_FIELDS:
            entry = fields.get(name)
            if not isinstance(entry, dict):
                continue
            for color in entry.get("colors", []) or []:
                seen.add(("colors", str(color)))
            if entry.get("value") and not entry.get("colors"):
                seen.add((name, str(entry["value"]).lower()))
        counts.update(seen)
    need = share * len(all_fields)
    return {pair for pair, n in counts.items() if n >= need}


# A character that most of its captions measured as bare (no outfit on fewer than half of its
# images framed wider than a close-up, where no outfit is measured) is bare in all of them: the
# colour test that calls a figure clothed misfires on a bare animal's fur under warm or mixed
# light (whole film: "wearing grey and beige" on 55 of 291 images, Buck, Frank, Gimera, Rinky,
# all bare; their folders 16-45% "wearing"; cgi-bench seed 2's green boy in a shirt, 89%)
CLOTHED_SHARE = 0.5
CLOTHED_MIN_IMAGES = 3  # fewer judged images say nothing about the character
ANY = "*"  # a drop pair (field, ANY) prunes the whole field


def bare_character(all_fields: Sequence[dict[str, Any]]) -> bool:
    """Whether a character's captions (their fields) measured an outfit on fewer than
    ``CLOTHED_SHARE`` of its images that are not close-ups: it is then bare (an animal, a prop)
    and the few outfits measured are its fur under a coloured light."""
    judged = [f for f in all_fields if (f.get("framing") or {}).get("value") != "close-up"]
    if len(judged) < CLOTHED_MIN_IMAGES:
        return False
    worn = sum(1 for f in judged if isinstance(f.get("outfit"), dict) and f["outfit"].get("value"))
    return worn < CLOTHED_SHARE * len(judged)


def prune_fields(fields: dict[str, Any], drop: Iterable[tuple[str, str]]) -> dict[str, Any]:
    drop = set(drop)
    if not drop:
        return fields
    out = dict(fields)
    for name in INTRINSIC_FIELDS:
        entry = out.get(name)
        if not isinstance(entry, dict):
            continue
        if (name, ANY) in drop:
            out.pop(name)
            continue
        if entry.get("colors"):
            kept = [c for c in entry["colors"] if ("colors", c) not in drop]
            out[name] = {**entry, "colors": kept, "value": outfit_phrase(kept)}
        elif (name, str(entry.get("value", "")).lower()) in drop:
            out.pop(name)
    return out


def retrigger(text: str, old: str, new: str) -> str:
    """A caption written for trigger word ``old``, for ``new``: the leading trigger swapped
    (a character renamed in review keeps the person's edits); other text is left alone."""
    if old and old != new and text.startswith(old) and (len(text) == len(old) or not text[len(old)].isalnum()):
        return new + text[len(old):]
    return text
