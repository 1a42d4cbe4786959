"""A copy of the project's pipeline files in a fresh git repo, for the slow end-to-end tests
(`dvc repro` / `dvc exp run` as a user runs them). The `synthaug` command they run is the
installed one; the copied code folders are what dvc.yaml's deps hash."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

COPY = ["pipeline", "stages", "generators", "dvc.yaml", "params.yaml", ".dvcignore", ".dvc/config",
        ".dvc/.gitignore", ".dvc/plots", ".gitignore"]


def sh(cwd, *cmd, env):
    """Run `cmd` in `cwd`; its output, or an assertion error with both streams."""
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stdout}\n{r.stderr}"
    return r.stdout + r.stderr


def copy_project(repo_root: Path, dst: Path) -> None:
    """The pipeline files (COPY) of `repo_root` into `dst`."""
    for item in COPY:
        src, to = repo_root / item, dst / item
        to.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, to, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, to)


def commit_repo(path: Path) -> dict:
    """`git init` and one commit of everything in `path` (`dvc exp run` and dvclive need a
    commit); returns the environment the commands run in (this venv's commands first)."""
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "NO_ALBUMENTATIONS_UPDATE": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    sh(path, "git", "init", "-q", "-b", "main", env=env)
    sh(path, "git", "add", "-A", env=env)
    sh(path, "git", "commit", "-qm", "init", env=env)
    return env
