"""The quick profile (docs/index.md, "Quick profile"): the documented `dvc exp run -S ...` set,
read from that page, on the real params.yaml. Fast: it parses and names existing keys. Slow:
it runs end to end in a temp git repo, every stage runs and the report names what each one made."""
import json
import os
import re
import shlex
import shutil
import sys
import time
from pathlib import Path

import pytest
import yaml

from test_e2e import COPY, sh  # the end-to-end test's project files and command runner

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
    for item in COPY:
        src, dst = repo_root / item, tmp_path / item
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, dst)
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "NO_ALBUMENTATIONS_UPDATE": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    sh(tmp_path, "git", "init", "-q", "-b", "main", env=env)
    sh(tmp_path, "git", "add", "-A", env=env)
    sh(tmp_path, "git", "commit", "-qm", "init", env=env)  # dvc exp run needs a commit
    return tmp_path, env


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
