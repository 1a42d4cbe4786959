"""The `synthaug` app: every stage is a command with --help; `python -m synthaug` is an alias."""
import subprocess
import sys

import pytest

COMMANDS = ["prepare", "augment", "compose", "train", "evaluate", "export", "models summary",
            "models list"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(run_cli, tmp_path, command):
    r = run_cli(tmp_path, *command.split(), "--help")
    assert r.exit_code == 0, r.output
    assert "Usage:" in r.output and "--help" in r.output
    if command in ("prepare", "augment", "compose", "train", "evaluate"):
        assert "--params" in r.output and "--set" in r.output


def test_python_m_stages_is_an_alias(repo_root):
    r = subprocess.run([sys.executable, "-m", "synthaug", "--help"], cwd=repo_root,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for command in ("prepare", "augment", "compose", "train", "evaluate", "export", "models"):
        assert command in r.stdout


def test_help_does_not_import_torch(repo_root):
    # heavy libraries load inside the commands, so `synthaug --help` starts fast
    code = ("import sys; from synthaug.stages.cli import app; "
            "print(any(m in sys.modules for m in ('torch', 'albumentations', 'cv2')))")
    r = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True,
                       text=True, timeout=120)
    assert r.stdout.strip() == "False", r.stderr
