"""The positive control (`more-real`) and the sweep's `when` points: variants re-composed on a
k-per-class split alone, with generators trained on that split."""
import numpy as np
import pytest
import torch

from synthaug.pipeline.core.errors import SynthaugError
from synthaug.pipeline.data.compose import compose_variant, makeup_table
from synthaug.pipeline.data.config import ComposeConfig, VariantConfig
from synthaug.pipeline.data.prepare import held_out, subsample_per_class
from synthaug.pipeline.data.storage import PackedDataset
from synthaug.pipeline.experiments.config import SweepConfig
from synthaug.pipeline.experiments.sweep import Point, SweepData, points, split_of, when_set
from synthaug.stages.params import validate_params

NAMES = ["a", "b", "c"]


def pool(n_per_class=12, size=8, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(NAMES)), n_per_class)
    images = rng.integers(0, 256, (len(labels), size, size, 1), dtype=np.uint8)
    return PackedDataset(images, labels, NAMES, {"prepare": {"seed": 3, "train_per_class": 4}})


def test_held_out_is_the_pool_outside_the_k_draw():
    p = pool()
    train = subsample_per_class(np.arange(len(p)), p.labels, 4, 3, NAMES)
    rest = held_out(p, 4, 3)
    assert len(rest) == len(p) - len(train)
    assert np.bincount(rest.labels).tolist() == [8, 8, 8]
    idx = [row["pool_index"] for row in rest.manifest]
    assert not set(idx) & set(train.tolist())
    assert np.array_equal(rest.images, p.images[idx])


def test_more_real_is_drawn_like_a_synthetic_part_but_is_not_synthetic():
    p = pool()
    real = split_of(p, 4)
    cfg = VariantConfig(parts=["real", "more-real"], ratio=1.0)
    assert cfg.drawn_parts() == ["more-real"] and cfg.synthetic_parts() == []
    v = compose_variant("more-real", cfg, {"real": real, "more-real": held_out(p, 4, 3)}, seed=0)
    assert v.meta["made_of"] == {"real": [4, 4, 4], "more-real": [4, 4, 4]}
    assert len({r["pool_index"] for r in v.provenance if r["part"] == "more-real"}) == 12
    row = makeup_table({"more-real": v}).splitlines()[2]
    assert "| 0% " in row  # real images: no synthetic share
    with pytest.raises(SynthaugError, match="needs 9 images of class 'a'"):
        compose_variant("x", cfg.model_copy(update={"ratio": 2.25}),
                        {"real": real, "more-real": held_out(p, 4, 3)})


def test_more_real_needs_a_thinned_train_split(tmp_path):
    from synthaug.pipeline.data.prepare import more_real
    from synthaug.pipeline.data.storage import write_dataset

    p = pool()
    (tmp_path / "train").mkdir()
    write_dataset(tmp_path / "train", p.images, p.labels, NAMES, None,
                  {"prepare": {"train_per_class": None, "seed": 0}})
    with pytest.raises(SynthaugError, match="needs the held-back train pool .* set it"):
        more_real(tmp_path)
    validate_params({"prepare": {"train_per_class": None}})  # other stages still run


def test_the_quality_reference_is_held_back_pool_images_no_generator_saw(tmp_path):
    from synthaug.pipeline.data.prepare import held_back_reference
    from synthaug.pipeline.data.storage import write_dataset

    p = pool()
    meta = {"prepare": {"train_per_class": 4, "seed": 3}}
    train = split_of(p, 4)
    for name, ds in [("pool", p), ("train", train)]:
        (tmp_path / name).mkdir()
        write_dataset(tmp_path / name, ds.images, ds.labels, NAMES, None, meta)
    ref = held_back_reference(tmp_path, train, seed=0)
    assert np.bincount(ref.labels).tolist() == [4, 4, 4]  # the train split's size and balance
    train_rows = {bytes(x) for x in train.images}
    assert not any(bytes(x) in train_rows for x in ref.images)  # none of the train split
    assert np.array_equal(held_back_reference(tmp_path, train, seed=0).images, ref.images)
    import shutil

    shutil.rmtree(tmp_path / "pool")  # no pool (train_per_class: null): the train split
    assert held_back_reference(tmp_path, train, seed=0) is None


def test_low_data_points_get_more_seeds_and_when_points_only_their_models():
    s = SweepConfig(real_per_class=[5, 20], ratios=[], seeds=[0, 1], low_data_k=10,
                    low_data_seeds=[0, 1, 2, 3, 4], when_per_class=[5, 20],
                    when_variants=["more-real"], when_models=["cnn"])
    cnn, eff = points(s, "cnn"), points(s, "efficientnet_lite0")
    assert [pt.seed for pt in cnn if pt.sweep == "real_per_class" and pt.value == 5] == [0, 1, 2, 3, 4]
    assert [pt.seed for pt in cnn if pt.sweep == "real_per_class" and pt.value == 20] == [0, 1]
    assert len([pt for pt in cnn if pt.sweep == "when"]) == 5 + 2
    assert not [pt for pt in eff if pt.sweep == "when"]
    with pytest.raises(SynthaugError, match="when_per_class: 7 is not in sweep.real_per_class"):
        validate_params({"sweep": {"when_per_class": [7]}})


def test_a_when_point_composes_its_variant_on_the_k_split_alone():
    p = pool()
    data = SweepData(real=split_of(p, 4), val=split_of(p, 1), test=split_of(p, 1), pool=p,
                     synthetic={})
    seen = []

    def synthesize(k, split):  # the caller's generator trainer: here, flipped copies
        seen.append((k, len(split)))
        return {"vae-jitter": PackedDataset(split.images[:, ::-1].copy(), split.labels, NAMES)}

    compose = ComposeConfig(variants={
        "real+classic": VariantConfig(parts=["real", "classic"]),
        "real+vae-jitter": VariantConfig(parts=["real", "vae-jitter"], ratio=1.0),
        "more-real": VariantConfig(parts=["real", "more-real"], ratio=2.0)})
    from synthaug.pipeline.augment.config import AugmentConfig

    aug = AugmentConfig(pipeline="light", copies_per_image=2)
    x, y, *_ = when_set(Point("when", 2, 0, "real+classic"), data, compose, aug, synthesize)
    assert len(y) == 6 + 12 and np.array_equal(x[:6], split_of(p, 2).images)
    x, y, *_ = when_set(Point("when", 2, 0, "real+vae-jitter"), data, compose, aug, synthesize)
    assert len(y) == 12 and seen == [(2, 6)]  # the generator saw the k=2 split only
    x, y, *_ = when_set(Point("when", 2, 0, "more-real"), data, compose, aug, synthesize)
    assert np.bincount(y).tolist() == [6, 6, 6]
    with pytest.raises(SynthaugError, match="no generator trainer"):
        when_set(Point("when", 2, 0, "real+vae-jitter"), data, compose, aug, None)


def test_labelled_few_unlabelled_many_and_its_self_training_control():
    """`pseudo-real`: the rest of the pool with the labeller's labels (not its own); an
    `unlabelled` variant's generator sees the split plus those pseudo-labelled images."""
    p = pool()
    data = SweepData(real=split_of(p, 4), val=split_of(p, 1), test=split_of(p, 1), pool=p,
                     synthetic={})
    seen, asked = [], []

    def synthesize(k, split, tag=""):
        seen.append((k, len(split), tag))
        return {"vae-prior": PackedDataset(split.images[:, ::-1].copy(), split.labels, NAMES)}

    def label(k, split, images):  # a "classifier" whose labels are not the true ones
        asked.append((k, len(split), len(images)))
        return (np.arange(len(images)) % 3).astype(np.int64)

    compose = ComposeConfig(variants={
        "self-training": VariantConfig(parts=["real", "pseudo-real"], ratio=1.0),
        "real+vae-unlabelled": VariantConfig(parts=["real", "vae-prior"], ratio=1.0,
                                             unlabelled=True)})
    from synthaug.pipeline.augment.config import AugmentConfig

    aug = AugmentConfig()
    from synthaug.pipeline.data.compose import compose_variant as real_compose
    import synthaug.pipeline.data.compose as compose_module

    made = []
    compose_module.compose_variant = lambda *a, **k: made.append(real_compose(*a, **k)) or made[-1]
    try:
        when_set(Point("when", 2, 0, "self-training"), data, compose, aug, synthesize, label)
    finally:
        compose_module.compose_variant = real_compose
    v = made[0]
    assert asked == [(2, 6, 36 - 6)] and not seen  # labels for the pool outside the split
    # its drawn half carries the labeller's labels, not the pool's own
    rest = held_out(p, 2, 3)
    given = {row["pool_index"]: i % 3 for i, row in enumerate(rest.manifest)}
    drawn = [(r["pool_index"], int(lab)) for r, lab in zip(v.provenance, v.labels)
             if r["part"] == "pseudo-real"]
    assert len(drawn) == 6 and all(given[i] == lab for i, lab in drawn)
    assert any(p.labels[i] != lab for i, lab in drawn)
    assert VariantConfig(parts=["real", "pseudo-real"]).synthetic_parts() == []
    x, y, *_ = when_set(Point("when", 2, 0, "real+vae-unlabelled"), data, compose, aug,
                        synthesize, label)
    assert seen == [(2, 36, "unlabelled")]  # the generator saw split + pseudo-labelled pool
    with pytest.raises(SynthaugError, match="needs pseudo-labels"):
        when_set(Point("when", 2, 0, "self-training"), data, compose, aug, synthesize)


def test_lowdata_trains_each_family_once_per_k_on_that_split():
    from synthaug.generators.config import SetConfig, TrainGeneratorConfig
    from synthaug.generators.lowdata import synthesizer

    p = pool(n_per_class=6, size=16)
    cfg = TrainGeneratorConfig.model_validate({"vae": {"steps": 3, "batch_size": 8, "width": 4}})
    sets = {"vae-prior": SetConfig(generator="vae"),
            "vae-jitter": SetConfig(generator="vae", sampler="posterior_jitter", sigma=1.0)}
    lines = []
    make = synthesizer(list(sets), sets, cfg, split_of(p, 1), 5, 16, 0, torch.device("cpu"),
                       log=lines.append)
    out = make(2, split_of(p, 2))
    assert set(out) == set(sets) and len(lines) == 1 and "6 images" in lines[0]
    assert out["vae-prior"].images.shape == (15, 16, 16, 1)
    assert np.bincount(out["vae-jitter"].labels).tolist() == [5, 5, 5]
    assert make(2, split_of(p, 2)) is out and len(lines) == 1  # cached per k
    other = make(2, split_of(p, 3), "unlabelled")  # and per tag
    assert other is not out and len(lines) == 2 and "pseudo-labelled" in lines[1]


def test_the_report_reads_when_lines_tests_them_and_answers_first():
    from synthaug.pipeline.experiments.config import StudyConfig
    from synthaug.pipeline.report import results as results_, when
    from synthaug.pipeline.report.study import Study

    rows = [{"sweep": "real_per_class", "value": k, "seed": sd, "accuracy": a, "model": "cnn"}
            for k, accs in {5: [.70, .72, .71, .69, .73], 10: [.80, .82, .81, .79, .83]}.items()
            for sd, a in enumerate(accs)]
    rows += [{"sweep": "when", "variant": "more-real", "value": 10, "seed": sd, "accuracy": a,
              "model": "cnn"} for sd, a in enumerate([.86, .87, .88, .85, .89])]
    rows += [{"sweep": "when", "variant": "real+vae-jitter", "value": 10, "seed": sd,
              "accuracy": a, "model": "cnn"} for sd, a in enumerate([.79, .81, .80, .78, .82])]
    cells = {(v, "cnn", sd): {"accuracy": a, "macro_f1": a, "history": []}
             for v, accs in {"real": [.94, .95, .94], "real+vae-jitter": [.93, .94, .935],
                             "more-real": [.955, .96, .958]}.items()
             for sd, a in enumerate(accs)}
    by_line = when.lines({"cnn": {"rows": rows}}, cells, 50, "cnn", ["real+vae-jitter", "more-real"])
    assert sorted(by_line["real"]) == [5, 10, 50] and len(by_line["more-real"][10]) == 5
    cmp = when.compare(by_line)
    assert cmp["more-real"][10]["significant"] and cmp["more-real"][10]["gain"] == pytest.approx(0.06)
    assert not cmp["real+vae-jitter"][10]["significant"]
    assert "| 10 | 81.0 (5 seeds) | 80.0 (5 seeds) (-1.0" in when.table(cmp)
    s = Study(study=StudyConfig(variants=["real", "real+vae-jitter", "more-real"], models=["cnn"],
                                seeds=[0, 1, 2]), cells=cells, train_per_class=50,
              when={"cnn": cmp})
    text = when.answer(s, results_.summarise(s))
    assert "the best synthetic variant, `real+vae-jitter`, loses to real-only" in text
    assert "The positive control" in text and "a gain the harness detects" in text
    assert "at 10 per class `real+vae-jitter` (-1.0" in text and "`more-real` (+6.0" in text
    js = results_.results_json(results_.summarise(s), {}, s.when)
    assert js["when/more-real/10/cnn"]["p"] < 0.05 and "values" not in js["when/more-real/10/cnn"]
