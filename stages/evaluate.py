"""`synthaug evaluate`: score the trained classifier on the held-out REAL test split only; and
the study cell (`--variant`, `--model`, `--seed`) it shares with `synthaug train`."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from synthaug.pipeline.core.errors import SynthaugError
from synthaug.pipeline.core.settings import SEED_MAX
from synthaug.stages.common import ParamsOpt, SetOpt, params_from, say, user_errors
from synthaug.stages.params import Params

VariantOpt = Annotated[str | None, typer.Option(
    "--variant", help="training set: a name under compose.variants [default: the first of "
    "study.variants]")]
ModelOpt = Annotated[str | None, typer.Option("--model", help="model [default: train.model]")]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="seed [default: train.seed]")]


def study_cell(p: Params, variant: str | None, model: str | None, seed: int | None):
    """One cell of the study matrix -> (variant, its TrainConfig, run sub-path); by default
    study.variants[0], train.model and train.seed. The recipe: `classifiers.config.recipe`."""
    from synthaug.pipeline.classifiers.config import recipe

    variant = variant or p.study.variants[0]
    if variant not in p.compose.variants:
        raise SynthaugError(f"--variant: unknown variant {variant!r}; defined under "
                            f"compose.variants: {', '.join(p.compose.variants)}")
    if model is not None:
        from synthaug.pipeline.classifiers.names import unknown_model

        if problem := unknown_model("--model", model, p.models):
            raise SynthaugError(problem)
    if seed is not None and not 0 <= seed <= SEED_MAX:
        raise SynthaugError(f"--seed: must be between 0 and {SEED_MAX} (got {seed})")
    cfg = recipe(p.train, p.train.model if model is None else model,
                 p.train.seed if seed is None else seed)
    return variant, cfg, p.run_name(variant, cfg.model, cfg.seed)


@user_errors
def command(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None,
            variant: VariantOpt = None, model: ModelOpt = None, seed: SeedOpt = None) -> Path:
    """Score one study cell's classifier on `paths.prepared`/test (never used for training or
    selection).

    Reads `paths.models`/<variant>/<model>/seed<N>; writes to
    `paths.evaluate_metrics`/<variant>/<model>/seed<N>: metrics.json (accuracy, macro-F1; read by
    `dvc metrics show`), per_class.json (precision, recall, F1, support per class),
    predictions.csv (for the `dvc plots` confusion template), confusion.json and confusion.png.

    **Examples**

    ```
    synthaug evaluate --variant real --model cnn --seed 0
    synthaug evaluate --variant real+gan --model efficientnet_lite0
    ```
    """
    p = params_from(params, set_)
    variant, cfg, run = study_cell(p, variant, model, seed)
    model_dir, out_dir = p.paths.models / run, p.paths.evaluate_metrics / run
    from synthaug.pipeline.classifiers.classifier import load_classifier
    from synthaug.pipeline.core.device import pick_device
    from synthaug.pipeline.classifiers.metrics import per_class_lines, score, write_evaluation
    from synthaug.pipeline.core.outputs import atomic_output
    from synthaug.pipeline.data.storage import read_dataset

    device = pick_device(p.evaluate.device)
    test = read_dataset(p.paths.prepared / "test", mmap=False)
    if not (model_dir / "config.json").is_file():
        raise SynthaugError(f"{model_dir}: no trained classifier; run `synthaug train --variant "
                            f"{variant} --model {cfg.model} --seed {cfg.seed}` first")
    from synthaug.pipeline.classifiers.runs import check_cell, rerun_command

    run_id = check_cell(model_dir, p.paths.train_metrics / run, None,  # one run's model and log
                        rerun_command(variant, cfg.model))
    model, config = load_classifier(model_dir, device)
    # trained on the variant's set as it is now, itself made from the current train split
    from synthaug.pipeline.classifiers.cell import check_variant
    from synthaug.pipeline.data.lineage import check_made_from

    check_made_from(model_dir, (config.get("trained_on") or {}).get("content_hash"),
                    p.paths.variants / variant, check_variant(p.paths.variants / variant,
                                                              p.paths.prepared),
                    f"`{rerun_command(variant, cfg.model)}`")
    if config["class_names"] != test.class_names or tuple(config["shape"]) != test.shape:
        raise SynthaugError(f"{model_dir}: trained on classes {config['class_names']} of shape "
                            f"{config['shape']}, but the test split has {test.class_names} of "
                            f"shape {list(test.shape)}; re-run `synthaug train`")
    m, pred = score(model, test, device, p.evaluate.batch_size)
    with atomic_output(out_dir) as out:
        write_evaluation(out, m, test.class_names, test.labels, pred, figure=True,
                         variant=variant, model=config["model"], seed=cfg.seed, run_id=run_id)
    say(f"test ({m['num_test']} real images): accuracy {m['accuracy']:.4f}  "
        f"macro-F1 {m['macro_f1']:.4f}")
    for line in per_class_lines(m):
        say(line)
    say(f"-> {out_dir}")
    return run  # the cell of the timing file
