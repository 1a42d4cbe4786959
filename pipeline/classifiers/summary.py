"""Printable model summaries for `synthaug models`: the parameter-count list of every model and
the block-group table of a transfer model (what each `train.strategy` trains). No weights are
needed; torch is imported inside."""
from __future__ import annotations

from synthaug.pipeline.classifiers.config import TrainConfig
from synthaug.pipeline.classifiers.names import TRANSFER_MODELS
from synthaug.pipeline.core.errors import SynthaugError


def model_list(shape: tuple[int, int, int], classes: int, custom_models: dict,
               cfg: TrainConfig) -> list[str]:
    """One line per built-in, transfer and custom model: its parameter count for `shape`
    (C, H, W) and `classes` (transfer models: whether their ImageNet weights are found;
    `cfg.weights` counts for `cfg.model`)."""
    import torch

    from synthaug.pipeline.classifiers.architectures import BUILTIN
    from synthaug.pipeline.classifiers.layers import build_model, count_params, resolve_layers

    names = ([(n, "built-in") for n in BUILTIN] + [(n, "transfer") for n in TRANSFER_MODELS]
             + [(n, "custom") for n in custom_models])
    width = max(len(n) for n, _ in names)
    lines = [f"input {'x'.join(map(str, shape))}, {classes} classes"]
    for n, kind in names:
        try:
            if kind == "transfer":
                from synthaug.pipeline.classifiers.transfer import build_transfer, weights_status

                model, _ = build_transfer(n, classes, pretrained=False)
                found, _ = weights_status(n, cfg.weights if cfg.model == n else None)
                count = (f"{count_params(model)[0]:>12,} params  (ImageNet weights "
                         f"{'found' if found else f'missing, see: synthaug models summary {n}'})")
            else:
                with torch.device("meta"):  # counts without memory, for any input size
                    total, _ = count_params(build_model(resolve_layers(n, custom_models, shape),
                                                        shape, classes, name=n))
                count = f"{total:>12,} params"
        except SynthaugError as e:  # one unusable model must not hide the others
            count = f"{'n/a':>12}  ({e})"
        lines.append(f"{n:<{width}}  {kind:<8}  {count}")
    return lines


def transfer_summary(name: str, shape: tuple[int, int, int], classes: int, cfg: TrainConfig) -> str:
    """Block groups, parameter counts and what `cfg.strategy` trains; no weights needed."""
    from synthaug.pipeline.classifiers.transfer import build_transfer, weights_status

    if shape[0] not in (1, 3):
        raise SynthaugError(f"{name}: needs 1- or 3-channel images (got {shape[0]})")
    model, _ = build_transfer(name, classes, pretrained=False, strategy=cfg.strategy,
                              input_size=cfg.input_size, backbone_lr_mult=cfg.backbone_lr_mult,
                              unfreeze_every=cfg.unfreeze_every)
    weights = cfg.weights if cfg.model == name else None
    found, where = weights_status(name, weights)
    return (transfer_table(model, name, shape)
            + f"\nImageNet weights: {where if found else 'MISSING: ' + where}")


def _label(names: list[str]) -> str:
    """["features.4", ..., "features.8"] -> "features.4-8"."""
    stem = {n.rpartition(".")[0] for n in names}
    tails = [n.rpartition(".")[2] for n in names]
    if len(names) > 2 and len(stem) == 1 and all(t.isdigit() for t in tails):
        return f"{stem.pop()}.{tails[0]}-{tails[-1]}"
    return ", ".join(names)


def transfer_table(model, name: str, shape: tuple[int, int, int]) -> str:
    """Block groups with output shapes (channels last, as Keras) and parameter counts, and how
    many parameters each strategy trains."""
    from torch import nn

    names = {id(m): n for n, m in model.net.named_modules()}
    shapes = {}
    # a group's output shape is its last module's but a BatchNorm's (the shape of the layer
    # before it; in eval mode efficientnet_lite0's are folded into that layer, never called)
    bn = nn.modules.batchnorm._BatchNorm
    last = [next((m for m in reversed(g) if not isinstance(m, bn)), g[-1]) for g in model.groups]
    hooks = [m.register_forward_hook(lambda m, i, o: shapes.__setitem__(id(m), o.shape[1:]))
             for m in last]
    was = model.training
    import torch

    with torch.no_grad():
        shapes[id(model.head[0])] = model.eval()(torch.zeros(1, *shape)).shape[1:]
    model.train(was)
    for h in hooks:
        h.remove()

    def keras(dims) -> str:
        dims = [*dims[1:], dims[0]] if len(dims) == 3 else list(dims)
        return "(" + ", ".join(["None", *map(str, dims)]) + ")"

    head = model.head[0]
    rows = [(f"{i}  {_label([names[id(x)] for x in g])}", keras(shapes[id(m)]),
             sum(p.numel() for x in g for p in x.parameters()))
            for i, (g, m) in enumerate(zip(model.groups, last))]
    rows.append((f"head  {names[id(head)]}: Linear({head.in_features} -> {head.out_features})",
                 keras(shapes[id(head)]), sum(p.numel() for p in head.parameters())))
    title = "Block group (unfrozen top down)"
    w = max(len(title), *(len(r[0]) for r in rows)) + 2
    total, mean = sum(r[2] for r in rows), [round(v, 3) for v in model.mean.flatten().tolist()]
    thaw = [rows[-1][2] + sum(r[2] for r in rows[len(rows) - 1 - k:-1])
            for k in range(len(rows))]
    now = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return "\n".join([
        f'Model: "{name}" (ImageNet-pretrained, new head)',
        (f"input {'x'.join(map(str, shape))} -> 3x{model.input_size}x{model.input_size} inside "
         f"the model (gray repeated, bilinear resize, normalised with mean {mean})"), "",
        f"{title:<{w}}{'Output Shape':<22}{'Param #':>12}",
        "=" * (w + 34), *(f"{a:<{w}}{b:<22}{c:>12,}" for a, b, c in rows), "=" * (w + 34),
        f"Total params: {total:,}",
        (f"Trainable: linear_probe {rows[-1][2]:,} | finetune {total:,} | gradual_unfreeze "
         f"{' -> '.join(f'{n:,}' for n in thaw)} (a group every {model.unfreeze_every} epoch(s))"),
        f"train.strategy={model.strategy}: {now:,} trainable at epoch 1"])
