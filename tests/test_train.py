"""The training loop, checkpoints, and the train/evaluate commands on tiny synthetic data."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from synthaug.pipeline.classifiers.classifier import channel_stats, load_classifier, make_classifier, save_classifier
from synthaug.pipeline.classifiers.config import TrainConfig, recipe
from synthaug.pipeline.core.device import pick_device, seed_everything
from synthaug.pipeline.core.errors import SynthaugError
from synthaug.pipeline.classifiers.layers import resolve_layers
from synthaug.pipeline.data.storage import write_dataset
from synthaug.pipeline.classifiers.training import fit, predict
from torch.optim.optimizer import register_optimizer_step_post_hook

CPU = torch.device("cpu")


def blobs(n_per_class=30, size=16, seed=0):
    """Two easy classes: a bright square top-left (0) or bottom-right (1), plus noise."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 60, (2 * n_per_class, size, size, 1)).astype(np.uint8)
    y = np.repeat([0, 1], n_per_class)
    h = size // 2
    for i, label in enumerate(y):
        if label == 0:
            x[i, :h, :h] += 150
        else:
            x[i, h:, h:] += 150
    order = rng.permutation(len(y))
    return x[order], y[order].astype(np.int64)


def model_for(x, name="cnn", classes=2):
    shape = (x.shape[3], x.shape[1], x.shape[2])
    return make_classifier(resolve_layers(name, {}, shape), shape, classes, *channel_stats(x))


def quick_fit(name="cnn", **cfg):
    x, y = blobs()
    xv, yv = blobs(10, seed=1)
    g = seed_everything(0)
    model = model_for(x, name)
    cfg = TrainConfig(**{"epochs": 6, "batch_size": 16, "patience": 0, "epoch_size": 0, **cfg})
    return model, fit(model, (x, y), (xv, yv), cfg, CPU, g, progress=False), (xv, yv)


@pytest.mark.parametrize("name", ["cnn", "lenet5", "resnet_small"])
def test_loss_goes_down_and_learns(name):
    model, r, (xv, yv) = quick_fit(name)
    losses = [h["train_loss"] for h in r.history]
    assert losses[-1] < 0.6 * losses[0], losses
    assert r.best_val_accuracy >= 0.9
    acc = (predict(model, xv, CPU).argmax(1).numpy() == yv).mean()
    assert acc == pytest.approx(r.best_val_accuracy)  # the best state is what we keep


def test_same_seed_same_weights_different_seed_differs():
    a, _, _ = quick_fit(epochs=2)
    b, _, _ = quick_fit(epochs=2)
    c, _, _ = quick_fit(epochs=2, seed=1)
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    x, y = blobs()
    g = seed_everything(1)  # a different init seed changes the weights
    d = model_for(x)
    fit(d, (x, y), blobs(10, seed=1), TrainConfig(epochs=2, batch_size=16, epoch_size=0), CPU, g, progress=False)
    assert not all(torch.equal(sa[k], d.state_dict()[k]) for k in sa)


def test_early_stopping_and_best_checkpoint():
    # a learning rate this small changes nothing: val accuracy never improves after epoch 1
    _, r, _ = quick_fit(epochs=10, patience=2, lr=1e-12, scheduler="none")
    assert r.stopped_early and r.epochs_run == 3 and r.best_epoch == 1


def test_ema_decay_selects_and_keeps_the_moving_average_of_every_step():
    """With ema_decay the kept model is the warm-up EMA of the weights after each optimiser
    step, recomputed here from the live weights the optimiser left at every step."""
    x, y = blobs()
    xv, yv = blobs(10, seed=1)
    model = model_for(x)
    cfg = TrainConfig(epochs=1, batch_size=16, patience=0, epoch_size=0, ema_decay=0.9)
    float_keys = [k for k, v in model.state_dict().items() if v.is_floating_point()]
    expected, live, steps = None, None, []

    def after_step(opt, *_):
        nonlocal expected, live
        live = {k: model.state_dict()[k].detach().clone() for k in float_keys}
        if expected is None:  # the first update copies
            expected = live
        else:
            decay = min(0.9, (1 + len(steps) + 1) / (10 + len(steps) + 1))
            expected = {k: expected[k] + (1 - decay) * (live[k] - expected[k]) for k in live}
        steps.append(1)

    hook = register_optimizer_step_post_hook(after_step)  # every optimiser
    try:
        r = fit(model, (x, y), (xv, yv), cfg, CPU, seed_everything(0), progress=False)
    finally:
        hook.remove()
    assert len(steps) == 4  # 60 images in batches of 16
    kept = model.state_dict()
    assert all(torch.allclose(kept[k], expected[k], atol=1e-6) for k in float_keys)
    # ... which are not the live weights of the last step; its val accuracy is the one it was
    # chosen by
    assert not all(torch.allclose(kept[k], live[k], atol=1e-6) for k in float_keys)
    acc = (predict(model, xv, CPU).argmax(1).numpy() == yv).mean()
    assert acc == pytest.approx(r.best_val_accuracy)


@pytest.mark.parametrize("opt,sched", [("sgd", "step"), ("adam", "cosine")])
def test_other_optimisers_and_schedules_train(opt, sched):
    _, r, _ = quick_fit(optimizer=opt, scheduler=sched, lr=0.01 if opt == "sgd" else 3e-3)
    assert r.history[-1]["train_loss"] < r.history[0]["train_loss"]


def test_save_load_roundtrip(tmp_path):
    model, _, (xv, _) = quick_fit(epochs=1)
    layers = resolve_layers("cnn", {}, (1, 16, 16))
    save_classifier(tmp_path / "m", model, {"model": "cnn", "shape": [1, 16, 16],
                                            "class_names": ["tl", "br"],
                                            "layers": [l.model_dump() for l in layers]})
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "weights.safetensors"]
    loaded, cfg = load_classifier(tmp_path / "m")
    assert cfg["class_names"] == ["tl", "br"]
    assert torch.equal(predict(model, xv, CPU), predict(loaded, xv, CPU))


def test_missing_model_folder_and_devices(tmp_path):
    with pytest.raises(SynthaugError, match="not a model folder"):
        load_classifier(tmp_path)
    assert pick_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert pick_device("auto").type in ("cpu", "mps")
        with pytest.raises(SynthaugError, match="CUDA is not available"):
            pick_device("cuda")


def test_epochs_are_fixed_slices_of_a_stream_of_shuffled_passes():
    from synthaug.pipeline.core.batches import ShuffledStream

    stream = ShuffledStream(10, seed_everything(0))
    taken = torch.cat([stream.take(25), stream.take(15)])  # 4 passes over 10 samples
    for k in range(4):  # every pass shows every sample once, in a new order
        assert sorted(taken[10 * k:10 * k + 10].tolist()) == list(range(10))
    assert not torch.equal(taken[:10], taken[10:20])
    _, r, _ = quick_fit(epochs=2, epoch_size=200, batch_size=20)  # 60 images, 200 per epoch
    assert r.history[-1]["lr"] < r.history[0]["lr"]  # the onecycle schedule ran its course


def test_online_augmentation_is_the_same_for_any_worker_count():
    from synthaug.pipeline.augment.expand import OnlineAugment

    x, y = blobs()
    weights = []
    for workers in (0, 1, 0):
        aug = OnlineAugment(x, y, "light", seed=0, workers=workers)
        g = seed_everything(0)
        model = model_for(x)
        r = fit(model, (x, y), blobs(10, seed=1), TrainConfig(epochs=2, batch_size=16, patience=0,
                                                            epoch_size=100),
                CPU, g, progress=False, augment=aug)
        assert r.history[-1]["train_loss"] < r.history[0]["train_loss"] * 1.5
        weights.append(torch.cat([p.flatten() for p in model.state_dict().values()]))
    assert torch.equal(weights[0], weights[1]) and torch.equal(weights[0], weights[2])
    plain, _, _ = quick_fit(epochs=2)  # same seed, no augmentation: a different model
    assert not torch.equal(weights[0], torch.cat([p.flatten() for p in plain.state_dict().values()]))


def blob_splits(root: Path) -> dict:
    """Prepared train/val/test splits of the blobs under `root`; returns the default params
    (params.yaml) for the caller to adjust and write."""
    prepared = root / "data" / "prepared"
    for split, (x, y) in {"train": blobs(), "val": blobs(10, seed=1), "test": blobs(12, seed=2)}.items():
        (prepared / split).mkdir(parents=True)
        write_dataset(prepared / split, x, y, ["tl", "br"], meta={"source": "blobs"})
    return yaml.safe_load((Path(__file__).parent.parent / "params.yaml").read_text())


@pytest.fixture
def tiny_project(tmp_path, run_cli):
    """Prepared splits of the blobs, their study variants (real, real+online) and a params file."""
    params = blob_splits(tmp_path)
    params["train"].update(epochs=3, batch_size=16, epoch_size=0)
    params["study"]["variants"] = ["real", "real+online"]
    params["compose"]["variants"]["real+online"]["online_augment"] = "light"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert run_cli(tmp_path, "compose").exit_code == 0
    return tmp_path


def test_train_and_evaluate_commands(tiny_project, run_cli):
    r = run_cli(tiny_project, "train", "--no-progress", "-S", "train.model=lenet5")
    assert r.exit_code == 0, r.output
    assert "best epoch" in r.output
    # the cell tests itself on the real test split, as `synthaug evaluate` does
    tested = json.loads((tiny_project / "metrics/evaluate/real/lenet5/seed0/metrics.json").read_text())
    model_dir = tiny_project / "models/classifiers/real/lenet5/seed0"
    log_dir = tiny_project / "metrics/train/real/lenet5/seed0"
    assert sorted(p.name for p in model_dir.iterdir()) == [".synthaug-output", "config.json", "weights.safetensors"]
    cfg = json.loads((model_dir / "config.json").read_text())
    assert cfg["model"] == "lenet5" and cfg["train"]["epochs"] == 3
    summary = json.loads((log_dir / "metrics.json").read_text())
    assert {"val_accuracy", "train_loss", "best_epoch", "best_val_accuracy"} <= set(summary)
    assert (log_dir / "plots/metrics/val_accuracy.tsv").read_text().count("\n") == 4  # header + 3
    assert (log_dir / "learning_curves.png").stat().st_size > 1000
    assert not [p for p in tiny_project.rglob(".*tmp-*")]  # no temporary folders left behind

    r = run_cli(tiny_project, "evaluate", "--model", "lenet5")
    assert r.exit_code == 0, r.output
    out = tiny_project / "metrics/evaluate/real/lenet5/seed0"
    m = json.loads((out / "metrics.json").read_text())
    assert m["num_test"] == 24 and 0.0 <= m["accuracy"] <= 1.0
    assert (m["variant"], m["model"], m["seed"]) == ("real", "lenet5", 0)
    assert set(json.loads((out / "per_class.json").read_text())) == {"tl", "br"}
    assert len((out / "predictions.csv").read_text().splitlines()) == 25
    assert (out / "confusion.png").stat().st_size > 1000
    assert f"accuracy {m['accuracy']:.4f}" in r.output
    assert m == tested  # re-scoring the saved model gives the cell's own numbers
    for stage in ("train", "evaluate"):  # each cell its own timing file
        timing = json.loads((tiny_project / f"metrics/timings/{stage}/real/lenet5/seed0.json").read_text())
        assert timing["cell"] == "real/lenet5/seed0" and timing["wall_seconds"] > 0


def test_a_cell_trains_saves_and_tests_without_the_cli(tmp_path):
    """synthaug.pipeline.classifiers.cell: the library under `synthaug train`, given folders."""
    from synthaug.pipeline.classifiers.cell import Cell
    from synthaug.pipeline.data.storage import PackedDataset

    def packed(x, y):
        return PackedDataset(x, y, ["tl", "br"], {"source": "blobs", "content_hash": "h"})

    train, val, test = packed(*blobs()), packed(*blobs(10, seed=1)), packed(*blobs(12, seed=2))
    cfg = recipe(TrainConfig(epochs=2, batch_size=16, epoch_size=0,
                             per_model={"lenet5": {"lr": 0.01}}), "lenet5", 4)
    cell = Cell("real", train, cfg, {}, CPU)  # seeds from the recipe
    assert cell.augment is None and "train lenet5 on real (seed 4)" in cell.describe(20)
    dirs = [tmp_path / d for d in ("model", "log", "test")]
    for d in dirs:
        d.mkdir()
    rows = []
    result, m = cell.run(val, test, *dirs, figures=False, progress=False, on_epoch=rows.append)
    assert [r["epoch"] for r in rows] == [1, 2] and result.epochs_run == 2
    config = json.loads((dirs[0] / "config.json").read_text())
    assert config["train"]["lr"] == 0.01 and config["trained_on"]["content_hash"] == "h"
    assert json.loads((dirs[1] / "metrics.json").read_text())["seed"] == 4
    assert len(json.loads((dirs[1] / "history.json").read_text())) == 2
    assert json.loads((dirs[2] / "metrics.json").read_text())["accuracy"] == m["accuracy"]
    assert not list(tmp_path.rglob("*.png"))  # figures=False


def test_per_model_recipe_and_a_cell_without_test_or_figures(tiny_project, run_cli):
    r = run_cli(tiny_project, "train", "--no-progress", "--no-test", "--no-figures",
                "--model", "lenet5", "-S", "train.per_model={lenet5: {epochs: 2, lr: 0.01}}")
    assert r.exit_code == 0, r.output
    cfg = json.loads((tiny_project / "models/classifiers/real/lenet5/seed0/config.json").read_text())
    assert (cfg["train"]["epochs"], cfg["train"]["lr"], cfg["train"]["model"]) == (2, 0.01, "lenet5")
    assert not (tiny_project / "metrics/evaluate").exists()
    assert not list((tiny_project / "metrics/train").rglob("*.png"))
    # another model keeps the section's own recipe
    assert recipe(TrainConfig(epochs=3, per_model={"lenet5": {"epochs": 2}}), "cnn", 0).epochs == 3
    for bad, msg in [("{lenet5: {seed: 1}}", "lenet5.seed: not a per-model recipe field"),
                     ("{lenet5: {lr: -1}}", "lenet5.lr: Input should be greater than 0"),
                     ("{vgg: {lr: 0.1}}", "train.per_model: unknown model 'vgg'")]:
        r = run_cli(tiny_project, "train", "-S", f"train.per_model={bad}")
        assert r.exit_code == 2 and msg in r.output, r.output


def test_metrics_match_scikit_learn():
    from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

    from synthaug.pipeline.classifiers.metrics import classification_metrics

    rng = np.random.default_rng(0)
    for k in (2, 5, 10):
        y = rng.integers(0, k, 300)
        pred = np.where(rng.random(300) < 0.6, y, rng.integers(0, k - 1, 300))  # class k-1 rarer
        m = classification_metrics(y, pred, [str(i) for i in range(k)])
        labels = list(range(k))
        p, r, f, n = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
        for i in range(k):
            row = m["per_class"][str(i)]
            assert np.allclose([row["precision"], row["recall"], row["f1"]], [p[i], r[i], f[i]])
            assert row["support"] == n[i]
        assert m["macro_f1"] == pytest.approx(f1_score(y, pred, labels=labels, average="macro",
                                                       zero_division=0))
        assert m["accuracy"] == pytest.approx((y == pred).mean())
        assert m["confusion_matrix"] == confusion_matrix(y, pred, labels=labels).tolist()
    # a class never predicted and never present: zeros, not NaN
    m = classification_metrics(np.array([0, 0]), np.array([0, 0]), ["a", "b"])
    assert m["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_study_cell_options_and_online_variant(tiny_project, run_cli):
    r = run_cli(tiny_project, "train", "--no-progress", "--variant", "real+online", "--seed", "3",
                "-S", "train.epochs=1")
    assert r.exit_code == 0, r.output
    assert "online augmentation light" in r.output
    log_dir = tiny_project / "metrics/train/real+online/cnn/seed3"
    assert (log_dir / "online_augment_preview.png").stat().st_size > 1000
    cfg = json.loads((tiny_project / "models/classifiers/real+online/cnn/seed3/config.json").read_text())
    assert cfg["trained_on"]["online_augment"] == "light" and cfg["train"]["seed"] == 3
    for args, fragment in [(["--variant", "real+nope"], "--variant: unknown variant 'real+nope'"),
                           (["--model", "vgg"], "--model: unknown model 'vgg'"),
                           (["--variant", "real+classic"], "run `synthaug compose`")]:
        r = run_cli(tiny_project, "train", *args)
        assert r.exit_code == 2 and fragment in r.output, r.output
    r = run_cli(tiny_project, "evaluate", "--seed", "5")
    assert r.exit_code == 2 and "synthaug train --variant real --model cnn --seed 5" in r.output


def test_the_dvc_stage_trains_every_cell_side_by_side_as_one_process_would(
        tiny_project, run_cli):
    """--study-variants --study-models --study-seeds (what the dvc stage runs): every variant
    x model x seed in one queue of forked one-thread workers gives the weights of the same
    runs one after another on one thread; one summary per variant, by model; one timing file."""
    models = ["-S", "study.models=[lenet5,cnn]", "-S", "study.seeds=[0,1]", "-S", "train.epochs=1"]
    study = ["train", "--study-variants", "--study-models", "--study-seeds", "--no-progress",
             "--no-figures", *models]
    r = run_cli(tiny_project, *study, "-S", "study.workers=2")
    assert r.exit_code == 0, r.output
    assert "study: 8 runs in 2 processes of 1 thread(s)" in r.output
    for variant in ("real", "real+online"):
        pooled = json.loads((tiny_project / f"metrics/study/{variant}.json").read_text())
        assert set(pooled) == {"cnn", "lenet5"} and set(pooled["cnn"]) == {"accuracy_mean", "seed0", "seed1"}
        for model in ("cnn", "lenet5"):
            seeds = [pooled[model][f"seed{s}"]["accuracy"] for s in (0, 1)]
            assert pooled[model]["accuracy_mean"] == pytest.approx(sum(seeds) / 2)
    timing = json.loads((tiny_project / "metrics/timings/train.json").read_text())
    assert timing["stage"] == "train" and timing["cell"] is None
    assert not (tiny_project / "metrics/timings/train").exists()
    weights = {run: (tiny_project / f"models/classifiers/{run}/weights.safetensors").read_bytes()
               for run in ("real/lenet5/seed0", "real/lenet5/seed1", "real/cnn/seed0",
                           "real/cnn/seed1", "real+online/cnn/seed1")}
    # one variant's cell, one process, one thread: the same weights bit for bit (the run ids
    # differ: threads is in the recipe)
    for variant in ("real", "real+online"):
        r = run_cli(tiny_project, "train", "--variant", variant, "--study-models", "--study-seeds",
                    "--no-progress", "--no-figures", *models, "-S", "study.workers=1",
                    "-S", "train.threads=1")
        assert r.exit_code == 0 and "runs in" not in r.output, r.output
    for run, before in weights.items():
        assert (tiny_project / f"models/classifiers/{run}/weights.safetensors").read_bytes() == before
    assert json.loads((tiny_project / "metrics/timings/train/real.json").read_text())["cell"] == "real"
    # one model's rerun replaces its row and keeps the other's
    pooled = json.loads((tiny_project / "metrics/study/real.json").read_text())
    r = run_cli(tiny_project, "train", "--variant", "real", "--model", "cnn", "--study-seeds",
                "--no-progress", "--no-figures", *models, "-S", "train.epochs=2")
    again = json.loads((tiny_project / "metrics/study/real.json").read_text())
    assert again["lenet5"] == pooled["lenet5"] and again["cnn"] != pooled["cnn"]
    r = run_cli(tiny_project, "train", "--study-models", "--model", "cnn")
    assert r.exit_code == 2 and "--model with --study-models" in r.output
    r = run_cli(tiny_project, "train", "--study-variants", "--variant", "real")
    assert r.exit_code == 2 and "--variant with --study-variants" in r.output


def test_bad_param_exits_2_writes_nothing(tiny_project, run_cli):
    r = run_cli(tiny_project, "train", "-S", "train.epochs=-3")
    assert r.exit_code == 2
    assert r.output.strip().count("\n") == 0 and "train.epochs" in r.output
    assert not (tiny_project / "models").exists()
    # only the timing files of the fixture's own stages (prepare, compose): no train ones
    assert [p.name for p in (tiny_project / "metrics").iterdir()] == ["timings"]
    assert not (tiny_project / "metrics/timings/train").exists()
    r = run_cli(tiny_project, "train", "-S", "train.online_augment=[{transform: Blurr}]")
    assert r.exit_code == 2 and "train.online_augment[0]: unknown transform 'Blurr'" in r.output
    assert not (tiny_project / "models").exists()


def test_evaluate_refuses_a_model_for_other_classes(tiny_project, run_cli):
    assert run_cli(tiny_project, "train", "--no-progress", "-S", "train.epochs=1").exit_code == 0
    test = tiny_project / "data/prepared/test"
    x, y = blobs(12, seed=2)
    write_dataset(test, x, y, ["a", "b"])
    r = run_cli(tiny_project, "evaluate")
    assert r.exit_code == 2 and "re-run `synthaug train`" in r.output


def test_training_from_a_memory_map_matches_training_from_memory(tmp_path, monkeypatch):
    import synthaug.pipeline.core.batches as training

    x, y = blobs()
    np.save(tmp_path / "images.npy", x)
    mapped = np.load(tmp_path / "images.npy", mmap_mode="r")
    weights = []
    for load in ("memory", "mmap"):
        g = seed_everything(0)
        model = model_for(x, "lenet5")  # no dropout: the order within a batch does not matter
        fit(model, (mapped, y), blobs(10, seed=1), TrainConfig(epochs=2, batch_size=16,
            patience=0, epoch_size=100, load=load, cpu_bf16=False), CPU, g, progress=False)
        weights.append(torch.cat([p.flatten() for p in model.state_dict().values()]))
    torch.testing.assert_close(weights[1], weights[0], rtol=1e-4, atol=1e-6)
    # auto: resident when it fits in a quarter of the free memory, else read from the map
    assert isinstance(training.place(mapped, CPU, "auto"), torch.Tensor)
    monkeypatch.setattr(training, "_free_bytes", lambda device: 4 * mapped.nbytes - 1)
    assert training.place(mapped, CPU, "auto") is mapped
    xb, yb = training.gather(mapped, torch.as_tensor(y), torch.tensor([5, 1, 3]))
    assert torch.equal(xb, torch.from_numpy(x[[1, 3, 5]]).permute(0, 3, 1, 2))  # ascending rows
    assert yb.tolist() == y[[1, 3, 5]].tolist()


def test_the_log_names_the_precision_and_why(monkeypatch):
    import torch

    from synthaug.pipeline.core.batches import mixed_precision, precision_note

    cpu = torch.device("cpu")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # the AVX2-only stand-in
    assert precision_note(cpu, True, True) == "cpu: fp32 (ONEDNN_MAX_CPU_ISA=AVX2)"
    assert mixed_precision(cpu, True, True) == (None, None)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    assert precision_note(cpu, True, True) == "cpu: fp32 (ATEN_CPU_CAPABILITY=avx2)"
    monkeypatch.delenv("ATEN_CPU_CAPABILITY")
    assert precision_note(cpu, True, False) == "cpu: fp32 (train.cpu_bf16 is off)"
    native = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert precision_note(cpu, True, True) == (
        "cpu: bf16 autocast (oneDNN has native bf16 (AVX512-BF16/AMX))" if native
        else "cpu: fp32 (no AVX512-BF16/AMX)")


def test_cpu_inference_batches_are_capped_and_change_no_logit():
    """On a CPU scoring runs in batches of at most CPU_INFERENCE_BATCH (large ones spill the
    caches); a GPU keeps the size asked for; the logits do not depend on it beyond float32
    rounding (oneDNN may pick other kernels for other batch sizes: the last bits may differ
    on some CPUs, e.g. with AMX) and no prediction changes."""
    import numpy as np
    import torch

    from synthaug.pipeline.classifiers.transfer import build_transfer
    from synthaug.pipeline.core import batches
    from synthaug.pipeline.classifiers.training import predict

    cpu = torch.device("cpu")
    assert batches.inference_batch(cpu, 1024) == batches.CPU_INFERENCE_BATCH == 64
    assert batches.inference_batch(cpu, 16) == 16
    assert batches.inference_batch(torch.device("cuda"), 1024) == 1024
    torch.manual_seed(0)
    model, _ = build_transfer("efficientnet_lite0", 10, pretrained=False, input_size=40)
    images = np.random.default_rng(0).integers(0, 256, (150, 28, 28, 1), dtype=np.uint8)
    seen = []
    hook = model.register_forward_pre_hook(lambda m, args: seen.append(len(args[0])))
    capped = predict(model, images, cpu, 512)
    assert seen == [64, 64, 22]
    seen.clear()
    one = predict(model, images, cpu, 1)  # one image at a time: the same numbers
    hook.remove()
    assert seen == [1] * 150
    torch.testing.assert_close(capped, one, rtol=1e-4, atol=1e-4)
    assert torch.equal(capped.argmax(1), one.argmax(1))


# ------------------------------------------------------------------ stale inputs (issue 31, item 2)
def _reprepare(root: Path, seed: int) -> None:
    """`prepare` again with another seed: a train split of other images."""
    import shutil

    train = root / "data/prepared/train"
    shutil.rmtree(train)
    train.mkdir()
    write_dataset(train, *blobs(seed=seed), ["tl", "br"], meta={"source": "blobs"})


def test_train_refuses_a_variant_made_from_an_older_train_split(tiny_project, run_cli):
    """prepare, compose, prepare again, train: trained on images now partly in the test
    split, exit 0, before; now one line naming the variant and `synthaug compose`."""
    from tests.conftest import one_line_error

    _reprepare(tiny_project, seed=7)
    r = run_cli(tiny_project, "train", "--no-progress", "-S", "train.model=lenet5")
    one_line_error(r, "data/variants/real: stale, made from another data/prepared/train",
                   "rerun `synthaug compose`")
    assert not (tiny_project / "models/classifiers").exists()
    # a variant written before synthaug recorded its train split: refused the same way
    assert run_cli(tiny_project, "compose").exit_code == 0
    meta_file = tiny_project / "data/variants/real/meta.json"
    meta = json.loads(meta_file.read_text())
    del meta["train_content_hash"]
    meta_file.write_text(json.dumps(meta))
    one_line_error(run_cli(tiny_project, "train", "--no-progress", "-S", "train.model=lenet5"),
                   "data/variants/real: records no content hash of the data/prepared/train",
                   "rerun `synthaug compose`")


def test_evaluate_refuses_a_model_of_an_older_variant(tiny_project, run_cli):
    from tests.conftest import one_line_error

    args = ("--no-progress", "--no-figures", "-S", "train.model=lenet5", "-S", "train.epochs=1")
    assert run_cli(tiny_project, "train", *args).exit_code == 0
    _reprepare(tiny_project, seed=7)
    # the variant is stale: evaluate names compose, as train does
    one_line_error(run_cli(tiny_project, "evaluate", "--model", "lenet5"),
                   "data/variants/real: stale", "rerun `synthaug compose`")
    assert run_cli(tiny_project, "compose").exit_code == 0
    # the variant is current, the model was trained on its older self
    one_line_error(run_cli(tiny_project, "evaluate", "--model", "lenet5"),
                   "models/classifiers/real/lenet5/seed0: stale, made from another data/variants/real",
                   "rerun `synthaug train --variant real --model lenet5 --study-seeds`")


def test_params_edited_while_a_cell_trains_are_refused_before_its_commit(tiny_project, run_cli,
                                                                          monkeypatch):
    """Issue 31, item 5, for `train`: the cell's model, log and test folders are not written."""
    from synthaug.pipeline.classifiers.trainer import Training
    from tests.conftest import one_line_error

    params_file = tiny_project / "params.yaml"
    fit = Training.fit

    def edited_meanwhile(self, *args, **kwargs):
        params_file.write_text(params_file.read_text().replace("lr: ", "lr: 0.5 #", 1))
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(Training, "fit", edited_meanwhile)
    r = run_cli(tiny_project, "train", "--no-progress", "--no-figures", "-S", "train.model=lenet5",
                "-S", "train.epochs=1")
    one_line_error(r, "params.yaml: ", "changed while this command ran")
    assert not (tiny_project / "models/classifiers").exists()
