"""Typed params: defaults, -S overrides, and one-line errors that name the key."""
import pytest
import yaml

from synthaug.pipeline.classifiers.config import recipe
from synthaug.stages.params import Params, apply_overrides, load_params, parse_override, validate_params
from synthaug.pipeline.core.errors import SynthaugError


def test_repo_params_yaml_is_valid_and_matches_defaults(repo_root):
    p = load_params(repo_root / "params.yaml")
    defaults = Params()
    # params.yaml spells the defaults out; they must not drift from the typed config
    for section in set(Params.model_fields) - {"models"}:
        assert getattr(p, section) == getattr(defaults, section), section
    assert "keras_seed" in p.models


@pytest.mark.parametrize("text,keys,value", [
    ("train.epochs=3", ["train", "epochs"], 3),
    ("train.lr=1e-4", ["train", "lr"], 1e-4),
    ("prepare.train_per_class=null", ["prepare", "train_per_class"], None),
    ("prepare.source=folder:/x/y", ["prepare", "source"], "folder:/x/y"),
    ("train.amp=false", ["train", "amp"], False),
])
def test_parse_override(text, keys, value):
    assert parse_override(text) == (keys, value)


@pytest.mark.parametrize("bad", ["train.epochs", "=3", "train..epochs=3"])
def test_bad_override_syntax(bad):
    with pytest.raises(SynthaugError, match="section.key=value"):
        parse_override(bad)


def test_overrides_apply_nested(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump({"train": {"epochs": 5}}))
    p = load_params(f, ["train.epochs=2", "prepare.size=32", "train.model=lenet5"])
    assert (p.train.epochs, p.prepare.size, p.train.model) == (2, 32, "lenet5")


@pytest.mark.parametrize("override,fragment", [
    ("train.epochs=-1", "train.epochs: Input should be greater than 0 (got -1)"),
    ("train.epochs=abc", "train.epochs: Input should be a valid integer"),
    ("train.epoch=3", "train.epoch: unknown key"),
    ("trian.epochs=3", "trian: unknown key"),
    ("train.model=vgg99", "train.model: unknown model 'vgg99'; allowed: cnn, lenet5, resnet_small"),
    ("prepare.source=imagenet", "prepare.source: unknown source 'imagenet'; allowed: mnist5k"),
    ("prepare.resize=zoom", "prepare.resize: allowed: 'resize', 'pad' or 'center_crop'"),
    ("prepare.channels=2", "prepare.channels: allowed: 1 or 3"),
    ("train.device=tpu", "train.device: unknown device 'tpu'"),
    ("models.m=[{type: conv, filters: 0}]", "models.m.0.filters: Input should be greater than 0"),
    ("models.cnn=[{type: flatten}]", "name taken by a built-in model"),
])
def test_bad_values_name_the_key(repo_root, override, fragment):
    with pytest.raises(SynthaugError) as e:
        load_params(repo_root / "params.yaml", [override])
    msg = str(e.value)
    assert fragment in msg
    assert "\n" not in msg and msg.startswith(str(repo_root / "params.yaml"))


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(SynthaugError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("train: [1, 2\n")
    with pytest.raises(SynthaugError, match="not valid YAML"):
        load_params(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(SynthaugError, match="mapping"):
        load_params(tmp_path / "list.yaml")


def test_override_into_a_scalar_is_an_error():
    with pytest.raises(SynthaugError, match="train.epochs is not a section"):
        apply_overrides({"train": {"epochs": 3}}, ["train.epochs.x=1"])


def test_dumped_params_validate_again():
    """Stages re-validate dumped params (e.g. --model): defaults repeated in a dump are fine."""
    p = Params()
    assert validate_params(p.model_dump(mode="json")) == p


def test_readme_gpu_study_overrides_are_valid(repo_root):
    """The docs' GPU experiment (docs/scaling.md): every -S override applies to params.yaml
    and validates."""
    import shlex

    text = (repo_root / "docs" / "scaling.md").read_text()
    block = text.split("<!-- gpu-study -->", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    args = shlex.split(block.replace("\\\n", " "))
    overrides = [args[i + 1] for i, a in enumerate(args) if a == "-S"]
    assert len(overrides) > 10 and args[:3] == ["dvc", "exp", "run"]
    p = load_params(repo_root / "params.yaml", overrides)
    assert p.prepare.train_per_class == 200 and p.study.seeds == [0, 1, 2, 3, 4]
    assert recipe(p.train, "efficientnet_lite0", 0).input_size == 96
    assert p.train_generator.diffusion.space == "pixel"
    assert max(p.sweep.real_per_class) <= 350  # MNIST-5k's train pool: 350 images per class
