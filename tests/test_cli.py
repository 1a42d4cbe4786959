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


# ------------------------------------------------------------------ unknown keys, help order, examples

import re  # noqa: E402
import shlex  # noqa: E402

import yaml  # noqa: E402

from conftest import one_line_error  # noqa: E402

PIPELINE_ORDER = ["check", "prepare", "augment", "judge", "train-generator", "sample", "quality",
                  "compose", "train", "evaluate", "sweep", "crossval", "report", "export", "models"]
ALL_COMMANDS = [*PIPELINE_ORDER, "models summary", "models list"]


@pytest.mark.parametrize("override,near", [
    ("train.epoch=3", "train.epochs"),
    ("trian.epochs=3", "train.epochs"),  # a misspelt section: the whole key is matched
    ("compose.gate.tua=0.5", "compose.gate.tau"),
    ("compose.variants.real.partz=[real]", "compose.variants.real.parts"),  # a mapping's member
    ("sample.sets.gan-prior.samplr=prior", "sample.sets.gan-prior.sampler"),
    ("models.m=[{type: conv, filterz: 3}]", "models.m.0.filters"),
])
def test_unknown_set_key_suggests_the_nearest_and_names_S(run_cli, tmp_path, repo_root, override,
                                                          near):
    r = run_cli(tmp_path, "prepare", "--params", repo_root / "params.yaml", "-S", override)
    one_line_error(r, "unknown key", f"(from -S {override})", f"did you mean {near}?")
    assert not (tmp_path / "data").exists()


def test_unknown_key_without_a_near_one_is_still_one_line(run_cli, tmp_path, repo_root):
    r = run_cli(tmp_path, "check", "--params", repo_root / "params.yaml", "-S", "sweep.zzz=1")
    one_line_error(r, "sweep.zzz: unknown key (from -S sweep.zzz=1)")
    assert "did you mean" not in r.stderr


def test_unknown_file_key_names_the_file(run_cli, tmp_path):
    path = tmp_path / "my-params.yaml"
    path.write_text("train:\n  epochs: 2\n  lr_sheduler: cosine\n")
    r = run_cli(tmp_path, "train", "--params", path, "-S", "train.epochs=3")
    one_line_error(r, f"train.lr_sheduler: unknown key (from {path})", "did you mean train.")
    assert "-S" not in r.stderr
    r = run_cli(tmp_path, "models", "list", "--params", path)  # a tool reads params the same way
    one_line_error(r, f"(from {path})")


def _commands_listed(output: str) -> list[str]:
    panel = output.split("Commands")[1]
    return re.findall(r"^│ ([a-z][a-z-]*)\s", panel, flags=re.M)


def test_help_lists_commands_in_pipeline_order(run_cli, tmp_path):
    r = run_cli(tmp_path, "--help")
    assert r.exit_code == 0, r.output
    assert _commands_listed(r.output) == PIPELINE_ORDER


def test_pipeline_order_follows_dvc_yaml(repo_root):
    """Every stage comes after the stages whose outputs it reads (dvc.yaml's deps and outs,
    ${...} filled in from params.yaml): the order `dvc repro` runs them in."""
    dvc = yaml.safe_load((repo_root / "dvc.yaml").read_text())
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    names = {k: v for d in dvc.get("vars", []) for k, v in d.items()}
    names.update({f"paths.{k}": v for k, v in params["paths"].items()})

    def fill(path) -> str:
        path = next(iter(path)) if isinstance(path, dict) else path
        return re.sub(r"\$\{([^}]+)\}", lambda m: str(names[m.group(1)]), path).rstrip("/")

    outs = {stage: [fill(o) for o in body.get("outs", [])] for stage, body in dvc["stages"].items()}
    stages = [c.replace("-", "_") for c in PIPELINE_ORDER if c.replace("-", "_") in outs]
    assert sorted(stages) == sorted(outs), "a dvc stage is missing from the help order"
    for i, stage in enumerate(stages):
        for dep in map(fill, dvc["stages"][stage].get("deps", [])):
            for other, paths in outs.items():
                if other != stage and any(dep == o or dep.startswith(o + "/") or
                                          o.startswith(dep + "/") for o in paths):
                    assert stages.index(other) < i, f"{stage} reads {dep} from {other}"


def _examples(command: str) -> list[str]:
    import typer.main

    from synthaug.stages.cli import app

    cmd = typer.main.get_command(app)
    for name in command.split():
        cmd = cmd.commands[name]
    blocks = re.findall(r"\*\*Examples\*\*\s*```\n(.*?)```", cmd.help or "", flags=re.S)
    return [line.strip() for b in blocks for line in b.splitlines() if line.strip()]


@pytest.mark.parametrize("command", ALL_COMMANDS)
def test_every_help_has_examples_that_run(run_cli, tmp_path, repo_root, command):
    """`COMMAND --help` shows an Examples block whose lines stay whole (a code block: not
    re-flowed into a paragraph, not wrapped at 80 columns); each line parses as that command's
    arguments and its -S overrides validate against params.yaml."""
    import typer.main

    from synthaug.stages.cli import app
    from synthaug.stages.params import load_params

    r = run_cli(tmp_path, *command.split(), "--help")
    assert r.exit_code == 0, r.output
    examples = _examples(command)
    assert "Examples" in r.output and 2 <= len(examples) <= 3, r.output
    shown = [line.strip() for line in r.output.splitlines()]
    for line in examples:
        assert line in shown, f"{line!r} is not on a line of its own in:\n{r.output}"
        args = shlex.split(line)
        assert args[0] == "synthaug"
        group, args = typer.main.get_command(app), args[1:]
        while args[0] in getattr(group, "commands", {}):
            group, args = group.commands[args[0]], args[1:]
            if not args:
                break
        group.make_context(line, list(args))  # raises on an unknown option or argument
        overrides = [args[i + 1] for i, a in enumerate(args[:-1]) if a in ("-S", "--set")]
        load_params(repo_root / "params.yaml", overrides)
