"""Issue 32 item 1, defaults sized to the data: with only prepare.source/channels/size named,
`prepare.train_per_class: auto` picks k from the train pool's class counts (and says why),
sweep and when points the data cannot give are skipped with a note, an explicit setting that
cannot work stops `check` once with advice that works when followed, and `check` prints the
plan and an estimate of its time."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import yaml
from PIL import Image

from synthaug.pipeline.data.per_class import resolve_train_per_class

ONLY_SOURCE = ["-S", "prepare.channels=3", "-S", "prepare.size=32"]


def rgb_folder(root, per_class: dict[str, int], size=(10, 14), seed=0):
    """RGB PNGs of odd, mixed sizes (every other one 3 px wider, 1 px shorter)."""
    rng = np.random.default_rng(seed)
    for c, n in per_class.items():
        (root / c).mkdir(parents=True)
        for i in range(n):
            w, h = size if i % 2 else (size[0] + 3, size[1] - 1)
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
                root / c / f"img{i:03d}.png")
    return root


def project(tmp_path, repo_root, folder: str):
    """The repo's params.yaml as shipped (nothing but what a new user has)."""
    (tmp_path / "params.yaml").write_text((repo_root / "params.yaml").read_text())
    return ["-S", f"prepare.source=folder:{folder}", *ONLY_SOURCE]


SMALL = {"a": 12, "b": 12, "c": 12}  # 3 classes x 12: about 8 per class in the train pool
SEVEN = {f"class{i}": n for i, n in enumerate([48, 47, 49, 48, 46, 50, 48])}


def test_auto_rule():
    assert resolve_train_per_class("auto", [("0", 350), ("1", 393)])[0] == 50  # mnist5k
    k, why = resolve_train_per_class("auto", [("a", 9), ("b", 8)])
    assert k == 4 and "half the smallest class, 'b' with 8" in why and "held back" in why
    assert resolve_train_per_class("auto", [("a", 1)])[0] == 1  # at least 1
    assert resolve_train_per_class(7, [("a", 1)])[0] == 7  # an int is taken as set
    assert resolve_train_per_class(None, [("a", 9)])[0] is None
    from synthaug.pipeline.data.config import PrepareConfig

    assert PrepareConfig().train_per_class == "auto"
    assert PrepareConfig(train_per_class="12").train_per_class == 12


@pytest.mark.parametrize("classes,k,why", [
    (SMALL, 4, "half the smallest class, 'a' with about 8"),
    (SEVEN, 16, "half the smallest class, 'class0' with about 33")])
def test_check_passes_with_only_the_source_named(tmp_path, repo_root, run_cli, classes, k, why):
    rgb_folder(tmp_path / "imgs", classes)
    r = run_cli(tmp_path, "check", *project(tmp_path, repo_root, "imgs"))
    assert r.exit_code == 0, r.output
    out = r.stdout
    print(out)
    assert f"note: prepare.train_per_class: auto chose k={k} per class ({why}" in out
    assert "plan: study cells: 54 (cnn 27, efficientnet_lite0 27)" in out
    for line in ("plan: sweep points:", "plan: when points:", "plan: generators: 3",
                 "plan: estimate on ", "plan: estimate basis: constants measured on 2-core "
                 "AMD EPYCs with AVX512-BF16"):
        assert line in out, line
    assert "sweep.real_per_class: 100 is skipped" in out  # a note, not an error
    assert json.loads((tmp_path / "metrics/check.json").read_text()) == {"ok": True}


def test_the_estimate_uses_an_earlier_sweep_measured_here(tmp_path, repo_root, run_cli):
    rgb_folder(tmp_path / "imgs", SMALL)
    rows = [{"sweep": "real_per_class", "value": 5, "train_seconds": 3.0}] * 4
    (tmp_path / "metrics/sweep/cnn").mkdir(parents=True)
    (tmp_path / "metrics/sweep/cnn/results.json").write_text(json.dumps({"rows": rows}))
    r = run_cli(tmp_path, "check", *project(tmp_path, repo_root, "imgs"))
    assert r.exit_code == 0, r.output
    assert "cnn: 3.0 s a fit, measured here over 4 earlier sweep fits" in r.stdout


def test_an_estimate_over_an_hour_warns_with_the_settings_that_cut_it(tmp_path, repo_root,
                                                                       run_cli):
    """64 x 64 RGB with 60 seeds everywhere: check still passes, and says the study would take
    over an hour here and which -S settings cut each of its largest parts; the default study
    gets no such warning."""
    rgb_folder(tmp_path / "imgs", SMALL)
    seeds = str(list(range(60))).replace(" ", "")  # over an hour on up to 4 workers
    slow = ["-S", "prepare.size=64", "-S", f"study.seeds={seeds}", "-S", f"sweep.seeds={seeds}"]
    r = run_cli(tmp_path, "check", *project(tmp_path, repo_root, "imgs"), *slow)
    assert r.exit_code == 0, r.output
    warning = next(line for line in r.stdout.splitlines() if "over an hour" in line)
    assert warning.startswith("plan: warning: about ") and "to cut it: train (" in warning
    assert "-S 'study.seeds=[0,1,2]'" in warning
    r = run_cli(tmp_path, "check", *project(tmp_path, repo_root, "imgs"))
    assert "over an hour" not in r.stdout


def _advice(r) -> int:
    """The k an error line advises ("set it to N or less")."""
    return int(re.search(r"set (?:it|prepare\.train_per_class) to (\d+) or less", r.stderr)[1])


@pytest.mark.parametrize("classes", [SMALL, SEVEN])
def test_an_explicit_impossible_k_fails_once_and_its_advice_passes(tmp_path, repo_root, run_cli,
                                                                   classes):
    rgb_folder(tmp_path / "imgs", classes)
    base = project(tmp_path, repo_root, "imgs")
    for setting in ("50", "30" if classes is SEVEN else "6"):
        r = run_cli(tmp_path, "check", *base, "-S", f"prepare.train_per_class={setting}")
        assert r.exit_code == 2 and "Traceback" not in r.output, r.output
        assert len(r.stderr.splitlines()) == 1, r.stderr  # once: one line, one cause
        k = _advice(r)
        r = run_cli(tmp_path, "check", *base, "-S", f"prepare.train_per_class={k}")
        assert r.exit_code == 0, r.output  # followed: it passes
    r = run_cli(tmp_path, "check", *base, "-S", "prepare.train_per_class=null")
    assert r.exit_code == 2 and "set it to auto (here k=" in r.stderr, r.output
    assert len(r.stderr.splitlines()) == 1
    r = run_cli(tmp_path, "check", *base, "-S", "prepare.train_per_class=auto")
    assert r.exit_code == 0, r.output


def test_prepare_says_and_records_k_and_later_stages_read_it(tmp_path, repo_root, run_cli):
    from synthaug.pipeline.data.prepare import prepare_record, read_pool

    rgb_folder(tmp_path / "imgs", SMALL)
    base = project(tmp_path, repo_root, "imgs")
    r = run_cli(tmp_path, "prepare", *base)
    assert r.exit_code == 0, r.output
    assert "prepare.train_per_class: auto chose k=4 per class" in r.stdout
    meta = json.loads((tmp_path / "data/prepared/train/meta.json").read_text())
    assert meta["prepare"]["train_per_class"] == "auto"  # the setting
    assert meta["train_per_class"]["setting"] == "auto" and meta["train_per_class"]["k"] == 4
    assert "half the smallest class" in meta["train_per_class"]["why"]
    assert prepare_record(tmp_path / "data/prepared")["train_per_class"] == 4  # resolved
    labels = np.load(tmp_path / "data/prepared/train/labels.npy")
    assert np.bincount(labels).tolist() == [4, 4, 4]
    assert len(read_pool(tmp_path / "data/prepared")) >= 24
    # check now reads the exact counts prepare made with these params, and agrees
    r = run_cli(tmp_path, "check", *base)
    assert r.exit_code == 0 and "auto chose k=4" in r.stdout, r.output
    assert "images (data/prepared/pool)" in r.stdout


def test_the_default_study_keeps_k_50_and_its_arrays(tmp_path):
    """mnist5k: auto resolves to 50 and draws exactly what `train_per_class: 50` drew."""
    from synthaug.pipeline.data.config import PrepareConfig
    from synthaug.pipeline.data.prepare import prepare_splits
    from synthaug.pipeline.data.sources import load_source

    auto = PrepareConfig()
    src = load_source(auto, tmp_path)
    a, b = prepare_splits(src, auto), prepare_splits(src, PrepareConfig(train_per_class=50))
    assert a.train_per_class == 50 and "at most 50" in a.train_per_class_why
    for name in ("train", "val", "test"):
        assert np.array_equal(a[name].rows, b[name].rows)
    assert np.array_equal(a.pool.rows, b.pool.rows)


@pytest.mark.slow
def test_dvc_exp_run_on_a_small_rgb_folder_with_only_the_source(tmp_path, repo_root):
    """The bar of issue 32 item 1: `dvc exp run` with only prepare.source/channels/size (and
    the quick profile's -S set, to finish fast) exits 0 on a small RGB folder."""
    from dvc_project import commit_repo, copy_project, sh
    from test_quick_profile import overrides, quick_command

    copy_project(repo_root, tmp_path)
    # 5 classes of about 24: the val split (12) is larger than quality.k (5), which the quality
    # stage's precision/recall need (a 3 x 12 folder's 4 val images stop it there)
    rgb_folder(tmp_path / "images", {"a": 24, "b": 23, "c": 25, "d": 24, "e": 22})
    env = commit_repo(tmp_path)
    sets = ["prepare.source=folder:images", "prepare.channels=3", "prepare.size=32",
            *overrides(quick_command(repo_root))]
    out = sh(tmp_path, "dvc", "exp", "run", *(a for s in sets for a in ("-S", s)), env=env)
    assert "Traceback" not in out
    assert "prepare.train_per_class: auto chose k=" in out and "plan: estimate on " in out
    report = (tmp_path / "reports/report.md").read_text()
    assert "auto chose k=" in report  # the data section names the k and why
    assert yaml.safe_load((tmp_path / "params.yaml").read_text())["prepare"][
        "train_per_class"] == "auto"
