"""synthaug.pipeline.core.pool: jobs over spawned worker processes, and the sweep run through it."""
import os

import pytest

from synthaug.pipeline.core.errors import SynthaugError
from synthaug.pipeline.core.pool import imap, plan


def _state(base: int) -> dict:
    import torch

    return {"base": base, "pid": os.getpid(), "threads": torch.get_num_threads()}


def _job(state: dict, item: int):
    if item < 0:
        raise SynthaugError(f"item {item}: negative")
    return state["base"] + item, state["pid"], state["threads"]


def test_plan_splits_the_cores_and_stays_in_process_where_that_is_better():
    assert plan(10, "cpu", cores=2) == (2, 1)
    assert plan(10, "cpu", cores=16) == (4, 4)  # at most 4 workers, the cores shared as threads
    assert plan(3, "cpu", cores=8) == (3, 2)  # no more workers than jobs
    assert plan(3, "cpu", cores=2) == (3, 1)  # a few jobs all at once: no idle core at the end
    assert plan(5, "cpu", cores=2) == (2, 1)
    assert plan(10, "cpu", cores=1) == (1, 0)  # one core: in-process, torch's threads as they are
    assert plan(10, "cuda", cores=8) == (1, 0)  # a GPU: in-process
    assert plan(1, "cpu", cores=8) == (1, 0)
    assert plan(10, "cpu", workers=1, cores=8) == (1, 0)  # asked for one process
    assert plan(10, "cuda", workers=2, cores=8) == (2, 4)  # asked for, even on a GPU


def test_workers_run_every_item_once_in_their_own_processes_with_their_threads():
    out = dict(imap(_state, (100,), _job, list(range(6)), workers=2, threads=1))
    assert sorted(out) == list(range(6))
    assert [out[i][0] for i in range(6)] == [100 + i for i in range(6)]
    pids = {pid for _, pid, _ in out.values()}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2
    assert {threads for *_, threads in out.values()} == {1}
    # one worker: everything here, in order
    here = list(imap(_state, (0,), _job, [3, 4], workers=1))
    assert [(i, v) for i, (v, _, _) in here] == [(0, 3), (1, 4)]
    assert {pid for _, (_, pid, _) in here} == {os.getpid()}


def test_a_workers_error_reaches_the_parent_as_it_was():
    with pytest.raises(SynthaugError, match="item -1: negative"):
        list(imap(_state, (0,), _job, [1, -1, 2, 3], workers=2, threads=1))


def test_pooled_sweep_rows_equal_in_process_rows_on_one_thread(tmp_path, image_folder, run_cli,
                                                              repo_root, monkeypatch):
    """Each point's result depends on its seed and the thread count only: spread over two
    one-thread workers, the sweep gives the rows of one one-thread process, in point order."""
    import json

    import torch
    import yaml

    image_folder(tmp_path / "images", classes=("a", "b"), per_class=30, size=(12, 12))
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    params["prepare"].update(source="folder:images", size=12, train_per_class=6,
                             val_fraction=0.2, test_fraction=0.2)
    params["train"].update(epochs=1, batch_size=8, epoch_size=0, patience=0)
    params["sweep"].update(models=["lenet5"], real_per_class=[2, 4], ratios=[], seeds=[0, 1],
                           low_data_seeds=[0, 1], when_per_class=[2],
                           when_variants=["real+classic", "more-real"], when_models=["lenet5"])
    params["augment"]["pipeline"] = "medium"  # a named preset: no augment stage output needed
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    r = run_cli(tmp_path, "prepare")
    assert r.exit_code == 0, r.output
    results = tmp_path / "metrics/sweep/lenet5/results.json"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        r = run_cli(tmp_path, "sweep", "-S", "sweep.workers=1", "--no-progress")
        assert r.exit_code == 0, r.output
        alone = json.loads(results.read_text())["rows"]
    finally:
        torch.set_num_threads(threads)
    monkeypatch.setattr("synthaug.pipeline.core.pool.usable_cores", lambda: 2)  # 2 workers x 1 thread
    r = run_cli(tmp_path, "sweep", "-S", "sweep.workers=2", "--no-progress")
    assert r.exit_code == 0 and "2 worker processes of" in r.output, r.output
    pooled = json.loads(results.read_text())["rows"]
    strip = lambda rows: [{k: v for k, v in row.items() if k != "train_seconds"} for row in rows]
    assert len(alone) == 2 * 2 + 2 * 2 and strip(pooled) == strip(alone)
    assert [(r["sweep"], r["value"], r["seed"]) for r in pooled][:4] == [
        ("real_per_class", 2, 0), ("real_per_class", 2, 1), ("real_per_class", 4, 0),
        ("real_per_class", 4, 1)]  # the points' order, whatever order they finished in
