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
