"""Issue 17 item 9, fail early: `synthaug check` names every problem the params and the data
show before any work (all at once, one `error:` line each with its fix, exit 2), takes the
sensible default where there is one (a sweep k above the smallest class is skipped with a
note), and the sweep itself skips such a k instead of failing after the study."""
from __future__ import annotations

import json

import numpy as np
import yaml

from synthaug.pipeline.data.config import ComposeConfig, PrepareConfig
from synthaug.pipeline.data.counts import PoolCounts, pool_counts
from synthaug.pipeline.data.storage import PackedDataset, write_dataset
from synthaug.pipeline.experiments.checks import check, sweep_skip
from synthaug.pipeline.experiments.config import StudyConfig, SweepConfig


def params_file(root, repo_root, **sections) -> None:
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    for section, values in sections.items():
        params[section].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params))


def errors(r) -> list[str]:
    assert "Traceback" not in r.output
    lines = r.stderr.splitlines()
    assert lines and all(line.startswith("error: ") for line in lines), r.stderr
    return lines


def test_every_problem_at_once_before_any_work(tmp_path, image_folder, run_cli, repo_root):
    """The user's case: a folder with few images per class and a study sized for more."""
    image_folder(tmp_path / "imgs", classes=("astronaut", "coffee"), per_class=12)
    params_file(tmp_path, repo_root, prepare={"source": "folder:imgs", "train_per_class": 20},
                sample={"per_class": 4}, sweep={"real_per_class": [5, 100], "when_per_class": [5]})
    r = run_cli(tmp_path, "check")
    assert r.exit_code == 2, r.output
    lines = errors(r)
    text = "\n".join(lines)
    # the train pool: 12 files per class split 70/10/20 -> 8 per class (an estimate: no
    # image is decoded before prepare)
    # advice that works when followed: 8 would leave more-real nothing to draw (issue 32)
    assert ("error: prepare.train_per_class: 20 requested but class 'astronaut' has only about "
            "8 training image(s); set it to 4 or less (the held-back more-real part needs the "
            "rest), or auto") in text
    for variant, part in [("real+gan", "gan-prior"), ("real+vae", "vae-prior"),
                          ("real+diffusion", "diffusion-ddim"), ("synthetic-only", "diffusion-ddim")]:
        assert (f"error: compose.variants.{variant}: part {part!r} needs 8 images of class "
                f"'astronaut' but the set holds 4 (sample.per_class); draw at least 8") in text
    assert "error: sweep.ratios: 2 (real+diffusion): part 'diffusion-ddim' needs 16" in text
    assert "error: sweep.when_variants: real+vae-jitter at k=5: part 'vae-jitter' needs 5" in text
    # more-real is named once, by the train_per_class line (its fix covers it)
    assert "compose.variants.more-real" not in text
    assert len(lines) == len(set(lines)) >= 7
    assert "note: sweep.real_per_class: 100 is skipped" in r.stdout  # a default, not an error
    assert not (tmp_path / "metrics/check.json").exists() and not (tmp_path / "data").exists()
    # followed (k as advised, sample.per_class as the largest "draw at least"): it passes
    r = run_cli(tmp_path, "check", "-S", "prepare.train_per_class=4", "-S", "sample.per_class=16")
    assert r.exit_code == 0, r.output


def test_a_sweep_k_above_the_smallest_class_is_a_note_and_the_check_passes(
        tmp_path, image_folder, run_cli, repo_root):
    image_folder(tmp_path / "imgs", classes=("a", "b"), per_class=30)
    params_file(tmp_path, repo_root, prepare={"source": "folder:imgs", "train_per_class": 5},
                sweep={"real_per_class": [5, 10, 100], "when_per_class": [5, 10]})
    r = run_cli(tmp_path, "check")
    assert r.exit_code == 0, r.output
    assert "note: train pool: 2 classes, the smallest 'a' with about 21 images" in r.stdout
    assert "note: sweep.real_per_class: 100 is skipped (k=100 images per class, but class 'a' " \
           "of the train pool has only 21)" in r.stdout
    # more-real at k=10 draws 10 more of the 11 beyond the k: it fits; at 5, 5 of 16
    assert "when_per_class" not in r.stdout
    assert json.loads((tmp_path / "metrics/check.json").read_text()) == {"ok": True}
    r = run_cli(tmp_path, "check", "-S", "prepare.source=folder:nowhere")
    assert errors(r) == ["error: prepare.source: folder nowhere not found; point it at a folder "
                         "with one sub-folder of images per class"]


def test_the_counts_come_from_prepared_data_made_with_these_params(tmp_path):
    cfg = PrepareConfig(source="torchvision:MNIST", train_per_class=3)
    assert pool_counts(cfg, tmp_path) == (None, [])  # unknown before prepare: no error
    found = check(cfg, ComposeConfig(), StudyConfig(), SweepConfig(), {}, None)
    assert not found.problems and "not known before `synthaug prepare`" in found.notes[0]
    pool = tmp_path / "pool"
    pool.mkdir()
    x = np.zeros((7, 8, 8, 1), np.uint8)
    write_dataset(pool, x, np.array([0, 0, 0, 0, 1, 1, 1]), ["x", "y"],
                  meta={"prepare": cfg.model_dump(mode="json")})
    counts, problems = pool_counts(cfg, tmp_path)
    assert counts.exact and counts.pool.tolist() == [4, 3] and counts.smallest() == ("y", 3)
    other = cfg.model_copy(update={"seed": 1})  # prepare will make other splits: not these
    assert pool_counts(other, tmp_path) == (None, [])


def test_sweep_skip_and_the_sweep_stage_skips(tmp_path, image_folder, run_cli, repo_root):
    compose = ComposeConfig()
    pool = np.array([21, 30])
    assert sweep_skip("real_per_class", 21, "", pool, ["a", "b"], compose) is None
    assert "class 'a' of the train pool has only 21" in sweep_skip(
        "real_per_class", 22, "", pool, ["a", "b"], compose)
    assert "more-real at k=11 needs 11 held-back images of class 'a' (more-real) but the " \
           "train pool has 10 beyond the k" in sweep_skip("when", 11, "more-real", pool,
                                                          ["a", "b"], compose)
    assert sweep_skip("when", 11, "real+classic", pool, ["a", "b"], compose) is None
    counts = PoolCounts(["a", "b"], pool, "test", True)
    notes = check(PrepareConfig(train_per_class=5), compose, StudyConfig(variants=["real"]),
                  SweepConfig(real_per_class=[5, 11, 40], when_per_class=[5, 11]),
                  {"diffusion-ddim": 100, "vae-jitter": 100}, counts).notes
    assert any("sweep.when_per_class: more-real at 11 is skipped" in n for n in notes)
    assert any("sweep.real_per_class: 40 is skipped" in n for n in notes)

    # the sweep stage: k=40 is above the smallest class; it runs the rest and records the skip
    from synthaug.pipeline.experiments.sweep import Point, feasible

    ds = PackedDataset(np.zeros((51, 8, 8, 1), np.uint8), np.repeat([0, 1], [21, 30]), ["a", "b"])
    todo = [Point("real_per_class", 5, 0), Point("real_per_class", 40, 0),
            Point("real_per_class", 40, 1), Point("ratio", 2.0, 0)]
    kept, skipped = feasible(todo, ds, compose)
    assert kept == [todo[0], todo[3]] and len(skipped) == 1
    assert skipped[0] | {"reason": ""} == {"sweep": "real_per_class", "value": 40,
                                           "variant": "real", "reason": ""}

    image_folder(tmp_path / "imgs", classes=("a", "b"), per_class=14, size=(12, 12))
    params_file(tmp_path, repo_root,
                prepare={"source": "folder:imgs", "size": 12, "train_per_class": 3},
                train={"epochs": 1, "batch_size": 8, "epoch_size": 0, "patience": 0},
                sweep={"models": ["lenet5"], "real_per_class": [3, 40], "ratios": [],
                       "seeds": [0], "low_data_seeds": [0], "when_per_class": [],
                       "when_models": []})
    assert run_cli(tmp_path, "prepare").exit_code == 0
    r = run_cli(tmp_path, "check")
    assert r.exit_code == 0 and "images (data/prepared/pool)" in r.stdout, r.output
    r = run_cli(tmp_path, "sweep", "--no-progress")
    assert r.exit_code == 0, r.output
    assert "note: sweep skips real_per_class real k=40: k=40 images per class" in r.stdout
    out = json.loads((tmp_path / "metrics/sweep/lenet5/results.json").read_text())
    assert [(row["sweep"], row["value"]) for row in out["rows"]] == [("real_per_class", 3)]
    assert [(s["sweep"], s["value"]) for s in out["skipped"]] == [("real_per_class", 40)]


def test_dvc_runs_the_check_first(repo_root):
    spec = yaml.safe_load((repo_root / "dvc.yaml").read_text())
    first = next(iter(spec["stages"]))
    record = spec["vars"][0]["check_record"]
    assert first == "check" and spec["stages"]["prepare"]["deps"][0] == "${check_record}"
    assert record == "metrics/check.json"
    assert "synthaug check --out ${check_record}" == spec["stages"]["check"]["cmd"]


def test_check_counts_a_when_generator_per_tag_and_the_pseudo_labelling_fits():
    """A when k trains a family once per way its variants need it (on the split, with the
    pseudo-labelled pool, pretrained on the pool first: generators.lowdata caches per k and
    tag), pretraining adds its steps, and variants that pseudo-label the pool add one fit."""
    from synthaug.generators.config import SampleConfig, TrainGeneratorConfig
    from synthaug.generators.pretrain_config import when_family
    from synthaug.pipeline.experiments.plan import make_plan

    # the study's own vae pretrains on the pool: a when point's split training does not
    tg = TrainGeneratorConfig.model_validate({"vae": {"pretrain": {"source": "pool", "steps": 300}}})
    families = {f: tg.family(f).total_steps for f in ("gan", "vae", "diffusion")}
    when_steps = {tag: {f: when_family(tg.family(f), tag).total_steps for f in families}
                  for tag in ("", "unlabelled", "pretrain")}
    vae = tg.vae.steps
    assert families["vae"] == vae + 300 and when_steps[""]["vae"] == vae
    assert when_steps["pretrain"]["vae"] == vae + 300
    set_family = {name: s.generator for name, s in SampleConfig().sets.items()}

    def plan(variants):
        sweep = SweepConfig(models=["cnn"], real_per_class=[], ratios=[], when_per_class=[5, 10],
                            when_variants=variants, when_models=["cnn"])
        return make_plan(StudyConfig(models=["cnn"]), sweep, ComposeConfig(), families,
                         set_family, None, None, None, when_steps)

    one = plan(["real", "real+vae"])
    assert one.when_generators == {"vae": 2 * vae} and one.labellers == {}
    every = plan(["real", "real+vae", "real+vae-unlabelled", "real+vae-pretrained"])
    assert every.when_generators == {"vae": 2 * (vae + vae + vae + 300)}
    assert every.labellers == {"cnn": 2}  # real+vae-unlabelled: one labeller per k
    assert "and 2 fits that pseudo-label the pool (cnn 2)" in "\n".join(every.lines())
