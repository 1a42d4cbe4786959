"""`pipeline.classifiers.config.recipe`: the one TrainConfig of "model X at seed S", for a study
cell, a sweep point, the judge and CAS, is exactly what the three older ways built (frozen
below), for every cell of the default params and of the documented GPU study."""
from __future__ import annotations

import pytest

from synthaug.pipeline.classifiers.config import TrainConfig, recipe
from synthaug.pipeline.quality import assess as quality
from synthaug.stages.evaluate import study_cell
from synthaug.stages.params import Params, load_params, validate_params


# ---------------------------------------------------------------------- the old ways, frozen
def old_for_model(train: TrainConfig, name: str, seed: int | None = None) -> TrainConfig:
    """TrainConfig.for_model, as it was (the sweep called it, and the study cell below)."""
    data = train.model_dump()
    data.update(train.per_model.get(name, {}), model=name, per_model={})
    if seed is not None:
        data["seed"] = seed
    return TrainConfig.model_validate(data)


def old_study_cell(p: Params, model: str | None, seed: int | None) -> TrainConfig:
    """stages/common.study_cell, as it was: dump all of Params, set train.model, re-validate."""
    p = p.model_copy(deep=True)
    if model is not None:
        data = p.model_dump(mode="json")
        data["train"]["model"] = model
        p.train = validate_params(data, "--model").train
    if seed is not None:
        p.train.seed = seed
    return old_for_model(p.train, p.train.model)


def old_quality_recipe(train_cfg: TrainConfig, q) -> TrainConfig:
    """pipeline/quality/assess.judge_recipe, as it was (the judge's and CAS's recipe)."""
    data = train_cfg.model_dump()
    data.update(model=q.model, epochs=q.epochs, seed=q.seed, online_augment=None)
    return TrainConfig.model_validate(data)


def readme_gpu_params(repo_root) -> Params:
    import shlex

    docs = [repo_root / "README.md", *sorted((repo_root / "docs").rglob("*.md"))]
    text = next(t for d in docs if d.is_file() and "<!-- gpu-study -->" in (t := d.read_text()))
    block = text.split("<!-- gpu-study -->", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    args = shlex.split(block.replace("\\\n", " "))
    return load_params(repo_root / "params.yaml",
                       [args[i + 1] for i, a in enumerate(args) if a == "-S"])


def dumps(cfg: TrainConfig) -> tuple[dict, dict]:
    return cfg.model_dump(), cfg.model_dump(mode="json")  # config.json and dvclive record json


@pytest.fixture(params=["params.yaml", "readme-gpu", "online"])
def params(request, repo_root) -> Params:
    if request.param == "readme-gpu":
        return readme_gpu_params(repo_root)
    overrides = [] if request.param == "params.yaml" else [
        "train.online_augment=[{transform: Affine, rotate: [-5, 5]}]", "train.weights=w.pth",
        "train.per_model={cnn: {lr: 0.01, batch_augment: light}}"]
    return load_params(repo_root / "params.yaml", overrides)


def test_every_study_cell_gets_the_recipe_it_got_before(params):
    p = params
    cells = 0
    for variant in p.study.variants:
        for model in p.study.models:
            for seed in p.study.seeds:  # as dvc runs it (--model M) and as a user may (no --model)
                for given in ([model] if model != p.train.model else [model, None]):
                    name, cfg, run = study_cell(p, variant, given, seed)
                    assert dumps(cfg) == dumps(old_study_cell(p, given, seed)), (variant, model)
                    assert (name, str(run)) == (variant, f"{variant}/{model}/seed{seed}")
                    cells += 1
    assert cells >= len(p.study.variants) * len(p.study.models) * len(p.study.seeds)
    # the defaults: train.model and train.seed
    _, cfg, _ = study_cell(p, None, None, None)
    assert dumps(cfg) == dumps(old_study_cell(p, None, None))


def test_every_sweep_point_gets_the_recipe_it_got_before(params):
    for model in params.sweep.models:
        for seed in params.sweep.seeds:
            new = recipe(params.train, model, seed)
            assert dumps(new) == dumps(old_for_model(params.train, model, seed))


def test_the_judge_and_cas_get_the_recipe_they_got_before(params):
    for base in (TrainConfig(), params.train, TrainConfig(batch_size=32, patience=0, amp=False,
                                                          online_augment="medium")):
        for q in (params.quality, params.quality.model_copy(update={"model": "efficientnet_lite0",
                                                                    "epochs": 2, "seed": 7})):
            assert dumps(quality.judge_recipe(base, q)) == dumps(old_quality_recipe(base, q))


def test_known_fields_of_the_default_recipes(repo_root):
    p = load_params(repo_root / "params.yaml")
    lite0 = recipe(p.train, "efficientnet_lite0", 2)
    assert (lite0.model, lite0.seed, lite0.epochs, lite0.batch_size, lite0.lr, lite0.input_size,
            lite0.backbone_lr_mult, lite0.freeze_bn, lite0.frozen_groups, lite0.cpu_bf16,
            lite0.ema_decay, lite0.per_model) == ("efficientnet_lite0", 2, 5, 32, 0.002, 40, 0.5,
                                                  True, 3, False, 0.9, {})
    cnn = recipe(p.train, "cnn", 1)
    assert (cnn.epochs, cnn.batch_size, cnn.lr, cnn.per_model) == (6, 64, 0.003, {})
    judge = quality.judge_recipe(TrainConfig(), p.quality)
    assert (judge.model, judge.epochs, judge.seed, judge.online_augment) == ("cnn", 4, 0, None)
    assert judge.per_model == TrainConfig().per_model  # recorded as it was in the judge's config
    assert recipe(p.train, "cnn", 0, epochs=9).epochs == 9
