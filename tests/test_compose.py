"""Variants with synthetic parts: ratios and counts per class, the seeded draw, the quality
gate's eligibility, provenance rows, and the errors users meet."""
from __future__ import annotations

import numpy as np
import pytest

from synthaug.pipeline.data.compose import compose_variant, makeup_table, synthetic_counts
from synthaug.pipeline.data.config import VariantConfig
from synthaug.stages.params import validate_params
from synthaug.pipeline.core.errors import SynthaugError
from synthaug.pipeline.data.storage import PackedDataset

NAMES = ["a", "b", "c"]


def packed(per_class: list[int], fill: int, kind: str) -> PackedDataset:
    labels = np.repeat(np.arange(3), per_class)
    images = np.full((len(labels), 4, 4, 1), fill, np.uint8)
    images[:, 0, 0, 0] = np.arange(len(labels)) % 256  # each image distinct
    rows = [{"origin": kind, "sampler": "prior"} for _ in labels]
    return PackedDataset(images, labels, NAMES, {"source": "toy"}, rows)


@pytest.fixture
def parts():
    return {"real": packed([10, 6, 4], 0, "real"), "gan-prior": packed([30, 30, 30], 100, "gan"),
            "vae-prior": packed([30, 30, 30], 200, "vae")}


def test_ratio_follows_the_real_counts_per_class_and_splits_over_parts(parts):
    cfg = VariantConfig(parts=["real", "gan-prior", "vae-prior"], ratio=1.5)
    counts = synthetic_counts(cfg, np.array([10, 6, 4]))
    assert [c.tolist() for c in counts] == [[8, 5, 3], [7, 4, 3]]  # 15, 9, 6 split, remainder first
    v = compose_variant("mix", cfg, parts, seed=0)
    assert v.meta["made_of"] == {"real": [10, 6, 4], "gan-prior": [8, 5, 3], "vae-prior": [7, 4, 3]}
    assert len(v.labels) == 20 + 30
    # provenance: part, index into that part, and the part's own columns; labels match
    for row, label, image in zip(v.provenance, v.labels, v.images):
        src = parts[row["part"]]
        assert src.labels[row["part_index"]] == label
        assert (src.images[row["part_index"]] == image).all()
    assert {r["origin"] for r in v.provenance if r["part"] == "vae-prior"} == {"vae"}


def test_per_class_and_synthetic_only(parts):
    v = compose_variant("syn", VariantConfig(parts=["gan-prior"], per_class=12), parts)
    assert v.meta["made_of"] == {"gan-prior": [12, 12, 12]}
    assert "real" not in {r["part"] for r in v.provenance}
    every = compose_variant("all", VariantConfig(parts=["real", "vae-prior"]), parts)
    assert every.meta["made_of"]["vae-prior"] == [30, 30, 30]  # no amount: the whole set


def test_the_draw_is_seeded_and_differs_between_variants(parts):
    cfg = VariantConfig(parts=["real", "gan-prior"], ratio=1.0)
    a, b = (compose_variant("x", cfg, parts, seed=0) for _ in range(2))
    assert [r["part_index"] for r in a.provenance] == [r["part_index"] for r in b.provenance]
    c = compose_variant("x", cfg, parts, seed=1)
    d = compose_variant("y", cfg, parts, seed=0)
    picked = [[r["part_index"] for r in v.provenance if r["part"] == "gan-prior"] for v in (a, c, d)]
    assert picked[0] != picked[1] and picked[0] != picked[2]


def test_gate_restricts_the_draw_and_too_few_images_is_a_clear_error(parts):
    ok = np.zeros(90, bool)
    ok[::3] = True  # 10 eligible images per class
    cfg = VariantConfig(parts=["real", "gan-prior"], per_class=10, gate=True)
    v = compose_variant("g", cfg, parts, eligible={"gan-prior": ok})
    picked = [r["part_index"] for r in v.provenance if r["part"] == "gan-prior"]
    assert sorted(picked) == np.flatnonzero(ok).tolist()
    with pytest.raises(SynthaugError, match=r"compose.variants.g: part 'gan-prior': needs 11 "
                                            r"images of class 'a' but the set has 10 after the quality gate"):
        compose_variant("g", cfg.model_copy(update={"per_class": 11}), parts,
                        eligible={"gan-prior": ok})
    with pytest.raises(SynthaugError, match="gate is on"):
        compose_variant("g", cfg, parts)


def test_makeup_table_shows_each_part_and_the_synthetic_share(parts):
    vs = {"real": compose_variant("real", VariantConfig(), parts),
          "real+gan": compose_variant("real+gan", VariantConfig(parts=["real", "gan-prior"],
                                                                ratio=1.0), parts)}
    table = makeup_table(vs)
    head, _, real_row, gan_row = table.splitlines()
    assert head.split("|")[2].strip() == "real" and "gan-prior" in head
    assert "| 50%" in gan_row.replace("  ", " ") or "50%" in gan_row
    assert "0%" in real_row


@pytest.mark.parametrize("variant, fragment", [
    ({"parts": ["real", "nope"]}, "'nope' is neither real, classic, more-real, pseudo-real nor a set under sample.sets"),
    ({"parts": ["real", "gan-prior"], "ratio": 1, "per_class": 5}, "ratio or per_class, not both"),
    ({"parts": ["real", "real"]}, "names a part twice"),
    ({"parts": ["real", "gan-prior"], "ratio": -1}, "greater than 0"),
])
def test_bad_variants_name_the_key(variant, fragment):
    with pytest.raises(SynthaugError, match="compose.variants") as e:
        validate_params({"compose": {"variants": {"real": {}, "v": variant}},
                         "study": {"variants": ["real", "v"]}})
    assert fragment in str(e.value)


def test_a_variant_name_with_a_dot_is_refused_as_no_override_could_reach_it():
    with pytest.raises(SynthaugError, match=r"'real\.x'.*no dots"):
        validate_params({"compose": {"variants": {"real": {}, "real.x": {}}}})


# ------------------------------------------------------------------ stale parts (issue 31, item 2)
def test_compose_refuses_augment_and_synthetic_sets_of_an_older_train_split(tmp_path, run_cli):
    """prepare, augment / sample, prepare again, compose: exit 0 on sets of the old split,
    before; now one line naming the set and what to rerun."""
    import json
    import shutil

    import yaml

    from synthaug.pipeline.data.storage import read_dataset, write_dataset
    from tests.conftest import one_line_error
    from tests.test_train import blob_splits, blobs

    params = blob_splits(tmp_path)
    params["augment"].update(copies_per_image=1, workers=1, pipeline="medium")  # no choice
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    train_dir = tmp_path / "data/prepared/train"
    assert run_cli(tmp_path, "augment", "--no-progress").exit_code == 0
    real = read_dataset(train_dir, mmap=False)
    gan = tmp_path / "data/synthetic/gan-prior"
    gan.mkdir(parents=True)
    write_dataset(gan, real.images, real.labels, real.class_names, meta={
        "kind": "synthetic", "generator": "gan",
        "generator_trained_on": {"content_hash": real.meta["content_hash"]}})
    both = ("-S", "study.variants=[real+classic, real+gan]")
    assert run_cli(tmp_path, "compose", *both).exit_code == 0
    made = json.loads((tmp_path / "data/variants/real+gan/meta.json").read_text())
    assert made["train_content_hash"] == real.meta["content_hash"]

    shutil.rmtree(train_dir)  # `prepare` again, another seed
    train_dir.mkdir()
    write_dataset(train_dir, *blobs(seed=7), ["tl", "br"], meta={"source": "blobs"})
    before = (tmp_path / "data/variants/real+gan/meta.json").read_bytes()
    one_line_error(run_cli(tmp_path, "compose", *both), "data/augmented: stale, made from "
                   "another data/prepared/train", "rerun `synthaug augment`")
    one_line_error(run_cli(tmp_path, "compose", "-S", "study.variants=[real+gan]"),
                   "data/synthetic/gan-prior: stale",
                   "rerun `synthaug train-generator gan`, then `synthaug sample gan-prior`")
    assert (tmp_path / "data/variants/real+gan/meta.json").read_bytes() == before  # kept
    assert run_cli(tmp_path, "augment", "--no-progress").exit_code == 0
    assert run_cli(tmp_path, "compose", "-S", "study.variants=[real+classic]").exit_code == 0


def test_params_edited_while_compose_runs_leave_the_old_variants(tmp_path, run_cli, monkeypatch):
    """Issue 31, item 5: params.yaml edited mid-run used to leave data made with the old
    values under a dvc.lock recording the new ones; now the stage refuses to commit (exit 2:
    `dvc repro` records nothing) and names the keys."""
    import yaml

    import synthaug.pipeline.data.compose as compose
    from tests.conftest import one_line_error
    from tests.test_train import blob_splits

    params = blob_splits(tmp_path)
    params["study"]["variants"] = ["real"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert run_cli(tmp_path, "compose").exit_code == 0
    before = (tmp_path / "data/variants/real/meta.json").read_bytes()
    real_compose = compose.compose_variant

    def edited_meanwhile(*args, **kwargs):
        params["compose"]["seed"] = 5
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
        return real_compose(*args, **kwargs)

    monkeypatch.setattr(compose, "compose_variant", edited_meanwhile)
    params["compose"]["seed"] = 1  # the run reads seed 1 ...
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    one_line_error(run_cli(tmp_path, "compose"),  # ... and the file says 5 by its commit
                   "params.yaml: compose.seed changed while this command ran", "rerun it")
    assert (tmp_path / "data/variants/real/meta.json").read_bytes() == before
