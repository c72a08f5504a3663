from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from animlora.catalog import Catalog
from animlora.config import load_settings
from animlora.pipeline.runner import Runner
from animlora.pipeline.stage import WorkItem, digest
from animlora.workspace import Workspace
from toy_stage import CostToyStage, ModelToyStage, ToyStage


def make_inputs(folder: Path, texts: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        (folder / f"{name}.txt").write_text(text)
    return folder


def run_toy(tmp_path: Path, *, force: bool = False, seed: int = 1, executor: str = "serial"):
    loaded = load_settings(overrides={"project": {"seed": seed}, "runner": {"executor": executor, "workers": 2}})
    ws = Workspace.for_output(tmp_path / "out")
    [summary] = Runner(ws, loaded, force=force, input_path=tmp_path / "in").run([ToyStage()])
    return summary


def outputs(tmp_path: Path) -> dict[str, str]:
    out = tmp_path / "out"
    return {p.name: p.read_text() for p in sorted(out.glob("*.out"))}


def meta(tmp_path: Path) -> dict[str, str]:
    with Catalog(tmp_path / "out" / ".animlora" / "catalog.sqlite") as cat:
        return {r["key"]: r["value"] for r in cat.rows("SELECT * FROM meta WHERE key LIKE 'toy:%'")}


def test_first_run_processes_everything_then_is_up_to_date(tmp_path):
    make_inputs(tmp_path / "in", {"a": "x", "b": "yy"})
    first = run_toy(tmp_path)
    assert (first.items_total, first.items_done, first.items_skipped, first.up_to_date) == (2, 2, 0, False)
    assert outputs(tmp_path) == {"a.out": "X", "b.out": "YY"}
    assert meta(tmp_path) == {"toy:a": "1", "toy:b": "2"}
    manifest = json.loads((tmp_path / "out" / ".animlora" / "manifests" / "toy.json").read_text())
    assert manifest["items"] == {"total": 2, "done": 2, "skipped": 0, "failed": 0}
    assert manifest["report"] == {"done": 2}
    second = run_toy(tmp_path)
    assert second.up_to_date and second.items_skipped == 2


def test_new_input_is_processed_alone_and_removed_input_is_forgotten(tmp_path):
    make_inputs(tmp_path / "in", {"a": "x", "b": "yy"})
    run_toy(tmp_path)
    (tmp_path / "out" / "a.out").write_text("sentinel")  # proves a is not redone
    make_inputs(tmp_path / "in", {"c": "zzz"})
    (tmp_path / "in" / "b.txt").unlink()
    summary = run_toy(tmp_path)
    assert (summary.items_total, summary.items_skipped) == (2, 1)
    assert outputs(tmp_path) == {"a.out": "sentinel", "c.out": "ZZZ"}
    assert meta(tmp_path) == {"toy:a": "1", "toy:c": "3"}


class FolderToyStage(ToyStage):
    """Writes each item's file in a folder of its own (as the dataset stage does per character)."""

    def process(self, job, item, progress):
        from animlora.io.files import atomic_write_text
        from animlora.pipeline.stage import ItemOutput

        text = Path(item.payload).read_text()
        rel = f"{item.key}/parts/{item.key}.out"
        atomic_write_text(job.output_dir / rel, text.upper())
        return ItemOutput(files=(rel,), data=len(text))


def test_a_forgotten_item_leaves_no_empty_folder(tmp_path):
    make_inputs(tmp_path / "in", {"a": "x", "b": "yy"})
    ws = Workspace.for_output(tmp_path / "out")
    Runner(ws, load_settings(), input_path=tmp_path / "in").run([FolderToyStage()])
    assert (tmp_path / "out" / "b" / "parts" / "b.out").read_text() == "YY"
    (tmp_path / "out" / "a" / "notes.txt").write_text("mine")  # a file the stage never recorded
    for name in ("a", "b"):
        (tmp_path / "in" / f"{name}.txt").unlink()
    make_inputs(tmp_path / "in", {"c": "z"})
    Runner(ws, load_settings(), input_path=tmp_path / "in").run([FolderToyStage()])
    assert not (tmp_path / "out" / "b").exists()  # b/parts/ held only b's file: both folders go
    assert (tmp_path / "out" / "a" / "notes.txt").read_text() == "mine"  # a/ still holds a file
    assert not (tmp_path / "out" / "a" / "parts").exists()
    assert (tmp_path / "out" / "c" / "parts" / "c.out").read_text() == "Z"


def test_changed_input_content_is_redone(tmp_path):
    make_inputs(tmp_path / "in", {"a": "x"})
    run_toy(tmp_path)
    make_inputs(tmp_path / "in", {"a": "changed"})
    assert run_toy(tmp_path).items_skipped == 0
    assert outputs(tmp_path) == {"a.out": "CHANGED"}


def test_changed_settings_redo_the_stage_and_force_redoes_up_to_date_work(tmp_path):
    make_inputs(tmp_path / "in", {"a": "x", "b": "y"})
    run_toy(tmp_path, seed=1)
    assert run_toy(tmp_path, seed=2).items_skipped == 0
    assert run_toy(tmp_path, seed=2).up_to_date
    forced = run_toy(tmp_path, seed=2, force=True)
    assert (forced.up_to_date, forced.items_skipped, forced.items_done) == (False, 0, 2)


def test_a_bad_item_is_reported_and_the_others_are_done(tmp_path):
    make_inputs(tmp_path / "in", {"a": "x", "bad": "BAD", "c": "z"})
    summary = run_toy(tmp_path)
    assert summary.items_done == 2
    assert summary.failures == (("bad.txt", f"{tmp_path / 'in' / 'bad.txt'}: contains BAD"),)
    assert outputs(tmp_path) == {"a.out": "X", "c.out": "Z"}
    # fixed by the user -> retried on the next run, the others stay done
    make_inputs(tmp_path / "in", {"bad": "fine now"})
    again = run_toy(tmp_path)
    assert (again.failures, again.items_skipped, again.items_done) == ((), 2, 3)


def test_interrupted_run_resumes_without_redoing_finished_items(tmp_path, monkeypatch):
    make_inputs(tmp_path / "in", {"a": "x", "b": "y", "c": "z"})
    monkeypatch.setenv("TOY_INTERRUPT_ON", "b")
    with pytest.raises(KeyboardInterrupt):
        run_toy(tmp_path)
    assert outputs(tmp_path) == {"a.out": "X"}
    (tmp_path / "out" / ".tmp-123-c.out").write_text("half")  # what a kill leaves behind
    monkeypatch.delenv("TOY_INTERRUPT_ON")
    (tmp_path / "out" / "a.out").write_text("sentinel")
    summary = run_toy(tmp_path)
    assert (summary.items_skipped, summary.items_done) == (1, 3)
    assert outputs(tmp_path) == {"a.out": "sentinel", "b.out": "Y", "c.out": "Z"}
    assert not list((tmp_path / "out").glob(".tmp-*"))


@pytest.mark.parametrize("executor", ["serial", "process"])
def test_a_full_disk_stops_the_run_and_the_next_run_goes_on(tmp_path, monkeypatch, executor):
    from animlora.errors import DiskFullError

    make_inputs(tmp_path / "in", {"a": "x", "b": "y", "c": "z", "d": "w", "e": "v", "f": "u"})
    monkeypatch.setenv("TOY_DISK_FULL_ON", "b")
    with pytest.raises(DiskFullError) as raised:
        run_toy(tmp_path, executor=executor)
    message = str(raised.value)
    assert "b.out" in message and "the disk is full" in message and "run the same command again" in message
    with Catalog(tmp_path / "out" / ".animlora" / "catalog.sqlite") as cat:
        rows = {r["item_key"]: r["status"] for r in cat.rows("SELECT * FROM stage_items WHERE stage = 'toy'")}
    assert "b" not in rows and "failed" not in rows.values()  # not the item's fault: left to do
    if executor == "serial":  # the run stopped at b: nothing after it was tried
        assert rows == {"a": "done"} and outputs(tmp_path) == {"a.out": "X"}
    done_before = set(rows)
    for key in done_before:
        (tmp_path / "out" / f"{key}.out").write_text("sentinel")  # proves they are not redone
    monkeypatch.delenv("TOY_DISK_FULL_ON")
    summary = run_toy(tmp_path, executor=executor)
    assert (summary.items_done, summary.items_skipped, summary.failures) == (6, len(done_before), ())
    assert {k: v for k, v in outputs(tmp_path).items() if v == "sentinel"} == {f"{k}.out": "sentinel" for k in done_before}
    assert outputs(tmp_path)["b.out"] == "Y"


def test_process_pool_gives_the_same_result_as_serial(tmp_path):
    texts = {f"i{n}": "v" * n for n in range(1, 6)}
    make_inputs(tmp_path / "serial" / "in", texts)
    make_inputs(tmp_path / "pool" / "in", texts)
    run_toy(tmp_path / "serial")
    summary = run_toy(tmp_path / "pool", executor="process")
    assert summary.items_done == 5
    assert outputs(tmp_path / "pool") == outputs(tmp_path / "serial")
    assert meta(tmp_path / "pool") == meta(tmp_path / "serial")


def test_a_process_pool_worker_loads_a_model_once_for_all_its_items(tmp_path):
    make_inputs(tmp_path / "in", {f"i{n}": "v" * n for n in range(1, 7)})
    loaded = load_settings(overrides={"runner": {"executor": "process", "workers": 2}})
    ws = Workspace.for_output(tmp_path / "out")
    [summary] = Runner(ws, loaded, input_path=tmp_path / "in").run([ModelToyStage()])
    assert summary.items_done == 6 and outputs(tmp_path)["i3.out"] == "VVV"
    loads = (tmp_path / "in" / "loads.log").read_text().split()
    assert 1 <= len(loads) <= 2  # one per worker (a model kept on the stage: 6, one per item)
    assert len(set(loads)) == len(loads)  # no worker loaded twice


def test_a_pool_starts_the_costliest_items_first_and_serial_keeps_the_plans_order(tmp_path, monkeypatch):
    import animlora.pipeline.runner as runner_module

    make_inputs(tmp_path / "in", {"a": "v", "b": "vvvvv", "c": "vvv", "d": "vvvvv", "e": "vv"})
    sent: dict[str, list[str]] = {"run_pool": [], "run_serial": []}
    for name in sent:
        real = getattr(runner_module, name)

        def recording(stage, job, items, *args, _real=real, _name=name, **kwargs):
            sent[_name].extend(item.key for item in items)
            return _real(stage, job, items, *args, **kwargs)

        monkeypatch.setattr(runner_module, name, recording)
    pool = load_settings(overrides={"runner": {"executor": "process", "workers": 2}})
    [summary] = Runner(Workspace.for_output(tmp_path / "out"), pool, input_path=tmp_path / "in").run([CostToyStage()])
    assert summary.items_done == 5 and outputs(tmp_path)["d.out"] == "VVVVV"
    assert sent["run_pool"] == ["b", "d", "c", "e", "a"]  # costliest first; equal costs in the plan's order
    # serially the plan's order stands (segment's look-ahead shot relies on it)
    [summary] = Runner(Workspace.for_output(tmp_path / "serial"), load_settings(), input_path=tmp_path / "in").run(
        [CostToyStage()])
    assert summary.items_done == 5 and sent["run_serial"] == ["a", "b", "c", "d", "e"]


def test_a_stage_runs_with_its_own_executor_and_a_misspelt_stage_is_named(tmp_path):
    import os

    from animlora.errors import ConfigError

    make_inputs(tmp_path / "in", {f"i{n}": "v" * n for n in range(1, 5)})
    # every stage in a process pool, except this one: its items (and its model) stay in this process
    loaded = load_settings(overrides={"runner": {"executor": "process", "executors": {"toy": "serial"}, "workers": 2}})
    [summary] = Runner(Workspace.for_output(tmp_path / "out"), loaded, input_path=tmp_path / "in").run([ModelToyStage()])
    assert summary.items_done == 4 and outputs(tmp_path)["i2.out"] == "VV"
    assert (tmp_path / "in" / "loads.log").read_text().split() == [str(os.getpid())]
    typo = load_settings(overrides={"runner": {"executors": {"segmnt": "ray"}}})
    with pytest.raises(ConfigError, match="runner.executors: unknown stage.s. segmnt; stages: extract, segment"):
        Runner(Workspace.for_output(tmp_path / "out2"), typo, input_path=tmp_path / "in").run([ToyStage()])


def toy_done_before(tmp_path: Path):
    """Items a and b done by the toy stage, a's output a sentinel (it proves a is not redone);
    the settings to run a later release's stage with."""
    make_inputs(tmp_path / "in", {"a": "x", "b": "yy"})
    run_toy(tmp_path)
    (tmp_path / "out" / "a.out").write_text("sentinel")
    return load_settings(overrides={"project": {"seed": 1}})


class RenamedToyStage(ToyStage):
    """The toy stage after a release that keys items by content (``earlier_key``: the old name)."""

    def plan(self, ctx):
        return [WorkItem(f"c-{item.fingerprint[:8]}", item.fingerprint, item.payload, item.label, earlier_key=item.key)
                for item in super().plan(ctx)]


def test_an_item_recorded_under_its_earlier_key_is_not_redone(tmp_path):
    from dataclasses import replace

    loaded = toy_done_before(tmp_path)
    ws = Workspace.for_output(tmp_path / "out")
    [summary] = Runner(ws, loaded, input_path=tmp_path / "in").run([RenamedToyStage()])
    assert (summary.items_total, summary.items_skipped) == (2, 2)
    assert outputs(tmp_path) == {"a.out": "sentinel", "b.out": "YY"}
    with Catalog(tmp_path / "out" / ".animlora" / "catalog.sqlite") as cat:
        keys = sorted(r["item_key"] for r in cat.rows("SELECT item_key FROM stage_items WHERE stage = 'toy'"))
    assert len(keys) == 2 and all(k.startswith("c-") for k in keys)

    # an old key that a planned item still has as its own stays with it
    class Claimed(RenamedToyStage):
        def plan(self, ctx):
            items = super().plan(ctx)
            return [items[0], replace(items[1], key=items[0].earlier_key or "", earlier_key=None)]

    make_inputs(tmp_path / "in2", {"a": "x", "b": "yy"})
    first = Runner(Workspace.for_output(tmp_path / "o2"), loaded, input_path=tmp_path / "in2").run([ToyStage()])[0]
    assert first.items_done == 2
    again = Runner(Workspace.for_output(tmp_path / "o2"), loaded, input_path=tmp_path / "in2").run([Claimed()])[0]
    assert again.items_skipped == 0 and again.items_done == 2  # "a" stays b's (new fingerprint: redone); c-… is new


class RecipeToyStage(ToyStage):
    """The toy stage after a release whose fingerprint leaves out what the earlier one held
    (``where``, as the dataset stage's held the project's folder): ``earlier`` is the old one,
    and it made the same output (``earlier_same``). Without ``earlier_same`` an item keeps its
    recorded fingerprint (tests/test_segment_stage.py, tests/test_extract_stage.py)."""

    where = "here"

    def plan(self, ctx):
        return [WorkItem(item.key, digest("new", item.fingerprint), item.payload, item.label,
                         earlier=item.fingerprint if self.where == "here" else digest(item.fingerprint, self.where),
                         earlier_same=True)
                for item in super().plan(ctx)]


def test_an_item_done_under_its_earlier_fingerprint_is_recorded_under_the_new_one(tmp_path):
    loaded = toy_done_before(tmp_path)

    def run(stage: ToyStage):
        return Runner(Workspace.for_output(tmp_path / "out"), loaded, input_path=tmp_path / "in").run([stage])[0]

    upgraded = run(RecipeToyStage())
    assert upgraded.up_to_date and upgraded.items_skipped == 2  # nothing redone, the stage up to date
    with Catalog(tmp_path / "out" / ".animlora" / "catalog.sqlite") as cat:
        recorded = {r["item_key"]: r["fingerprint"] for r in cat.rows("SELECT * FROM stage_items WHERE stage = 'toy'")}
    assert recorded == {item.key: item.fingerprint for item in RecipeToyStage().plan(SimpleNamespace(
        job=SimpleNamespace(input_path=tmp_path / "in")))}
    # what only the earlier recipe held changes (the project moved): still up to date
    moved = RecipeToyStage()
    moved.where = "elsewhere"
    assert run(moved).up_to_date and outputs(tmp_path)["a.out"] == "sentinel"


def test_an_item_whose_files_were_deleted_is_made_again(tmp_path):
    make_inputs(tmp_path / "in", {"a": "x", "b": "yy"})
    run_toy(tmp_path)
    (tmp_path / "out" / "b.out").write_text("sentinel")  # proves b is not redone
    (tmp_path / "out" / "a.out").unlink()  # the user deleted a's file
    again = run_toy(tmp_path)
    assert (again.items_total, again.items_skipped, again.up_to_date) == (2, 1, False)
    assert outputs(tmp_path) == {"a.out": "X", "b.out": "sentinel"}
    assert run_toy(tmp_path).up_to_date

    class Costly(ToyStage):  # a stage whose pruned files are not remade (train's checkpoints)
        remake_lost_outputs = False

    (tmp_path / "out" / "a.out").unlink()
    loaded = load_settings(overrides={"project": {"seed": 1}})
    [kept] = Runner(Workspace.for_output(tmp_path / "out"), loaded, input_path=tmp_path / "in").run([Costly()])
    assert kept.up_to_date and not (tmp_path / "out" / "a.out").exists()
