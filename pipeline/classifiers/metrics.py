"""Classification metrics on the held-out real test split, and the files a cell writes."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from synthaug.pipeline.core.csv_cells import csv_cell


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str]) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix
    (rows: actual, columns: predicted), as scikit-learn computes them with zero_division=0.

    Counted with numpy: importing sklearn.metrics costs ~3 s, once per study cell."""
    k = len(class_names)
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    cm = np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)
    tp, support, predicted = np.diag(cm), cm.sum(1), cm.sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
        r = np.where(support > 0, tp / np.maximum(support, 1), 0.0)
        f = np.where(p + r > 0, 2 * p * r / np.where(p + r > 0, p + r, 1), 0.0)
    return {
        "accuracy": float(tp.sum() / max(1, len(y_true))),
        "macro_f1": float(f.mean()) if k else 0.0,
        "num_test": int(len(y_true)),
        "per_class": {name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                             "support": int(support[i])} for i, name in enumerate(class_names)},
        "confusion_matrix": cm.tolist(),
    }


def score(model, test, device, batch_size: int = 512) -> tuple[dict, np.ndarray]:
    """(classification_metrics, predicted labels) of `model` on the packed data set `test`."""
    from synthaug.pipeline.classifiers.training import predict

    pred = predict(model, test.images, device, batch_size).argmax(1).numpy()
    return classification_metrics(test.labels, pred, test.class_names), pred


def write_evaluation(out: Path, m: dict, class_names: list[str], y_true: np.ndarray,
                     y_pred: np.ndarray, figure: bool = False, **summary) -> None:
    """A cell's test results into folder `out`: metrics.json (accuracy, macro-F1 and `summary`,
    one row for `dvc metrics show`), per_class.json, confusion.json and predictions.csv (for the
    `dvc plots` confusion template); with `figure`, confusion.png too (summary names the
    model, variant and seed)."""
    head = {k: m[k] for k in ("accuracy", "macro_f1", "num_test")}
    (out / "metrics.json").write_text(json.dumps({**head, **summary}, indent=2) + "\n")
    (out / "per_class.json").write_text(json.dumps(m["per_class"], indent=2) + "\n")
    (out / "confusion.json").write_text(json.dumps(
        {"class_names": class_names, "matrix": m["confusion_matrix"]}) + "\n")
    names = [csv_cell(c) for c in class_names]  # no spreadsheet formulas (class "=x")
    with open(out / "predictions.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["actual", "predicted"])
        w.writerows((names[a], names[b])
                    for a, b in zip(np.asarray(y_true).tolist(), np.asarray(y_pred).tolist(), strict=True))
    if figure:
        from synthaug.pipeline.figures.results import confusion_matrix_png

        confusion_matrix_png(m["confusion_matrix"], class_names, out / "confusion.png",
                             title=f"{summary['model']} on {summary['variant']}, seed "
                                   f"{summary['seed']}: test accuracy {m['accuracy']:.4f}")


def per_class_lines(m: dict) -> list[str]:
    """The per-class precision / recall / F1 table as printable lines."""
    lines = [f"{'class':>12}  precision  recall     f1  support"]
    for name, row in m["per_class"].items():
        lines.append(f"{name:>12}  {row['precision']:9.4f}  {row['recall']:6.4f}  "
                     f"{row['f1']:.4f}  {row['support']:7d}")
    return lines
