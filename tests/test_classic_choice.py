"""augment.pipeline: auto, the classic augmentation chosen on the val split
(pipeline/experiments/classic_choice.py, stages/augment.py)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from synthaug.pipeline.augment.config import AugmentConfig
from synthaug.pipeline.classifiers.config import TrainConfig
from synthaug.pipeline.core.errors import SynthaugError
from synthaug.pipeline.data.storage import PackedDataset
from synthaug.pipeline.experiments.classic_choice import (choose, chosen_pipeline, classic_copies,
                                                          online_spec)
from synthaug.pipeline.report.classic import lines as choice_lines
from synthaug.stages.params import load_params

# 3-channel presets and policies that change colour (ColorJitter, Solarize, Color, ...)
COLOUR_CHANGING = {"medium", "heavy", "randaugment", "trivialaugment", "autoaugment", "augmix"}
QUICK = TrainConfig(epochs=3, epoch_size=512, batch_size=64, cpu_bf16=False)


def hue_set(per_class: int, seed: int, hues=(0.0, 0.03, 0.06, 0.09), size: int = 12):
    """RGB images whose classes differ only by hue (a few degrees apart); saturation and value
    are random per pixel, so texture and brightness say nothing about the class."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for k, h in enumerate(hues):
        for _ in range(per_class):
            hsv = np.stack([np.full((size, size), (h + rng.uniform(-0.01, 0.01)) % 1.0),
                            rng.uniform(0.5, 1.0, (size, size)),
                            rng.uniform(0.4, 1.0, (size, size))], -1)
            rgb = Image.fromarray((hsv * 255).astype(np.uint8), "HSV").convert("RGB")
            images.append(np.asarray(rgb))
            labels.append(k)
    return PackedDataset(np.stack(images), np.asarray(labels, dtype=np.int64),
                         [f"hue{k}" for k in range(len(hues))], {})


def test_a_hue_task_never_chooses_a_colour_changing_preset():
    """Classes that differ only by hue: colour jitter moves images across classes, and the
    choice on val avoids it. The colour-changing candidates are listed first, so a tie would
    pick one: light has to win on its val score."""
    train, val = hue_set(10, 0), hue_set(30, 1)
    cfg = AugmentConfig(candidates=["heavy", "medium", "trivialaugment", "randaugment", "light"])
    choice = choose(train, val, cfg, QUICK, {}, torch.device("cpu"), workers=2)
    assert choice.chosen not in COLOUR_CHANGING
    scores = {c.name: c.mean for c in choice.candidates}
    assert scores[choice.chosen] > max(scores[n] for n in COLOUR_CHANGING & set(scores))
    rec = choice.record()
    assert rec["split"] == "val" and rec["val_images"] == len(val)
    assert [c["name"] for c in rec["candidates"]] == cfg.candidates


def test_the_choice_is_deterministic_and_keeps_every_seed():
    train, val = hue_set(6, 2, hues=(0.0, 0.5)), hue_set(10, 3, hues=(0.0, 0.5))
    cfg = AugmentConfig(candidates=["none", "medium"], choose_seeds=[0, 1])
    runs = [choose(train, val, cfg, QUICK, {}, torch.device("cpu"), workers=2).record()
            for _ in range(2)]
    assert runs[0] == runs[1]
    for c in runs[0]["candidates"]:
        assert len(c["val_accuracy"]) == 2 and c["mean"] == pytest.approx(np.mean(c["val_accuracy"]))
        # a val accuracy: a multiple of 1/len(val)
        assert all(abs(a * len(val) - round(a * len(val))) < 1e-6 for a in c["val_accuracy"])


def test_none_copies_are_the_originals_and_auto_is_never_expanded():
    images = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 1), dtype=np.uint8)
    labels = np.arange(5)
    ex = classic_copies(images, labels, "none", 3, 0)
    assert np.array_equal(ex.images, np.repeat(images, 3, axis=0))
    assert list(ex.parents) == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]
    assert list(ex.labels) == list(np.repeat(labels, 3))
    with pytest.raises(SynthaugError, match="auto must be resolved"):
        classic_copies(images, labels, "auto", 3, 0)


def test_candidates_are_checked_in_params(repo_root):
    params = repo_root / "params.yaml"
    with pytest.raises(SynthaugError, match="augment.candidates.*unknown candidate 'medim'"):
        load_params(params, ["augment.candidates=[none, medim]"])
    with pytest.raises(SynthaugError, match="names a candidate twice"):
        load_params(params, ["augment.candidates=[light, light]"])
    with pytest.raises(SynthaugError, match="augment.choose_model"):
        load_params(params, ["augment.choose_model=nonet"])
    assert load_params(params, []).augment.pipeline == "auto"


def test_online_auto_follows_the_choice_and_none_means_no_online_augmentation():
    assert online_spec("auto", "light") == "light" and online_spec("auto", "none") is None
    assert online_spec("heavy", "light") == "heavy" and online_spec(None, "light") is None
    with pytest.raises(SynthaugError, match="resolved first"):
        online_spec("auto", "auto")


def test_chosen_pipeline_reads_the_record_or_says_what_to_run(tmp_path):
    assert chosen_pipeline(AugmentConfig(pipeline="heavy"), tmp_path) == "heavy"
    with pytest.raises(SynthaugError, match="no choice is recorded.*synthaug augment"):
        chosen_pipeline(AugmentConfig(), tmp_path)
    (tmp_path / "meta.json").write_text(json.dumps({"augment": {"spec": "heavy", "choice": None}}))
    with pytest.raises(SynthaugError, match="made with heavy; rerun `synthaug augment`"):
        chosen_pipeline(AugmentConfig(), tmp_path)  # copies of an explicit preset, params auto
    (tmp_path / "meta.json").write_text(json.dumps({"augment": {"choice": {"chosen": "light"}}}))
    assert chosen_pipeline(AugmentConfig(), tmp_path) == "light"


def test_the_report_lines_name_the_choice_and_every_candidates_scores():
    rec = {"chosen": "light", "model": "cnn", "seeds": [0, 1], "split": "val", "val_images": 120,
           "candidates": [{"name": "none", "val_accuracy": [0.9, 0.925], "mean": 0.9125},
                          {"name": "light", "val_accuracy": [0.95, 0.975], "mean": 0.9625}]}
    text = "\n".join(choice_lines(rec))
    assert "**light**" in text and "val split (120 images: one is 0.8 points)" in text
    assert "| light (chosen) | 96.2 | 95.0, 97.5 |" in text
    assert "| none | 91.2 | 90.0, 92.5 |" in text


@pytest.fixture
def prepared(tmp_path, run_cli, repo_root):
    (tmp_path / "params.yaml").write_text((repo_root / "params.yaml").read_text())
    r = run_cli(tmp_path, "prepare", "-S", "prepare.source=digits", "-S",
                "prepare.train_per_class=6")
    assert r.exit_code == 0, r.output
    return tmp_path


QUICK_S = ["-S", "train.epochs=2", "-S", "train.epoch_size=256", "-S", "augment.copies_per_image=2"]


def test_the_stage_chooses_on_val_without_reading_test(prepared, run_cli):
    """The test split is gone: the stage still chooses (it never reads it) and records every
    candidate's val scores, in meta.json and choice.json, and copies with the chosen one."""
    shutil.rmtree(prepared / "data/prepared/test")
    r = run_cli(prepared, "augment", "--no-progress", *QUICK_S,
                "-S", "augment.candidates=[none, light, medium]", "-S", "augment.choose_seeds=[0, 1]")
    assert r.exit_code == 0, r.output
    out = prepared / "data/augmented"
    rec = json.loads((out / "choice.json").read_text())
    meta = json.loads((out / "meta.json").read_text())
    assert meta["augment"]["choice"] == rec and meta["augment"]["spec"] == rec["chosen"]
    assert [c["name"] for c in rec["candidates"]] == ["none", "light", "medium"]
    assert all(len(c["val_accuracy"]) == 2 for c in rec["candidates"])
    best = max(c["mean"] for c in rec["candidates"])
    assert rec["chosen"] == next(c["name"] for c in rec["candidates"] if c["mean"] == best)
    assert rec["val_images"] == len(np.load(prepared / "data/prepared/val/labels.npy"))
    assert f"chose {rec['chosen']}" in r.output
    # online_augment: auto (real+online) is the choice, read back, not chosen again
    r = run_cli(prepared, "compose", "-S", "study.variants=[real, real+online, real+classic]")
    assert r.exit_code == 0, r.output
    online = json.loads((prepared / "data/variants/real+online/meta.json").read_text())
    assert online["online_augment"] == (None if rec["chosen"] == "none" else rec["chosen"])


def test_an_explicit_preset_bypasses_the_choice(prepared, run_cli):
    """Named preset: no val split needed, no choice recorded."""
    shutil.rmtree(prepared / "data/prepared/val")
    r = run_cli(prepared, "augment", "--no-progress", *QUICK_S, "-S", "augment.pipeline=light")
    assert r.exit_code == 0, r.output
    out = prepared / "data/augmented"
    assert not (out / "choice.json").exists()
    meta = json.loads((out / "meta.json").read_text())
    assert meta["augment"]["spec"] == "light" and meta["augment"]["choice"] is None
    assert "choosing" not in r.output


def test_the_when_points_use_the_resolved_choice_for_copies_and_online(tmp_path):
    """The sweep resolves auto from the augment stage's record (`resolved`); a when point's
    classic copies and online_augment: auto then follow it (none: the originals, no online)."""
    from synthaug.pipeline.data.config import ComposeConfig, VariantConfig
    from synthaug.pipeline.experiments.classic_choice import resolved
    from synthaug.pipeline.experiments.sweep import Point, SweepData, split_of, when_set

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 12)
    pool = PackedDataset(rng.integers(0, 256, (36, 8, 8, 1), dtype=np.uint8), labels,
                         ["a", "b", "c"], {"prepare": {"seed": 3, "train_per_class": 4}})
    data = SweepData(real=split_of(pool, 4), val=split_of(pool, 1), test=split_of(pool, 1),
                     pool=pool, synthetic={})
    variants = {"real+classic": VariantConfig(parts=["real", "classic"]),
                "real+online": VariantConfig(online_augment="auto")}
    compose = ComposeConfig(variants=variants)
    auto = AugmentConfig(copies_per_image=2)
    assert resolved(auto, [VariantConfig()], tmp_path) is auto  # nothing needs the choice
    with pytest.raises(SynthaugError, match="run `synthaug augment`"):
        resolved(auto, list(variants.values()), tmp_path)
    for chosen, online in [("light", "light"), ("none", None)]:
        (tmp_path / "meta.json").write_text(json.dumps({"augment": {"choice": {"chosen": chosen}}}))
        aug = resolved(auto, list(variants.values()), tmp_path)
        assert aug.pipeline == chosen
        x, y, *_ = when_set(Point("when", 2, 0, "real+classic"), data, compose, aug, None)
        split = split_of(pool, 2).images
        assert len(y) == 6 + 12 and np.array_equal(x[:6], split)
        assert np.array_equal(x[6:], np.repeat(split, 2, axis=0)) == (chosen == "none")
        *_, got = when_set(Point("when", 2, 0, "real+online"), data, compose, aug, None)
        assert got == online


def test_check_plans_and_prices_the_candidates_fits():
    from synthaug.pipeline.data.config import ComposeConfig
    from synthaug.pipeline.experiments.config import StudyConfig, SweepConfig
    from synthaug.pipeline.experiments.plan import estimate, make_plan

    args = (StudyConfig(), SweepConfig(), ComposeConfig(), {}, {}, None, None)
    plan = make_plan(*args, AugmentConfig(candidates=["none", "light", "heavy"],
                                          choose_seeds=[0, 1]))
    assert plan.classic == {"cnn": 6}
    assert any("classic augmentation chosen on val: none, light, heavy (cnn 6 fits)" in line
               for line in plan.lines())
    recipes = {m: (6 * 1024, 28, False) for m in {"cnn", "efficientnet_lite0"}}
    machine = {"usable_cores": 2, "isa": {"avx512_bf16": True}}
    with_choice, lines = estimate(plan, recipes, 28, machine, {})
    assert "classic choice" in lines[0]
    bare = make_plan(*args, AugmentConfig(pipeline="medium"))
    assert bare.classic == {} and with_choice > estimate(bare, recipes, 28, machine, {})[0]
