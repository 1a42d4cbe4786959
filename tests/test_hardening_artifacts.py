"""Issue 17, items 3, 5 and 8 (concurrent runs): tampered or foreign artifacts are named in one
line, a full disk is one line with the previous output intact, and a second run on the same
output stops at once instead of mixing with the first."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from synthaug.pipeline.core.errors import SynthaugError
from synthaug.pipeline.core.outputs import MARKER, atomic_output, lock_path
from synthaug.pipeline.data.storage import read_dataset, write_dataset
from tests.conftest import one_line_error

ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def packed(folder: Path, n=12, classes=3, shape=(8, 8, 1), seed=0) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    write_dataset(folder, rng.integers(0, 256, (n, *shape), dtype=np.uint8),
                  np.arange(n) % classes, [f"c{i}" for i in range(classes)])
    return folder


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def debris(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ------------------------------------------------------------------ packed data sets
def _meta(folder, **change):
    meta = json.loads((folder / "meta.json").read_text())
    meta.update(change)
    for k in [k for k, v in change.items() if v is None]:
        del meta[k]
    (folder / "meta.json").write_text(json.dumps(meta))


TAMPER = {  # name -> (edit of a packed set folder, file named, words in the message)
    "float images": (lambda d: np.save(d / "images.npy", np.load(d / "images.npy").astype(np.float32)),
                     "images.npy", "float32, not uint8"),
    "three dims": (lambda d: np.save(d / "images.npy", np.load(d / "images.npy")[..., 0]),
                   "images.npy", "not N x H x W x C"),
    "two channels": (lambda d: np.save(d / "images.npy", np.zeros((12, 8, 8, 2), np.uint8)),
                     "images.npy", "C 1 or 3"),
    "short labels": (lambda d: np.save(d / "labels.npy", np.load(d / "labels.npy")[:-1]),
                     "labels.npy", "11 labels for 12 images"),
    "labels out of range": (lambda d: np.save(d / "labels.npy", np.load(d / "labels.npy") + 1),
                            "labels.npy", "outside the 3 classes"),
    "float labels": (lambda d: np.save(d / "labels.npy", np.load(d / "labels.npy") * 1.0),
                     "labels.npy", "not N integers"),
    "pickled labels": (lambda d: np.save(d / "labels.npy", np.array([{}] * 12, dtype=object)),
                       "labels.npy", "unreadable .npy file"),
    "truncated images": (lambda d: (d / "images.npy").write_bytes((d / "images.npy").read_bytes()[:90]),
                         "images.npy", "unreadable .npy file"),
    "one pixel changed": (lambda d: np.save(d / "images.npy", _flip(d)), "",
                          "do not match meta.json's content_hash"),
    "meta without class_names": (lambda d: _meta(d, class_names=None), "meta.json",
                                 "no 'class_names' key"),
    "meta wrong type": (lambda d: _meta(d, num_images="12"), "meta.json", "'num_images' is str"),
    "meta wrong count": (lambda d: _meta(d, num_images=13), "meta.json", "records 13 images"),
    "meta not json": (lambda d: (d / "meta.json").write_text("{nope"), "meta.json",
                      "not valid JSON"),
}


def _flip(d: Path) -> np.ndarray:
    im = np.load(d / "images.npy")
    im[3, 2, 1, 0] ^= 1
    return im


@pytest.mark.parametrize("case", TAMPER)
@pytest.mark.parametrize("mmap", [False, True])
def test_tampered_packed_sets_are_named_in_one_line(tmp_path, case, mmap):
    folder = packed(tmp_path / "set")
    read_dataset(folder, mmap=mmap)  # as written: fine
    edit, name, words = TAMPER[case]
    edit(folder)
    with pytest.raises(SynthaugError) as e:
        read_dataset(folder, mmap=mmap)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{folder / name if name else folder}: "), msg
    assert words in msg, msg


def test_a_tampered_set_stops_the_cli_with_one_line(run_cli, tmp_path):
    folder = packed(tmp_path / "set")
    np.save(folder / "labels.npy", np.load(folder / "labels.npy")[:5])
    one_line_error(run_cli(tmp_path, "export", "set", "--to", "png"), "set/labels.npy",
                   "5 labels for 12 images")
    assert not (tmp_path / "png").exists()


def test_manifest_rows_must_match(tmp_path):
    folder = packed(tmp_path / "set")
    lines = (folder / "manifest.csv").read_text().splitlines()
    (folder / "manifest.csv").write_text("\n".join(lines[:-1]) + "\n")
    read_dataset(folder)  # the manifest is read only when asked for
    with pytest.raises(SynthaugError, match="manifest.csv: 11 rows for 12 images"):
        read_dataset(folder, manifest=True)


def test_hash_check_is_cheap_on_5000_images(tmp_path):
    folder = packed(tmp_path / "set", n=5000, classes=10, shape=(28, 28, 1))
    read_dataset(folder, mmap=False)
    start = time.perf_counter()
    for _ in range(5):
        read_dataset(folder, mmap=False)
    assert (time.perf_counter() - start) / 5 < 0.25  # measured: about 6 ms on 2 cores


# ------------------------------------------------------------------ model folders
def tiny_classifier(folder: Path, classes=2):
    from synthaug.pipeline.classifiers.classifier import make_classifier, save_classifier
    from synthaug.pipeline.classifiers.layers import resolve_layers

    layers = resolve_layers("cnn", {}, (1, 16, 16))
    model = make_classifier(layers, (1, 16, 16), classes, [0.5], [0.25])
    save_classifier(folder, model, {"model": "cnn", "shape": [1, 16, 16],
                                    "class_names": [f"c{i}" for i in range(classes)],
                                    "layers": [layer.model_dump() for layer in layers],
                                    "best_epoch": 1, "run_id": "abc"})
    return model


def _config(folder, edit):
    config = json.loads((folder / "config.json").read_text())
    edit(config)
    (folder / "config.json").write_text(json.dumps(config))


MODEL_TAMPER = {
    "missing key": (lambda d: _config(d, lambda c: c.pop("mean")), "config.json", "missing key(s) mean"),
    "unknown key": (lambda d: _config(d, lambda c: c.update(colour="red")), "config.json",
                    "unknown key(s) colour"),
    "wrong type": (lambda d: _config(d, lambda c: c.update(shape="1x16x16")), "config.json",
                   "'shape' is str, not list"),
    "bad shape": (lambda d: _config(d, lambda c: c.update(shape=[1, 16])), "config.json",
                  "not [C, H, W]"),
    "bad layers": (lambda d: _config(d, lambda c: c.update(layers=[{"type": "warp"}])),
                   "config.json", "does not describe a classifier"),
    "not a classifier": (lambda d: _config(d, lambda c: c.update(kind="generator")), "config.json",
                         "not a classifier's config"),
    "not json": (lambda d: (d / "config.json").write_text("[1, 2"), "config.json", "not valid JSON"),
    "a list": (lambda d: (d / "config.json").write_text("[1, 2]"), "config.json", "not a JSON object"),
    "truncated weights": (lambda d: (d / "weights.safetensors").write_bytes(
        (d / "weights.safetensors").read_bytes()[:500]), "weights.safetensors",
        "unreadable safetensors file"),
    "empty weights": (lambda d: (d / "weights.safetensors").write_bytes(b""),
                      "weights.safetensors", "unreadable safetensors file"),
    "other architecture": (lambda d: _config(d, lambda c: c.update(class_names=["a", "b", "c"])),
                           "weights.safetensors", "does not fit the architecture"),
}


@pytest.mark.parametrize("case", MODEL_TAMPER)
def test_tampered_classifier_folders_are_named_in_one_line(tmp_path, case):
    from synthaug.pipeline.classifiers.classifier import load_classifier

    folder = tmp_path / "m"
    tiny_classifier(folder)
    load_classifier(folder)  # as written: fine
    edit, name, words = MODEL_TAMPER[case]
    edit(folder)
    with pytest.raises(SynthaugError) as e:
        load_classifier(folder)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{folder / name}: "), msg
    assert words in msg and "rerun" in msg, msg


def test_weights_of_another_model_name_the_mismatch(tmp_path):
    from synthaug.pipeline.classifiers.classifier import load_classifier

    tiny_classifier(tmp_path / "a", classes=2)
    tiny_classifier(tmp_path / "b", classes=3)
    (tmp_path / "a" / "weights.safetensors").write_bytes(
        (tmp_path / "b" / "weights.safetensors").read_bytes())
    with pytest.raises(SynthaugError, match=r"weights.safetensors: does not fit .*is \[3, "):
        load_classifier(tmp_path / "a")


def test_truncated_generator_weights_are_named(tmp_path):
    from synthaug.generators.common import build_generator, load_generator, save_generator
    from synthaug.generators.config import TrainGeneratorConfig

    cfg = TrainGeneratorConfig().family("vae").model_copy(update={"width": 8, "latent_dim": 4})
    model = build_generator("vae", cfg, (1, 8, 8), ["a", "b"])
    save_generator(tmp_path / "g", model, {})
    load_generator(tmp_path / "g")
    w = tmp_path / "g" / "weights.safetensors"
    w.write_bytes(w.read_bytes()[:-10])
    with pytest.raises(SynthaugError, match="g/weights.safetensors: unreadable safetensors"):
        load_generator(tmp_path / "g")


# ------------------------------------------------------------------ resume checkpoints
def test_truncated_resume_checkpoint_starts_over_with_a_warning(tmp_path):
    from synthaug.generators.resume import load_checkpoint, save_checkpoint

    ckpt = tmp_path / "checkpoint.pt"
    save_checkpoint(ckpt, "k", {"step": 4, "model": {"w": torch.zeros(1000)}})
    assert load_checkpoint(ckpt, "k", "cpu")[0]["step"] == 4
    ckpt.write_bytes(ckpt.read_bytes()[:len(ckpt.read_bytes()) // 2])
    state, note = load_checkpoint(ckpt, "k", "cpu")
    assert state is None and "\n" not in note
    assert note.startswith(f"warning: {ckpt}: unreadable checkpoint (") and "starting over" in note
    torch.save({"key": "k", "step": "four"}, ckpt)  # readable, this run's, but nonsense
    assert load_checkpoint(ckpt, "k", "cpu")[0] is None


def _state(run) -> dict:
    def flat(x, prefix=""):
        if isinstance(x, dict):
            return {k2: v2 for k, v in x.items() for k2, v2 in flat(v, f"{prefix}{k}/").items()}
        if isinstance(x, (list, tuple)):
            return {k2: v2 for i, v in enumerate(x) for k2, v2 in flat(v, f"{prefix}{i}/").items()}
        return {prefix: x}
    return flat(run.trainer.state_dict())


def test_keyed_but_broken_checkpoint_starts_over_as_a_fresh_run(tmp_path):
    """A checkpoint with this run's key whose contents do not fit the trainer: the warning,
    then exactly the state of a run that never saw it (not a half-loaded model)."""
    from synthaug.generators.config import TrainGeneratorConfig
    from synthaug.generators.run import GeneratorRun
    from synthaug.pipeline.core.device import seed_everything

    cfg = TrainGeneratorConfig.model_validate(
        {"device": "cpu", "log_every": 2, "checkpoint_every": 2, "grid_every": 0,
         "vae": {"steps": 4, "batch_size": 4, "width": 8, "latent_dim": 4, "embed_dim": 4}})
    train = read_dataset(packed(tmp_path / "train", n=8, classes=2, shape=(8, 8, 1)))
    runs, notes = [], []
    for name in ("fresh", "broken"):
        rng = seed_everything(0, deterministic=True)
        run = GeneratorRun("vae", cfg, train, train, tmp_path / name, torch.device("cpu"), rng)
        if name == "broken":  # weights that load (changed ones), then nonsense
            model = {k: v + 1 for k, v in run.trainer.state_dict()["model"].items()}
            (tmp_path / name).mkdir()
            torch.save({"key": run.key, "step": 2, "model": model, "ema": {"x": 1}},
                       tmp_path / name / "checkpoint.pt")
        notes.append(run.resume())
        runs.append(_state(run))
    fresh, broken = runs
    assert notes[0] == "" and "\n" not in notes[1]
    assert notes[1].startswith(f"warning: {tmp_path / 'broken' / 'checkpoint.pt'}: unreadable "
                               "checkpoint (") and notes[1].endswith("starting over")
    assert fresh.keys() == broken.keys()
    for k, v in fresh.items():
        assert torch.equal(v, broken[k]) if isinstance(v, torch.Tensor) else v == broken[k], k


# ------------------------------------------------------------------ full disk
def _no_fallocate(*args):
    raise ENOSPC


def test_full_disk_while_writing_a_mapped_set_is_one_line(tmp_path, monkeypatch):
    out = tmp_path / "out"
    with atomic_output(out) as tmp:
        packed(tmp / "train")
    before = files_of(out)
    monkeypatch.setattr(os, "posix_fallocate", _no_fallocate)
    with pytest.raises(SynthaugError) as e:
        with atomic_output(out) as tmp:
            (tmp / "train").mkdir()
            images = np.zeros((2000, 32, 32, 3), np.uint8)  # 6 MB
            write_dataset(tmp / "train", images, np.zeros(2000), ["a"])
    msg = str(e.value)
    assert msg.startswith(f"no space left on device writing {out / 'train' / 'images.npy'} "
                          "(need about 6 MB)") and "\n" not in msg, msg
    assert files_of(out) == before and debris(tmp_path) == []


def test_full_disk_in_prepare_leaves_the_previous_output(run_cli, image_folder, tmp_path,
                                                         monkeypatch):
    image_folder(tmp_path / "images")
    (tmp_path / "params.yaml").write_text(
        "prepare:\n  source: folder:images\n  train_per_class: null\n")
    with atomic_output(tmp_path / "data" / "prepared") as tmp:  # an earlier run's
        packed(tmp / "train")
    before = files_of(tmp_path / "data" / "prepared")
    monkeypatch.setattr(os, "posix_fallocate", _no_fallocate)
    r = run_cli(tmp_path, "prepare")
    one_line_error(r, "no space left on device writing data/prepared", "MB)")
    assert files_of(tmp_path / "data" / "prepared") == before
    assert debris(tmp_path / "data") == []


def test_full_disk_on_plain_writes_and_weights(tmp_path, monkeypatch):
    import synthaug.pipeline.core.checkpoint as checkpoint

    out = tmp_path / "r.json"
    with atomic_output(out, is_dir=False) as f:
        f.write_text("old")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(args[0]))

    with pytest.raises(SynthaugError, match=rf"writing {out} \(need about 1 MB\)"):
        with atomic_output(out, is_dir=False) as f:
            f.write_text("new, half")
            full(f)
    assert out.read_text() == "old" and debris(tmp_path) == []

    def safetensors_full(tensors, filename, metadata=None):  # what safetensors raises
        Path(filename).write_bytes(b"partial")
        raise Exception('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                        'message: "No space left on device" })')

    monkeypatch.setattr(checkpoint, "save_file", safetensors_full)
    with pytest.raises(SynthaugError, match=r"writing .*m/weights.safetensors \(need about"):
        with atomic_output(tmp_path / "m") as tmp:
            tiny_classifier(tmp)
    assert not (tmp_path / "m").exists() and debris(tmp_path) == []


def test_full_disk_while_checkpointing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    from synthaug.generators.resume import load_checkpoint, save_checkpoint

    ckpt = tmp_path / "checkpoint.pt"
    save_checkpoint(ckpt, "k", {"step": 2, "w": torch.zeros(10)})

    def full(fd):
        raise ENOSPC

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(SynthaugError, match=f"no space left on device writing {ckpt}"):
        save_checkpoint(ckpt, "k", {"step": 4, "w": torch.ones(10)})
    monkeypatch.undo()
    assert load_checkpoint(ckpt, "k", "cpu")[0]["step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


def test_space_is_reserved_before_mapped_writes(tmp_path, monkeypatch):
    calls = []
    real = os.posix_fallocate
    monkeypatch.setattr(os, "posix_fallocate", lambda fd, off, n: calls.append(n) or real(fd, off, n))
    packed(tmp_path / "set", n=100)
    assert calls == [(tmp_path / "set" / "images.npy").stat().st_size]


# ------------------------------------------------------------------ two runs, one output
HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from synthaug.pipeline.core.outputs import atomic_output
    with atomic_output(Path(sys.argv[1])) as tmp:
        (tmp / "v").write_text("first")
        print("holding", flush=True)
        time.sleep(60)
""")


@pytest.fixture
def holder(repo_root):
    """holder(path): a separate process inside atomic_output(path), until killed."""
    procs = []

    def start(path: Path) -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], cwd=repo_root,
                             stdout=subprocess.PIPE, text=True)
        procs.append(p)
        assert p.stdout.readline().strip() == "holding"  # bounded: the child sleeps 60 s at most
        return p

    yield start
    for p in procs:
        p.kill()
        p.wait(timeout=30)


def test_a_second_run_on_the_same_output_fails_fast(holder, tmp_path):
    out = tmp_path / "out"
    first = holder(out)
    start = time.perf_counter()
    with pytest.raises(SynthaugError) as e:
        with atomic_output(out) as tmp:
            (tmp / "v").write_text("second")
    assert time.perf_counter() - start < 5
    assert str(e.value) == (f"{out} is being written by another synthaug run (pid {first.pid}); "
                            f"wait for it or remove {lock_path(out)} if it is stale")
    with atomic_output(tmp_path / "other") as tmp:  # other outputs are free
        (tmp / "v").write_text("ok")

    first.send_signal(signal.SIGKILL)  # killed: its lock goes with it, its file stays
    first.wait(timeout=30)
    assert lock_path(out).is_file()
    with atomic_output(out) as tmp:
        (tmp / "v").write_text("second")
    assert (out / "v").read_text() == "second" and (out / MARKER).is_file()
    assert debris(tmp_path) == []  # the stale tmp folder and the lock file are gone


def test_a_second_cli_run_says_so_in_one_line(run_cli, holder, image_folder, tmp_path):
    image_folder(tmp_path / "images", per_class=6)
    (tmp_path / "params.yaml").write_text(
        "prepare:\n  source: folder:images\n  train_per_class: null\n")
    first = holder(tmp_path / "data" / "prepared")
    r = run_cli(tmp_path, "prepare")
    one_line_error(r, "data/prepared is being written by another synthaug run",
                   f"(pid {first.pid})", "data/.prepared.lock")


# ---------------------------------------------------------------- issue 31, items 6 and 7

def test_manifest_cells_never_start_a_spreadsheet_formula_and_read_back_exactly(tmp_path):
    import csv

    values = ["=HYPERLINK(\"x\")", "+1+2", "-2+3+cmd|' /C calc'!A0", "@SUM(A1)", "\tx", "'quoted",
              "''twice", "-1", "+2.5e3", "plain", ""]
    names = ["=cls", "ok"]
    folder = tmp_path / "set"
    folder.mkdir()
    n = len(values)
    write_dataset(folder, np.zeros((n, 8, 8, 1), np.uint8), np.arange(n) % 2, names,
                  [{"origin": v, "seed": -1} for v in values])
    with open(folder / "manifest.csv", newline="", encoding="utf-8") as f:
        cells = [c for row in csv.reader(f) for c in row]
    risky = [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")
             and c not in ("-1", "+2.5e3")]  # plain numbers are no formula
    assert risky == [], risky
    assert "'=cls" in cells and "-1" in cells and "+2.5e3" in cells  # plain numbers stay
    back = read_dataset(folder, manifest=True).manifest
    assert [r["origin"] for r in back] == values
    assert {r["seed"] for r in back} == {"-1"}


def test_export_keeps_classes_apart_and_takes_any_name(run_cli, tmp_path):
    names = ["cat", "cat ", "a\x00b", "x" * 300, "é" * 150]
    folder = tmp_path / "set"
    packed(folder, n=10, classes=len(names))
    meta = json.loads((folder / "meta.json").read_text())
    counts = dict(zip(names, meta["counts"].values()))
    meta.update(class_names=names, counts=counts)
    (folder / "meta.json").write_text(json.dumps(meta))
    r = run_cli(tmp_path, "export", "set", "--to", "png")
    assert r.exit_code == 0, r.output  # was: a traceback (NUL, 300 characters)
    dirs = sorted(d.name for d in (tmp_path / "png").iterdir() if d.is_dir())
    assert len(dirs) == len(names)  # "cat" and "cat " were merged into one folder
    assert "cat" in dirs and "cat_1" in dirs and "a_b" in dirs
    assert all(len(d.encode()) <= 200 for d in dirs)
    assert sum(len(list((tmp_path / "png" / d).iterdir())) for d in dirs) == 10
    assert "class 1 'cat ' written as 'cat_1'" in r.output
