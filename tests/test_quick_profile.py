"""The quick profile (docs/index.md, "Quick profile"): the documented `dvc exp run -S ...` set,
read from that page, on the real params.yaml. Fast: it parses and names existing keys. Slow:
it runs end to end in a temp git repo, every stage runs and the report names what each one made."""
import json
import re
import shlex
import time

import pytest
import yaml

from dvc_project import commit_repo, copy_project, sh

SECTION = "## Quick profile"


def quick_command(repo_root) -> list[str]:
    """The first ```bash block of docs/index.md's Quick profile section, as argv."""
    text = (repo_root / "docs" / "index.md").read_text(encoding="utf-8")
    assert f"\n{SECTION}\n" in text, f"docs/index.md has no {SECTION!r} section"
    section = text.split(f"\n{SECTION}\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S)
    assert block, f"no ```bash block under {SECTION!r}"
    return shlex.split(block.group(1).replace("\\\n", " "))


def overrides(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("-S", "--set-param")]


def test_quick_profile_is_a_dvc_exp_run_of_existing_keys(repo_root):
    from synthaug.stages.params import load_params

    argv = quick_command(repo_root)
    assert argv[:3] == ["dvc", "exp", "run"]
    sets = overrides(argv)
    assert len(argv) == 3 + 2 * len(sets), "only -S options: the profile is params, nothing else"
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    for text in sets:  # dvc's -S (Hydra) overrides keys that exist; it cannot add one
        node = params
        for key in text.partition("=")[0].split("."):
            assert isinstance(node, dict) and key in node, f"{text}: no such key in params.yaml"
            node = node[key]
    p = load_params(repo_root / "params.yaml", sets)
    assert p.study.seeds == [0] and p.study.models == p.sweep.models == ["cnn"]


def _children_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


@pytest.fixture
def project(tmp_path, repo_root):
    """The project's pipeline files and its real params.yaml in a fresh git repo."""
    copy_project(repo_root, tmp_path)
    return tmp_path, commit_repo(tmp_path)


@pytest.mark.slow
def test_quick_profile_runs_every_stage(project, repo_root):
    root, env = project
    argv = quick_command(repo_root)
    start, cpu = time.perf_counter(), _children_cpu()
    out = sh(root, *argv, env=env)
    seconds, cpu = time.perf_counter() - start, _children_cpu() - cpu
    print(f"\nquick profile: `dvc exp run` took {seconds:.1f} s ({cpu:.1f} CPU seconds)")
    stages = list(yaml.safe_load((root / "dvc.yaml").read_text())["stages"])
    for stage in stages:
        assert f"Running stage '{stage}'" in out, stage
    p = yaml.safe_load((root / "params.yaml").read_text())  # dvc exp run wrote the set into it
    assert p["study"]["seeds"] == [0] and p["train"]["epochs"] == 2

    report = (root / "reports" / "report.md").read_text()
    assert json.loads((root / "reports" / "results.json").read_text())
    for heading in ("## Data", "## Results", "## Sample images", "## Synthetic data quality",
                    "## Sweeps", "## Where the time went"):
        assert heading in report, heading
    for variant in p["study"]["variants"]:  # compose + train + evaluate: every cell's row
        assert f"| {variant} | cnn | 1 |" in report, variant
    for name in p["sample"]["sets"]:  # train_generator + sample + quality: every set's row
        assert name in report.split("## Synthetic data quality")[1], name
    timing = report.split("## Where the time went")[1]
    print(timing)
    for stage in stages:  # every stage's own record (the report's is written after it)
        if stage != "report":
            assert f"| {stage} |" in timing, stage
    quality = json.loads((root / "reports" / "quality" / "quality.json").read_text())
    assert set(quality) == {"real-val", "noise", *p["sample"]["sets"]}
    sweep = json.loads((root / "metrics" / "sweep" / "cnn" / "results.json").read_text())["rows"]
    assert {(r["sweep"], r["value"]) for r in sweep} == {("real_per_class", 5), ("ratio", 2.0)}
    assert seconds < 600, f"the quick profile took {seconds:.0f} s"
