"""`synthaug evaluate`: score the trained classifier on the held-out REAL test split only."""
from __future__ import annotations

from pathlib import Path

from stages.common import (
    ModelOpt,
    ParamsOpt,
    SeedOpt,
    SetOpt,
    VariantOpt,
    params_from,
    say,
    study_cell,
    user_errors,
)


@user_errors
def command(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None,
            variant: VariantOpt = None, model: ModelOpt = None, seed: SeedOpt = None) -> None:
    """Score one study cell's classifier on `paths.prepared`/test (never used for training or
    selection).

    Reads `paths.models`/<variant>/<model>/seed<N>; writes to
    `paths.evaluate_metrics`/<variant>/<model>/seed<N>: metrics.json (accuracy, macro-F1; read by
    `dvc metrics show`), per_class.json (precision, recall, F1, support per class),
    predictions.csv (for the `dvc plots` confusion template), confusion.json and confusion.png.
    """
    p = params_from(params, set_)
    variant, _, seed, run = study_cell(p, variant, model, seed)
    model_dir, out_dir = p.paths.models / run, p.paths.evaluate_metrics / run
    from pipeline.classifiers.classifier import load_classifier
    from pipeline.core.device import pick_device
    from pipeline.core.errors import SynthaugError
    from pipeline.classifiers.metrics import per_class_lines, score, write_evaluation
    from pipeline.data.storage import atomic_output, read_dataset

    device = pick_device(p.evaluate.device)
    test = read_dataset(p.paths.prepared / "test", mmap=False)
    if not (model_dir / "config.json").is_file():
        raise SynthaugError(f"{model_dir}: no trained classifier; run `synthaug train --variant "
                            f"{variant} --model {p.train.model} --seed {seed}` first")
    model, config = load_classifier(model_dir, device)
    if config["class_names"] != test.class_names or tuple(config["shape"]) != test.shape:
        raise SynthaugError(f"{model_dir}: trained on classes {config['class_names']} of shape "
                            f"{config['shape']}, but the test split has {test.class_names} of "
                            f"shape {list(test.shape)}; re-run `synthaug train`")
    m, pred = score(model, test, device, p.evaluate.batch_size)
    with atomic_output(out_dir) as out:
        write_evaluation(out, m, test.class_names, test.labels, pred, figure=True,
                         variant=variant, model=config["model"], seed=seed)
    say(f"test ({m['num_test']} real images): accuracy {m['accuracy']:.4f}  "
        f"macro-F1 {m['macro_f1']:.4f}")
    for line in per_class_lines(m):
        say(line)
    say(f"-> {out_dir}")
