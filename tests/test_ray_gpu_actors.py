"""The Ray executor's model actors on a local Ray with one CPU and one *logical* GPU (Ray schedules ``num_gpus``
and hands out GPU ids without any hardware): no more actors are started than the GPUs hold, so a
stage on a 1-GPU cluster with ``workers: 2`` finishes instead of waiting on an actor that never
gets a GPU; ``ray_gpus: 0.5`` puts two actors on that GPU.

A module of its own: its Ray runs in this process (cheaper than a second ``ray start``) and must
be stopped before test_ray_executor's runs, which start or join a Ray of their own."""

from __future__ import annotations

import importlib.util
import logging
import time
from pathlib import Path

import pytest

from animlora.pipeline.executors import run_ray
from animlora.pipeline.stage import StageJob, WorkItem
from ray_stages import GpuProbe, worker_pythonpath

# ray is imported in the tests, not here: Ray reads its auth mode and token when it is imported,
# and test_ray_executor sets both when it is collected (whichever module pytest collects first)
pytestmark = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs ray (animlora[ray])")
TIMEOUT = 60  # s


@pytest.fixture(scope="module")
def one_gpu_ray(tmp_path_factory):
    """A local Ray with 1 CPU and 1 logical GPU, started in this process (``address="local"``:
    never another Ray found on the machine)."""
    import ray

    if ray.is_initialized():
        pytest.skip("a Ray is already running in this process")
    ray.init(address="local", num_cpus=1, num_gpus=1, include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING, runtime_env={"env_vars": {"PYTHONPATH": worker_pythonpath()}},
             _temp_dir=str(tmp_path_factory.mktemp("ray")))
    try:
        yield
    finally:
        ray.shutdown()


def _probe(tmp_path: Path, monkeypatch, workers: int, gpus_per_worker: float, gpu: bool = True) -> list[dict]:
    """GpuProbe's 4 items through run_ray as a GPU stage; each item's (pid, GPU ids). A stage
    that waits on an actor that never starts fails after TIMEOUT s instead of hanging (Ray's
    wait does not see signals, so each of run_ray's waits is given what is left of TIMEOUT)."""
    import ray

    job = StageJob(settings=None, output_dir=tmp_path, input_path=None, workspace_root=tmp_path, standalone=True)
    items = [WorkItem(key=f"i{k}", fingerprint=str(k)) for k in range(4)]
    deadline = time.monotonic() + TIMEOUT
    wait = ray.wait

    def bounded_wait(refs, **kwargs):
        ready, rest = wait(refs, **kwargs, timeout=max(0.0, deadline - time.monotonic()))
        if not ready:
            raise TimeoutError(f"run_ray still waits on {len(rest)} items after {TIMEOUT} s")
        return ready, rest

    monkeypatch.setattr(ray, "wait", bounded_wait)
    outcomes = list(run_ray(GpuProbe(), job, items, workers, gpus_per_worker=gpus_per_worker,
                            gpu_check=lambda stage, settings, gpus: gpu))
    assert sorted(item.key for item, _ in outcomes) == [item.key for item in items]
    assert not [out for _, out in outcomes if isinstance(out, BaseException)]
    return [out.data for _, out in outcomes]


def test_a_one_gpu_cluster_runs_one_whole_gpu_actor_not_workers(one_gpu_ray, tmp_path, monkeypatch, caplog):
    with caplog.at_level(logging.INFO, logger="animlora"):
        done = _probe(tmp_path, monkeypatch, workers=2, gpus_per_worker=1.0)
    assert len({d["pid"] for d in done}) == 1  # one actor took every item
    assert [d["gpus"] for d in done] == [[0]] * 4
    assert any("1 of 2" in r.getMessage() for r in caplog.records)  # the run says why fewer actors


def test_half_a_gpu_each_puts_two_actors_on_the_one_gpu(one_gpu_ray, tmp_path, monkeypatch):
    done = _probe(tmp_path, monkeypatch, workers=2, gpus_per_worker=0.5)
    assert len({d["pid"] for d in done}) == 2
    assert {tuple(d["gpus"]) for d in done} == {(0,)}


def test_model_actors_on_cpus_are_no_more_than_the_cpus(one_gpu_ray, tmp_path, monkeypatch, caplog):
    # the same hang with CPU actors (a model stage on a CPU cluster smaller than runner.workers)
    with caplog.at_level(logging.INFO, logger="animlora"):
        done = _probe(tmp_path, monkeypatch, workers=2, gpus_per_worker=1.0, gpu=False)
    assert len({d["pid"] for d in done}) == 1 and [d["gpus"] for d in done] == [[]] * 4
    assert any("1 of 2 CPU actors" in r.getMessage() for r in caplog.records)


def test_actors_fit_counts_per_gpu_and_per_node():
    from animlora.pipeline.executors import actors_fit

    # a share below one GPU comes from one GPU (Ray places four 0.4-GPU actors on 2 GPUs, not
    # five); a whole-GPU ask from one node
    fit = {(nodes, per): actors_fit(nodes, per) for nodes, per in [
        ((1.0,), 1.0), ((1.0,), 0.5), ((2.0,), 0.4), ((1.0, 1.0), 0.4), ((8.0,), 1 / 3), ((4.0, 0.0), 1.0),
        ((1.0, 1.0), 2.0), ((4.0,), 2.0)]}
    assert list(fit.values()) == [1, 2, 4, 4, 24, 4, 0, 2]


def test_a_gpu_stage_no_gpu_can_hold_stops_with_one_line(one_gpu_ray, tmp_path):
    from animlora.errors import StageError

    job = StageJob(settings=None, output_dir=tmp_path, input_path=None, workspace_root=tmp_path, standalone=True)
    with pytest.raises(StageError, match=r"no node of the Ray cluster has 2 GPU for one actor"):
        list(run_ray(GpuProbe(), job, [WorkItem(key="i0", fingerprint="0")], 2, gpus_per_worker=2.0,
                     gpu_check=lambda stage, settings, gpus: True))


def test_ray_gpus_is_a_share_of_one_gpu_or_whole_gpus():
    from pydantic import ValidationError

    from animlora.config.schema import RunnerSettings

    base = {"executor": "ray", "executors": {}, "workers": 2, "ray_address": "", "ray_retries": 3}
    assert [RunnerSettings(**base, ray_gpus=v).ray_gpus for v in (0.25, 1.0, 2.0)] == [0.25, 1.0, 2.0]
    with pytest.raises(ValidationError, match="a share of one GPU"):
        RunnerSettings(**base, ray_gpus=1.5)
