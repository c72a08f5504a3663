"""Review decisions: an append-only log over stable instance ids, replayed on the clustering.

The cluster stage writes a *base* clustering (``clusters``, ``cluster_assignments``:
:mod:`animlora.records.cluster`). Every review action appends a row to ``review_decisions``
(:mod:`animlora.records.decisions`, which stores the log this module gives meaning to); the reviewed state is the base with
every active decision replayed in order, and ``character_members`` is kept equal to it.

A decision names clusters by id *and* by a snapshot of their members (up to 256 instance
ids), so after embed or cluster run again (new ids, new members) it still finds its cluster:
the one that holds most of the snapshot's instances still present. Undo flags the last active
decision ``undone = 1``; redo clears it; a new decision after an undo flags the undone ones
``2`` (superseded, no longer redo-able). Rows are never deleted.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from animlora.pipeline.stage import digest
from animlora.records import cluster as cluster_records
from animlora.records import decisions as records

if TYPE_CHECKING:
    from animlora.catalog import Catalog

NOISE_ID = "noise"
SNAPSHOT = 256
ACTIONS = ("rename", "merge", "move", "split", "not_character")


@dataclass
class Group:
    id: str
    name: str
    is_noise: bool = False
    note: str = ""


class ReviewState:
    """Instances -> groups (clusters as reviewed), with the operations a reviewer has."""

    def __init__(self, groups: dict[str, Group], assign: dict[str, str]) -> None:
        self.groups = groups
        self.assign = assign
        if NOISE_ID not in self.groups:
            self.groups[NOISE_ID] = Group(NOISE_ID, "noise", is_noise=True)
        self.members: dict[str, set[str]] = {gid: set() for gid in self.groups}
        for inst, gid in assign.items():
            self.members.setdefault(gid, set()).add(inst)

    # -- loading ---------------------------------------------------------------------
    @classmethod
    def base(cls, catalog: Catalog) -> ReviewState:
        groups = {c.id: Group(c.id, c.name, c.is_noise) for c in cluster_records.clusters(catalog)}
        return cls(groups, cluster_records.assignments(catalog))

    @classmethod
    def load(cls, catalog: Catalog) -> ReviewState:
        """The base clustering with every active decision replayed."""
        state = cls.base(catalog)
        for action, payload in records.active(catalog):
            state.apply(action, payload)
        return state

    # -- queries ---------------------------------------------------------------------
    def live_groups(self) -> list[Group]:
        """Groups with members (noise always), characters first by size, then noise-like ones."""
        live = [g for g in self.groups.values() if self.members.get(g.id) or g.id == NOISE_ID]
        return sorted(live, key=lambda g: (g.is_noise, g.id == NOISE_ID, -len(self.members.get(g.id, ())), g.name))

    def snapshot(self, gid: str) -> list[str]:
        return sorted(self.members.get(gid, ()))[:SNAPSHOT]

    def resolve(self, gid: str | None, snapshot: list[str] | None) -> str | None:
        """The group a decision meant: same id if it still has members, else most overlap."""
        if gid == NOISE_ID:
            return NOISE_ID
        if gid in self.groups and self.members.get(gid):
            return gid
        present = [i for i in snapshot or () if i in self.assign]
        if not present:
            return None
        votes = Counter(self.assign[i] for i in present)
        best, count = votes.most_common(1)[0]
        return best if count * 2 >= len(present) and best != NOISE_ID else None

    def characters(self) -> dict[str, str]:
        """instance -> character name (noise and 'not a character' left out)."""
        return {inst: self.groups[gid].name for inst, gid in self.assign.items() if not self.groups[gid].is_noise}

    # -- operations (each also how a logged decision is replayed) ----------------------
    def _move(self, inst: str, gid: str) -> None:
        old = self.assign.get(inst)
        if old is not None:
            self.members[old].discard(inst)
        self.assign[inst] = gid
        self.members.setdefault(gid, set()).add(inst)

    def _new_group(self, seed: list[str], name: str) -> str:
        gid = "g" + digest("group", sorted(seed))[:12]
        self.groups[gid] = Group(gid, name)
        self.members.setdefault(gid, set())
        return gid

    def apply(self, action: str, p: dict) -> None:
        if action == "rename":
            gid = self.resolve(p.get("cluster"), p.get("snapshot"))
            if gid and gid != NOISE_ID:
                self.groups[gid].name = p["name"]
        elif action == "merge":
            targets = [self.resolve(g, s) for g, s in zip(p["clusters"], p["snapshots"], strict=True)]
            targets = [t for t in dict.fromkeys(targets) if t]
            if len(targets) >= 2:
                into = targets[0]
                for gid in targets[1:]:
                    for inst in list(self.members.get(gid, ())):
                        self._move(inst, into)
                if p.get("name"):
                    self.groups[into].name = p["name"]
        elif action == "move":
            insts = [i for i in p["instances"] if i in self.assign]
            if p.get("to") == NOISE_ID:
                target = NOISE_ID
            else:
                target = self.resolve(p.get("to"), p.get("to_snapshot"))
                if target is None:
                    target = self._new_group(p["instances"], p.get("to_name") or "character_new")
            for inst in insts:
                self._move(inst, target)
        elif action == "split":
            gid = self.resolve(p.get("cluster"), p.get("snapshot"))
            if gid and gid != NOISE_ID:
                base_name = self.groups[gid].name
                for k, part in enumerate(p["parts"][1:], start=2):
                    members = [i for i in part if self.assign.get(i) == gid]
                    if members:
                        new = self._new_group(part, f"{base_name}_{k}")
                        for inst in members:
                            self._move(inst, new)
        elif action == "not_character":
            gid = self.resolve(p.get("cluster"), p.get("snapshot"))
            if gid and gid != NOISE_ID:
                self.groups[gid].is_noise = True
                self.groups[gid].note = "not a character"


# -- the log ------------------------------------------------------------------------
def record(catalog: Catalog, action: str, payload: dict) -> int:
    """Append a decision (superseding what was undone); return its seq."""
    if action not in ACTIONS:
        raise ValueError(f"unknown review action {action!r}")
    return records.append(catalog, action, payload)


def undo(catalog: Catalog) -> int | None:
    return records.undo_last(catalog)


def redo(catalog: Catalog) -> int | None:
    return records.redo_next(catalog)


can_undo_redo = records.can_undo_redo


def write_members(catalog: Catalog, state: ReviewState) -> int:
    """Make ``character_members`` equal the state's characters; return rows changed."""
    return records.replace_members(catalog, state.characters())


def refresh_members(catalog: Catalog) -> ReviewState:
    """Replay the log on the current base clustering and update ``character_members``."""
    state = ReviewState.load(catalog)
    write_members(catalog, state)
    return state
