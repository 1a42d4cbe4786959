"""Classic augmentation: spec validation, presets, byte-identical expansion for any number of
workers, provenance, and the augment / compose stages."""
import json
import re

import numpy as np
import pytest

from synthaug.pipeline.augment.classic import build_augmenter, preset_steps
from synthaug.pipeline.augment.config import AUGMENT_PRESETS
from synthaug.stages.params import load_params
from synthaug.pipeline.core.errors import SynthaugError
from synthaug.pipeline.augment.expand import CHUNK, expand

GRAY = (1, 28, 28)
RGB = (3, 32, 32)


def digits(n=12, shape=GRAY, seed=0):
    c, h, w = shape
    rng = np.random.default_rng(seed)
    x = np.zeros((n, h, w, c), np.uint8)
    x[:, h // 4:3 * h // 4, w // 3:2 * w // 3] = rng.integers(120, 256, (n, 1, 1, c), dtype=np.uint8)
    return x


@pytest.mark.parametrize("spec,fragment", [
    ([{"transform": "Afine"}], "augment.pipeline[0]: unknown transform 'Afine'; did you mean Affine"),
    ([{"transform": "HorizontalFlip"}, {"transform": "GausNoise"}],
     "augment.pipeline[1]: unknown transform 'GausNoise'; did you mean GaussNoise"),
    ([{"transform": "Affine", "rotat": 10}],
     "augment.pipeline[0] (Affine): unknown argument 'rotat'; did you mean rotate"),
    ([{"transform": "Affine", "rotate": "lots"}], "augment.pipeline[0] (Affine): rotate"),
    ([{"transform": "GaussNoise", "std_range": [0.5, 0.1]}], "augment.pipeline[0] (GaussNoise)"),
    ([{"transform": "RandomCrop", "height": 20, "width": 20}],
     "augment.pipeline[0] (RandomCrop): turns 28x28x1 uint8 images into 20x20x1"),
    ([{"transform": "OneOf", "transforms": [{"transform": "Blur"}, {"transform": "Bluur"}]}],
     "augment.pipeline[0].transforms[1]: unknown transform 'Bluur'"),
    ([{"transform": "OneOf", "transforms": [{"transform": "RandAugment"}]}],
     "is a torchvision policy"),
    ([{"transform": "HueSaturationValue"}], "fails on 1-channel 28x28 images"),
])
def test_bad_specs_fail_with_position_and_reason(spec, fragment):
    with pytest.raises(SynthaugError) as e:
        build_augmenter(spec, GRAY)
    assert fragment in str(e.value)
    assert "\n" not in str(e.value)


def test_config_rejects_unknown_preset_and_shapeless_steps(repo_root):
    with pytest.raises(SynthaugError, match="augment.pipeline: unknown preset 'mediun'"):
        load_params(repo_root / "params.yaml", ["augment.pipeline=mediun"])
    with pytest.raises(SynthaugError, match="needs `transform: <Name>`"):
        load_params(repo_root / "params.yaml", ["augment.pipeline=[{name: Affine}]"])
    with pytest.raises(SynthaugError, match=re.escape("study.variants: 'real+nope' is not defined")):
        load_params(repo_root / "params.yaml", ["study.variants=[real, real+nope]"])


@pytest.mark.parametrize("preset", AUGMENT_PRESETS)
@pytest.mark.parametrize("shape", [GRAY, RGB], ids=["gray28", "rgb32"])
def test_every_preset_keeps_shape_and_changes_images(preset, shape):
    aug = build_augmenter(preset, shape, seed=1)
    x = digits(16, shape)
    out = np.stack([aug(im) for im in x])
    assert out.shape == x.shape and out.dtype == np.uint8
    assert (out != x).any(axis=(1, 2, 3)).mean() >= 0.5  # most images changed
    resolved = aug.describe()["resolved"]
    assert resolved and all("__class_fullname__" in step for step in resolved)


def test_digit_presets_never_flip_but_natural_ones_do():
    for preset in ("light", "medium", "heavy"):
        assert "HorizontalFlip" not in json.dumps(preset_steps(preset, 1))
        assert "HorizontalFlip" in json.dumps(preset_steps(preset, 3))


def test_expansion_is_byte_identical_for_any_number_of_workers():
    x = digits(CHUNK * 3 + 5)  # several chunks, the last one partial
    y = np.arange(len(x)) % 10
    one = expand(x, y, "heavy", copies=3, seed=7, workers=1, progress=False)
    two = expand(x, y, "heavy", copies=3, seed=7, workers=2, progress=False)
    assert one.images.tobytes() == two.images.tobytes()
    assert (one.seeds == two.seeds).all()
    assert one.parents.tolist()[:6] == [0, 0, 0, 1, 1, 1] and one.copies.tolist()[:4] == [0, 1, 2, 0]
    assert (one.labels == np.repeat(y, 3)).all()
    other = expand(x, y, "heavy", copies=3, seed=8, workers=1, progress=False)
    assert other.images.tobytes() != one.images.tobytes()
    # copies of one image differ from each other
    assert (one.images[0] != one.images[1]).any()


def test_torchvision_policies_do_not_touch_the_global_torch_rng():
    import torch

    aug = build_augmenter("randaugment", GRAY, seed=3)
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    first = [aug(im) for im in digits(4)]
    assert torch.equal(torch.rand(3), expected)
    aug.reseed(3)
    assert all((a == b).all() for a, b in zip(first, [aug(im) for im in digits(4)]))


@pytest.fixture
def prepared(tmp_path, run_cli, repo_root):
    (tmp_path / "params.yaml").write_text((repo_root / "params.yaml").read_text())
    r = run_cli(tmp_path, "prepare", "-S", "prepare.source=digits", "-S", "prepare.train_per_class=6")
    assert r.exit_code == 0, r.output
    return tmp_path


FORK_AFTER_THREADS = """
import numpy as np, torch
torch.set_num_threads(2)
a = torch.randn(512, 512)
for _ in range(20):
    a @ a  # the parent's OpenMP thread pool is in use, as after the classic choice's fits
from synthaug.pipeline.augment.expand import expand
images = np.random.default_rng(0).integers(0, 255, (70, 32, 32, 1), dtype=np.uint8)
e = expand(images, np.zeros(70, dtype=np.int64), "randaugment", 4, 0, workers=2, progress=False)
print("copies", len(e.images))
"""


def test_torchvision_policies_in_forked_workers_after_threaded_torch_work_finish():
    """A forked worker that runs torch ops on the OpenMP pool its parent had in use hangs
    (GNU OpenMP does not survive fork): RandAugment's workers run torch on one thread."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", FORK_AFTER_THREADS], capture_output=True,
                          text=True, timeout=300)  # without one thread each: hangs forever
    assert done.returncode == 0, done.stderr[-2000:]
    assert "copies 280" in done.stdout


def test_augment_stage_writes_provenance_and_preview(prepared, run_cli):
    r = run_cli(prepared, "augment", "-S", "prepare.source=digits", "-S", "augment.copies_per_image=2",
                "-S", "augment.workers=2", "-S", "augment.pipeline=medium", "--no-progress")
    assert r.exit_code == 0, r.output
    out = prepared / "data/augmented"
    meta = json.loads((out / "meta.json").read_text())
    assert meta["num_images"] == 60 * 2 and meta["augment"]["spec"] == "medium"
    assert meta["augment"]["resolved"][0]["__class_fullname__"] == "Compose"
    assert meta["parent_content_hash"] == json.loads(
        (prepared / "data/prepared/train/meta.json").read_text())["content_hash"]
    import csv

    with open(out / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["parent"] for r in rows[:4]] == ["0", "0", "1", "1"]
    assert {r["origin"] for r in rows} == {"augment"} and rows[0]["parent_origin"].startswith("digits:")
    assert rows[0]["seed"] and rows[0]["augment"] == "medium"
    assert (out / "preview.png").stat().st_size > 1000


def test_augment_bad_spec_writes_nothing(prepared, run_cli):
    r = run_cli(prepared, "augment", "-S", "augment.pipeline=[{transform: ElasticTransfrom}]")
    assert r.exit_code == 2
    assert "unknown transform 'ElasticTransfrom'; did you mean ElasticTransform" in r.output
    assert not (prepared / "data/augmented").exists()


def test_compose_builds_variants_with_part_provenance(prepared, run_cli):
    assert run_cli(prepared, "augment", "-S", "augment.copies_per_image=2", "-S",
                   "augment.pipeline=medium", "--no-progress").exit_code == 0
    r = run_cli(prepared, "compose", "-S", "study.variants=[real, real+classic, real+online]",
                "-S", "augment.pipeline=medium")  # real+online's auto: the augment stage's
    assert r.exit_code == 0, r.output
    assert "real+classic" in r.output and "120" in r.output  # the make-up table
    from synthaug.pipeline.data.storage import read_dataset

    real = read_dataset(prepared / "data/variants/real", manifest=True)
    both = read_dataset(prepared / "data/variants/real+classic", manifest=True)
    online = read_dataset(prepared / "data/variants/real+online")
    assert len(real) == 60 and len(both) == 180 and len(online) == 60
    assert both.meta["made_of"]["classic"] == [12] * 10
    assert [r["part"] for r in both.manifest].count("classic") == 120
    assert both.manifest[60]["parent"] == "0" and both.manifest[60]["part_index"] == "0"
    assert online.meta["online_augment"] == "medium" and real.meta["online_augment"] is None
