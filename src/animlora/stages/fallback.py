"""Model stages that fall back to a lighter backend when theirs cannot run (weights or packages
missing; each stage's ``fallback`` setting), and what follows from it:

- :meth:`FallsBack.fell_back` — the runner's hook: the stage runs again once the backend the
  settings ask for can run (the settings hash holds what was asked for, not what ran);
- :func:`fallback_lines` — the run's ending names each stage whose output a fallback made, and
  what to install or pull for the real thing.

What ran is read from the rows each stage already keeps (segment's frames, inpaint's plates,
deocclude's fills, enhance's crops, caption's captions). Embed needs neither: it keys its items by
the embedder it opens, so a model that can run now re-embeds by itself.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from animlora.catalog import Catalog
    from animlora.pipeline.stage import StageContext


@dataclass(frozen=True)
class BackendsUsed:
    """What a model stage's settings ask for, and what made its recorded outputs."""

    family: str  # the backend family (backends/registry.py)
    wanted: str  # the backend the settings ask for
    used: list[str]  # the backends that made the recorded outputs
    weights: list[str]  # registry names of the weights ``wanted`` loads

    @property
    def instead(self) -> list[str]:
        return sorted(set(self.used) - {self.wanted})


class FallsBack:
    """Mixed into a :class:`~animlora.pipeline.stage.Stage` whose backend may fall back."""

    name: str

    def backends_used(self, catalog: Catalog, settings: Any) -> BackendsUsed:
        raise NotImplementedError

    def fell_back(self, ctx: StageContext) -> str | None:
        from animlora.backends.registry import can_run

        b = self.backends_used(ctx.catalog, ctx.settings)
        if not b.instead or not can_run(b.family, b.wanted, b.weights, ctx.settings.models):
            return None
        return (f"its last run used '{', '.join(b.instead)}' because '{b.wanted}' could not run; "
                f"'{b.wanted}' can run now, so {self.name} runs again with it")


def fallback_lines(catalog: Catalog, settings: Any) -> list[str]:
    """One line per stage whose recorded output a fallback made: what ran instead, what is
    missing for the backend asked for (weights to pull, the pip extra), or that the next run
    redoes it."""
    from animlora.backends.registry import available, entry_of
    from animlora.models.resolver import locate
    from animlora.stages import STAGES, get_stage

    lines = []
    for name in STAGES:
        stage = get_stage(name)
        if not isinstance(stage, FallsBack):
            continue
        try:
            b = stage.backends_used(catalog, settings)
        except sqlite3.OperationalError:  # a read-only catalog of an earlier release, without the stage's table
            continue
        if not b.instead:
            continue
        made = f"{name}: made with '{', '.join(b.instead)}', not '{b.wanted}' as asked"
        if not available(b.family).get(b.wanted, False):
            lines.append(f"{made}: its packages are missing (pip install 'animlora[{entry_of(b.family, b.wanted).extra}]'"
                         "); then `animlora run` makes it again")
            continue
        missing = []
        for weights in b.weights:
            try:
                if locate(weights, settings.models).path is None:
                    missing.append(weights)
            except Exception:  # noqa: BLE001 - an unknown name: the stage names it when it opens the model
                missing.append(weights)
        if missing:
            pulls = "; ".join(f"`animlora models pull {w}`" for w in missing)
            lines.append(f"{made}: its weights are not here ({pulls}); then `animlora run` makes it again")
        else:
            lines.append(f"{made}: '{b.wanted}' can run now, and the next `animlora run` makes it again with it")
    return lines
