"""Model stages that fall back to a lighter backend when theirs cannot run (weights or packages
missing; each stage's ``fallback`` setting), and what follows from it:

- :meth:`FallsBack.fell_back` — the runner's hook: the stage runs again once the backend the
  settings ask for can run (the settings hash holds what was asked for, not what ran);
- :func:`fallback_lines` — the run's ending and ``animlora status`` name each stage whose output a
  fallback made, and what to install or pull for the real thing;
- :func:`cannot_run_lines` — ``animlora doctor`` names each stage whose backend cannot run here,
  before a run.

What ran is read from the rows each stage already keeps (segment's frames, inpaint's plates,
deocclude's fills, enhance's crops, caption's captions). Embed needs none of it: it keys its items
by the embedder it opens, so a model that can run now re-embeds by itself.
"""

from __future__ import annotations

import sqlite3
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

    def instead(self, catalog: Catalog, settings: Any) -> list[str]:
        """The backends other than the one asked for that made recorded outputs (none when the
        stage asks for no backend of the registry: enhance's ``none``)."""
        asked = self.asked(settings)
        if not is_backend(asked):
            return []
        return sorted(set(self.recorded(catalog)) - {asked.backend})

    def fell_back(self, ctx: StageContext) -> str | None:
        if not ctx.job.standalone and not self.runs(ctx.settings):
            return None
        instead = self.instead(ctx.catalog, ctx.settings)
        asked = self.asked(ctx.settings)
        if not instead or missing(asked, ctx.settings.models):
            return None
        return (f"its last run used '{', '.join(instead)}' because '{asked.backend}' could not run; "
                f"'{asked.backend}' can run now, so {self.name} runs again with it")


def is_backend(asked: Asked) -> bool:
    from animlora.backends.registry import BACKENDS

    return asked.backend in BACKENDS.get(asked.family, {})


def missing(asked: Asked, models: Any) -> str:
    """What keeps the backend asked for from running here ("" when nothing): its packages, with
    the pip line, or its weights, with the pull command. Nothing is imported, loaded or downloaded."""
    from animlora.backends.registry import available, entry_of
    from animlora.models.resolver import locate

    if not available(asked.family).get(asked.backend, False):
        return f"its packages are missing (pip install 'animlora[{entry_of(asked.family, asked.backend).extra}]')"
    absent = []
    for weights in asked.weights:
        try:
            if locate(weights, models).path is None:
                absent.append(weights)
        except Exception:  # noqa: BLE001 - an unknown name: the stage names it when it opens the model
            absent.append(weights)
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
        try:
            instead = stage.instead(catalog, settings)
        except sqlite3.OperationalError:  # a read-only catalog of an earlier release, without the stage's table
            continue
        if not instead:
            continue
        asked = stage.asked(settings)
        made = f"{stage.name}: made with '{', '.join(instead)}', not '{asked.backend}' as {asked.setting} asks"
        why = missing(asked, settings.models)
        lines.append(f"{made}: {why}; then `animlora run` makes it again (or set {asked.setting}: {instead[0]} "
                     "to stay with it)" if why else
                     f"{made}: '{asked.backend}' can run now, and the next `animlora run` makes it again with it")
    return lines


def cannot_run_lines(settings: Any) -> list[str]:
    """One line per stage whose backend, as the settings ask for it, cannot run here and why."""
    lines = []
    for stage in filter(lambda s: s.runs(settings), _falls_back()):
        asked = stage.asked(settings)
        why = missing(asked, settings.models) if is_backend(asked) else ""
        if why:
            lines.append(f"{stage.name}: '{asked.backend}' cannot run here: {why}; until then a run uses a lighter "
                         "backend or stops, as the fallback settings say")
    return lines
