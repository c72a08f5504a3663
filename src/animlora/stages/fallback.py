"""Model stages that fall back to a lighter backend when theirs cannot run (weights or packages
missing; each stage's ``fallback`` setting), and what follows from it:

- :meth:`FallsBack.outdated` — the runner's hook: the stage runs again once the backend the
  settings ask for can run (:meth:`~FallsBack.fell_back`; the settings hash holds what was asked
  for, not what ran), or when its weights are other files than its last run used
  (:meth:`~FallsBack.weights_changed`);
- :func:`fallback_lines` — the run's ending and ``animlora status`` name each stage whose output a
  fallback made, and what to install or pull for the real thing;
- :func:`cannot_run_lines` — ``animlora doctor`` names each stage whose backend cannot run here,
  before a run.

What ran is read from the rows each stage already keeps (segment's frames, inpaint's plates,
deocclude's fills, enhance's crops, caption's captions). Embed needs none of it: it keys its items
by the embedder it opens, so a model that can run now re-embeds by itself.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from animlora.catalog import Catalog
    from animlora.pipeline.stage import StageContext


class Asked(NamedTuple):
    """The backend a stage's settings ask for."""

    family: str  # its family (backends/registry.py)
    backend: str
    weights: list[str]  # registry names of the weights it loads
    setting: str  # the setting that names it, e.g. ``segment.backend``
    fallback: tuple[str, str]  # the fallback setting that governs it, and its value


class FallsBack:
    """Mixed into a :class:`~animlora.pipeline.stage.Stage` whose backend may fall back."""

    name: str

    def asked(self, settings: Any) -> Asked:
        raise NotImplementedError

    def recorded(self, catalog: Catalog) -> list[str]:
        """The backends that made the stage's recorded outputs."""
        raise NotImplementedError

    def runs(self, settings: Any) -> bool:
        """Whether a project run with these settings has the stage do anything (a standalone
        command always runs it)."""
        return True

    def missing_here(self, asked: Asked, settings: Any) -> str:
        """What keeps ``asked`` from running here ("" when nothing): :func:`missing`, and what else
        the stage's run needs (inpaint's RAFT flow)."""
        return missing(asked, settings.models)

    def fallbacks(self, asked: Asked, settings: Any) -> list[str]:
        """What a run uses, in order of preference, when ``asked`` cannot run here (``asked.fallback``
        allows them)."""
        from animlora.backends.registry import fallback_chain

        return fallback_chain(asked.family, asked.backend, asked.fallback[1])[1:]

    def keep_setting(self, asked: Asked, made_by: str) -> str:
        """The setting that keeps what ``made_by`` (a recorded backend) made, as a YAML line."""
        return f"{asked.setting}: {made_by}"

    def asked_label(self, asked: Asked, settings: Any) -> str:
        """How the lines name what the settings ask for (the backend; inpaint's adds its RAFT flow)."""
        return f"'{asked.backend}'"

    def instead(self, catalog: Catalog, asked: Asked) -> list[str]:
        """The backends other than ``asked`` that made recorded outputs (none when the stage asks
        for no backend of the registry: enhance's ``none``)."""
        if not is_backend(asked):
            return []
        return sorted(set(self.recorded(catalog)) - {asked.backend})

    def outdated(self, ctx: StageContext) -> str | None:
        """The runner's hook (:meth:`Stage.outdated`): :meth:`fell_back`, else
        :meth:`weights_changed`."""
        if not ctx.job.standalone and not self.runs(ctx.settings):
            return None
        asked = self.asked(ctx.settings)
        return self.fell_back(ctx, asked) or self.weights_changed(ctx, asked)

    def fell_back(self, ctx: StageContext, asked: Asked) -> str | None:
        """A fallback made the recorded outputs, and the backend asked for can run now."""
        instead = self.instead(ctx.catalog, asked)
        if not instead or self.missing_here(asked, ctx.settings):
            return None
        return (f"its last run used '{', '.join(instead)}', not '{asked.backend}' as {asked.setting} asks; "
                f"{self.asked_label(asked, ctx.settings)} can run now, so {self.name} runs again with it")

    def weights_changed(self, ctx: StageContext, asked: Asked) -> str | None:
        """The weights of the backend asked for are other files than those its last run used
        (``models.paths`` pointed elsewhere, ``models import`` over the stored copy), as
        :meth:`ran` recorded them (``records.runs.weights_used``). A project whose last run
        recorded none redoes nothing."""
        from animlora.records.runs import weights_used

        before = weights_used(ctx.catalog, self.name)
        if not before:
            return None
        now = weights_fingerprints(asked.weights, ctx.settings.models)
        changed = sorted(n for n, f in now.items() if n in before and f is not None and before[n] != f)
        if not changed:
            return None
        return f"the weights of {', '.join(changed)} are not those its last run used, so {self.name} runs again"

    def ran(self, ctx: StageContext) -> None:
        """After a run: the fingerprints of the weights the backend asked for, when it made every
        recorded output (none kept otherwise)."""
        from animlora.records.runs import set_weights_used

        asked = self.asked(ctx.settings)
        made_by_it = is_backend(asked) and asked.weights and set(self.recorded(ctx.catalog)) == {asked.backend}
        set_weights_used(ctx.catalog, self.name,
                         weights_fingerprints(asked.weights, ctx.settings.models) if made_by_it else None)


_EDGE = 1 << 20  # bytes hashed at each end of the largest file


def _where(name: str, models: Any) -> Path | None:
    """Where weights ``name`` are on this machine (None: not here, or an unknown name, which the
    stage names when it opens the model). Nothing is downloaded."""
    from animlora.models.resolver import locate

    try:
        return locate(name, models).path
    except Exception:  # noqa: BLE001 - see above
        return None


def weights_fingerprints(names: list[str], models: Any) -> dict[str, str | None]:
    """Each weights name -> :func:`fingerprint` of where it resolves here (None: not here)."""
    return {name: None if (path := _where(name, models)) is None else fingerprint(path) for name in names}


def fingerprint(path: Path) -> str:
    """What tells one set of weights from another without reading it all: every file's size
    (and, in a folder, its name), and the first and last MiB of the largest. A moved or copied
    store keeps it; another checkpoint under the same name does not."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    sizes = {f: f.stat().st_size for f in files}
    for f in files:
        digest.update(f"{'' if f == path else f.relative_to(path).as_posix()}:{sizes[f]};".encode())
    if files:
        largest = max(files, key=lambda f: sizes[f])
        with largest.open("rb") as handle:
            digest.update(handle.read(_EDGE))
            if sizes[largest] > 2 * _EDGE:
                handle.seek(-_EDGE, 2)
                digest.update(handle.read(_EDGE))
    return digest.hexdigest()[:16]


def is_backend(asked: Asked) -> bool:
    from animlora.backends.registry import BACKENDS

    return asked.backend in BACKENDS.get(asked.family, {})


def missing(asked: Asked, models: Any) -> str:
    """What keeps the backend asked for from running here ("" when nothing): its packages, with
    the pip line, or its weights, with the pull command. Nothing is imported, loaded or downloaded."""
    from animlora.backends.registry import available, entry_of

    if not available(asked.family).get(asked.backend, False):
        return f"its packages are missing (pip install 'animlora[{entry_of(asked.family, asked.backend).extra}]')"
    absent = [weights for weights in asked.weights if _where(weights, models) is None]
    if absent:
        return "its weights are not here (" + "; ".join(f"`animlora models pull {w}`" for w in absent) + ")"
    return ""


def _falls_back() -> list[FallsBack]:
    from animlora.stages import STAGES, get_stage

    return [stage for stage in map(get_stage, STAGES) if isinstance(stage, FallsBack)]


def fallback_lines(catalog: Catalog, settings: Any) -> list[str]:
    """One line per stage whose recorded output a fallback made: what ran instead, what is
    missing for the backend asked for, or that the next run redoes it."""
    lines = []
    for stage in filter(lambda s: s.runs(settings), _falls_back()):
        asked = stage.asked(settings)
        try:
            instead = stage.instead(catalog, asked)
        except sqlite3.OperationalError:  # a read-only catalog of an earlier release, without the stage's table
            continue
        if not instead:
            continue
        made = f"{stage.name}: made with '{', '.join(instead)}', not '{asked.backend}' as {asked.setting} asks"
        why = stage.missing_here(asked, settings)
        lines.append(f"{made}: {why}; then `animlora run` makes it again (or set "
                     f"{stage.keep_setting(asked, instead[0])} to stay with it)" if why else
                     f"{made}: {stage.asked_label(asked, settings)} can run now, and the next `animlora run` makes it "
                     "again with it")
    return lines


def cannot_run_lines(settings: Any) -> list[str]:
    """One line per stage whose backend, as the settings ask for it, cannot run here and why."""
    lines = []
    for stage in filter(lambda s: s.runs(settings), _falls_back()):
        asked = stage.asked(settings)
        why = stage.missing_here(asked, settings) if is_backend(asked) else ""
        if not why:
            continue
        name, value = asked.fallback
        others = stage.fallbacks(asked, settings)
        then = ("a run stops with this error" if not others else
                f"a run uses '{others[0]}' instead" if len(others) == 1 else
                "a run uses the first of " + ", ".join(f"'{o}'" for o in others) + " that can")
        lines.append(f"{stage.name}: '{asked.backend}' cannot run here: {why}; until then {then} ({name}: {value})")
    return lines
