"""End to end: the real `dvc repro` in a temp git repo on tiny params, then a no-op repro, DVC's
own views (`dvc metrics show`, `dvc plots show`) and a `dvc exp run -S` whose metrics
`dvc exp show` reports, in a terminal's width."""
import json

import pytest
import yaml
from dvc_project import commit_repo, copy_project, sh

pytestmark = pytest.mark.slow


@pytest.fixture
def project(tmp_path, repo_root):
    copy_project(repo_root, tmp_path)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["prepare"].update(train_per_class=20)
    params["train"].update(epochs=4, batch_size=16)
    params["augment"].update(copies_per_image=2)
    params["study"].update(variants=["real", "real+online", "real+all"], models=["cnn"],
                           seeds=[0, 1])  # 3 cells of 2 seeds
    params["sweep"].update(models=["cnn"], real_per_class=[5], ratios=[0.5], seeds=[0],
                           ratio_variant="real+mix", low_data_seeds=[0, 1],
                           when_per_class=[5], when_variants=["real+mix"])  # a tiny when curve
    params["sample"].update(per_class=20, sets={
        "gan-prior": {"generator": "gan"},
        "vae-gmm": {"generator": "vae", "sampler": "gmm", "components": 2},
        "diffusion-ddim": {"generator": "diffusion"}})
    params["compose"]["variants"] = {  # only the variants of this study
        name: params["compose"]["variants"][name] for name in ("real", "real+online")}
    params["compose"]["variants"]["real+mix"] = {"parts": ["real", "diffusion-ddim"], "ratio": 1.0}
    params["compose"]["variants"]["real+all"] = {
        "parts": ["real", "gan-prior", "vae-gmm", "diffusion-ddim"], "ratio": 1.0, "gate": True}
    params["compose"]["gate"]["tau"] = 0.0  # tiny generators: the gate only drops near-copies
    # the wiring, not the metrics (tests/test_quality.py): no CAS trainings, no ImageNet net
    params["quality"].update(epochs=1, imagenet_features=False, cas=False)
    gen = params["train_generator"]  # tiny generators: this test checks the wiring, not quality
    gen.update(log_every=10, checkpoint_every=10, grid_every=0)
    gen["gan"].update(steps=10)
    gen["vae"].update(steps=10)
    gen["diffusion"].update(steps=10, autoencoder_steps=10, sample_steps=2)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return tmp_path, commit_repo(tmp_path)


def test_dvc_repro_end_to_end(project):
    root, env = project
    out = sh(root, "dvc", "repro", env=env)
    for stage in ("prepare", "augment", "judge", "compose", "train_generator",
                  "sample", "quality", "report",
                  "train", "sweep"):  # one stage each: every cell of the study, every model
        assert f"Running stage '{stage}'" in out
    train_meta = json.loads((root / "data/prepared/train/meta.json").read_text())
    assert train_meta["num_images"] == 200 and set(train_meta["counts"].values()) == {20}
    assert json.loads((root / "data/augmented/meta.json").read_text())["num_images"] == 400
    choice = json.loads((root / "data/augmented/choice.json").read_text())  # auto: chosen on val
    assert choice["split"] == "val" and len(choice["candidates"]) == 6
    assert f"**{choice['chosen']}**, chosen on the val split" in (root / "reports/report.md").read_text()
    online = json.loads((root / "data/variants/real+online/meta.json").read_text())["online_augment"]
    assert online == (None if choice["chosen"] == "none" else choice["chosen"])
    # synthetic sets: balanced, with provenance per image and their figures
    gmm = root / "data/synthetic/vae-gmm"
    assert json.loads((gmm / "meta.json").read_text())["counts"] == {str(c): 20 for c in range(10)}
    manifest = (gmm / "manifest.csv").read_text().splitlines()
    assert len(manifest) == 201 and {"generator", "sampler", "components", "seed", "set"} <= set(
        manifest[0].split(","))
    assert all((gmm / f).is_file() for f in ("grid.png", "walk.png", "interpolation.png"))
    # the quality table: every set plus the two references, a metrics file and figures
    quality = json.loads((root / "reports/quality/quality.json").read_text())
    assert set(quality) == {"real-val", "gan-prior", "vae-gmm", "diffusion-ddim", "noise"}
    assert quality["noise"]["fid_domain"] > quality["real-val"]["fid_domain"]
    assert "| vae-gmm" in (root / "reports/quality/quality.md").read_text()
    assert (root / "reports/quality/figures/fid_vs_cas.png").is_file()
    # real+all: the real images plus one real image's worth of gated synthetic ones, 3 sources
    mix = json.loads((root / "data/variants/real+all/meta.json").read_text())
    assert mix["num_images"] == 400 and sum(map(sum, mix["made_of"].values())) == 400
    assert set(mix["gate_counts"]) == {"gan-prior", "vae-gmm", "diffusion-ddim"}
    assert "real+all" in (root / "data/variants/makeup.md").read_text()
    for variant in ("real", "real+all", "real+online"):
        for seed in (0, 1):
            assert (root / f"models/classifiers/{variant}/cnn/seed{seed}/weights.safetensors").is_file()
            metrics = json.loads((root / f"metrics/evaluate/{variant}/cnn/seed{seed}/metrics.json").read_text())
            assert metrics["num_test"] == 1000 and metrics["accuracy"] > 0.5  # 4 short epochs
        cell = json.loads((root / f"metrics/study/{variant}.json").read_text())
        assert set(cell) == {"cnn"} and set(cell["cnn"]) == {"accuracy_mean", "seed0", "seed1"}
    assert (root / "metrics/timings/train.json").is_file()  # one stage: the whole study
    sweep = json.loads((root / "metrics/sweep/cnn/results.json").read_text())["rows"]
    assert [(r["sweep"], r["value"], r["seed"], r["train_images"]) for r in sweep] == [
        ("real_per_class", 5, 0, 50), ("real_per_class", 5, 1, 50), ("ratio", 0.5, 0, 300),
        ("when", 5, 0, 100), ("when", 5, 1, 100)]  # when: its own k=5 split + a generator on it
    report = (root / "reports/report.md").read_text()
    assert "| real+all | cnn | 2 |" in report and "## Sweeps" in report
    assert "## When does it help" in report and "## Where the time went" in report
    assert (root / "metrics/timings/sweep.json").is_file()
    for figure in ("accuracy", "learning_curves", "best_confusion", "samples",
                   "sweep_real_per_class", "sweep_ratio", "when_cnn"):
        assert (root / f"reports/figures/{figure}.png").is_file(), figure
    for data in ("accuracy.json", "learning_curves.json", "best_confusion.csv"):
        assert (root / "reports/plots" / data).is_file(), data

    again = sh(root, "dvc", "repro", env=env)
    assert "Running stage" not in again and "up to date" in again

    # DVC's own views, as docs/index.md gives them: the summary alone, a row per variant x
    # model and per synthetic set, in lines a terminal holds
    shown = sh(root, "dvc", "metrics", "show", env=env)
    lines = shown.splitlines()
    assert max(map(len, lines)) <= 200, max(lines, key=len)
    assert lines[0].split() == ["Path", "acc", "cov", "fid", "gain", "hi", "lo", "p", "prec", "rec"]
    assert sorted(line.split()[0] for line in lines[1:]) == sorted([
        *(f"metrics/summary/quality/{s}.json" for s in ("diffusion-ddim", "gan-prior", "vae-gmm")),
        *(f"metrics/summary/study/{v}/cnn.json" for v in ("real", "real+all", "real+online"))])
    # the report's figures as images: no vega, nothing fetched from the network
    html = sh(root, "dvc", "plots", "show", "-o", "plots_html", env=env)
    page = (root / "plots_html/index.html").read_text()
    assert "http" not in page and "vega" not in page, html
    plots = yaml.safe_load((root / "dvc.yaml").read_text())["plots"]
    assert page.count("<img ") == len(plots) == 12

    sh(root, "git", "add", "-A", env=env)
    sh(root, "git", "commit", "-qm", "baseline", env=env)
    exp = sh(root, "dvc", "exp", "run", "-S", "train.epochs=1", env=env)
    assert "Running stage 'train'" in exp and "Running stage 'prepare'" not in exp
    for stage in ("judge", "quality", "sample"):  # they don't use `train` (augment's choice does)
        assert f"Running stage '{stage}'" not in exp
    shown = json.loads(sh(root, "dvc", "exp", "show", "--json", env=env))
    text = json.dumps(shown)
    assert '"epochs": 1' in text and '"acc"' in text
    assert {f.split("/")[:2] == ["metrics", "summary"] for rev in shown
            for f in rev["data"]["metrics"]} == {True}  # the summary alone
    # side by side: the changed params and metrics, few enough columns for a terminal
    header = sh(root, "dvc", "exp", "show", "--only-changed", "--csv", env=env).splitlines()[0]
    columns = header.split(",")
    assert len(columns) <= 40, columns
    assert "train.epochs" in columns and "metrics/summary/study/real+all/cnn.json:acc" in columns
    # docs/index.md's key columns: its --keep regexes select the summary's metrics
    keep = sh(root, "dvc", "exp", "show", "--only-changed", "--csv", "--drop", ".*", "--keep",
              r"Experiment|train\.epochs$|.*/cnn\.json:(acc|gain)$", env=env).splitlines()[0]
    assert keep.split(",") == ["Experiment", *(
        f"metrics/summary/study/{v}/cnn.json:{k}" for v, k in
        [("real+all", "acc"), ("real+all", "gain"), ("real+online", "acc"),
         ("real+online", "gain"), ("real", "acc")]), "train.epochs"], keep
