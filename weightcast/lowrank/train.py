"""Training a model with DLRT (or densely, as the baseline) on a weightcast task, recording ranks and accuracy."""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from .convert import forward_flops, parameter_count, to_low_rank
from .integrator import KLS
from .models import ReferenceLeNet5

MODELS = ("lenet5-ref", "mlp")


@dataclass
class TrainResult:
    """What :func:`train` measured. ``ranks``: (step, {layer: rank}) after each logged step; ``epochs``: one dict
    per epoch with "epoch", "step", "test_loss", "test_acc", "seconds"; ``counts``: parameter and FLOP counts of
    the final model and of its dense original (``dense_params``, ``params_reference``, ``params_full``,
    ``dense_flops``, ``flops_full``, ``flops_reference``)."""

    ranks: list[tuple[int, dict[str, int]]] = field(default_factory=list)
    epochs: list[dict] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    model: nn.Module | None = None


def build_model(name: str, input_shape, num_classes: int, width: int = 1024) -> tuple[nn.Module, list[str]]:
    """The dense model and the names of the layers DLRT makes low-rank: "lenet5-ref" (the paper's LeNet-5: conv1,
    conv2, fc1) or "mlp" (784 -> width -> width -> 10; both hidden layers)."""
    if name == "lenet5-ref":
        return ReferenceLeNet5(num_classes), list(ReferenceLeNet5.LOW_RANK_LAYERS)
    if name == "mlp":
        from ..models import MLP

        return MLP(input_shape, num_classes, (width, width)), ["layers.0", "layers.2"]
    raise ValueError(f"unknown model {name!r}; choose one of {MODELS}")


def check_task(task, model_name: str, batch_size: int | None = None) -> None:
    """Raise :class:`weightcast.errors.InputError` unless :func:`train` can train ``model_name`` on ``task``: a
    classification task (digits, mnist), 28x28 images for "lenet5-ref", and at least ``batch_size`` training
    examples."""
    from ..data import ClassificationTask
    from ..errors import InputError

    if not isinstance(task, ClassificationTask):
        raise InputError(f"lowrank train supports the classification tasks digits and mnist, not "
                         f"{getattr(task, 'name', type(task).__name__)!r}")
    if model_name == "lenet5-ref" and tuple(task.input_shape) != (1, 28, 28):
        raise InputError(f"lenet5-ref needs 28x28 MNIST images, the task's inputs are {tuple(task.input_shape)}; "
                         "use --task mnist or --model mlp")
    if batch_size is not None and batch_size > len(task.train_y):
        raise InputError(f"batch size {batch_size} exceeds the {len(task.train_y)} training examples; "
                         "pass a smaller --batch-size")


def train(task, model_name: str = "lenet5-ref", *, theta: float | None = 0.15, epochs: int = 20, lr: float = 0.05,
          batch_size: int = 128, base: str = "sgd", momentum: float = 0.0, seed: int = 0, rank: float = 1.0,
          min_rank: int = 2, log_every: int = 10, width: int = 1024, progress: bool = True) -> TrainResult:
    """Train ``model_name`` on ``task`` for ``epochs`` passes over its training set; ``theta=None`` trains the
    dense model with torch.optim.SGD/AdamW (same lr), otherwise the low-rank layers with :class:`KLS` from an
    SVD initialisation at ``rank`` (fraction of full rank); ``width``: the mlp's hidden width. Test accuracy on the task's validation split (MNIST:
    the 10,000 test images) after every epoch; ranks every ``log_every`` steps."""
    check_task(task, model_name, batch_size)
    torch.manual_seed(seed)
    model, layers = build_model(model_name, task.input_shape, task.num_classes, width)
    dense_counts = {"dense_params": parameter_count(model), "dense_flops": forward_flops(model, task.input_shape)}
    if theta is None:
        cls = torch.optim.SGD if base == "sgd" else torch.optim.AdamW
        opt = cls(model.parameters(), lr=lr, **({"momentum": momentum} if base == "sgd" else {}))
    else:
        to_low_rank(model, layers, rank=rank)
        opt = KLS(model, lr=lr, theta=theta, base=base, momentum=momentum, min_rank=min_rank)
    result = TrainResult(model=model)
    steps_per_epoch = len(task.train_y) // batch_size
    batches = task.batches(batch_size, generator=seed)
    bar = _progress(epochs * steps_per_epoch, progress, f"{model_name} theta={theta}")
    start, step = time.perf_counter(), 0
    for epoch in range(1, epochs + 1):
        for x, y in itertools.islice(batches, steps_per_epoch):
            loss = task.loss(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if theta is not None and (step % log_every == 0 or step == 1):
                result.ranks.append((step, opt.ranks()))
            if bar is not None:
                bar.update(1)
                if step % 20 == 0:
                    bar.set_postfix(loss=f"{float(loss.detach()):.3f}", **(opt.ranks() if theta is not None else {}))
        ev = task.evaluate(model)
        result.epochs.append({"epoch": epoch, "step": step, "test_loss": ev["loss"], "test_acc": ev["acc"],
                              "seconds": time.perf_counter() - start})
        if bar is not None:
            bar.write(f"epoch {epoch}: test acc {ev['acc']:.4f}, loss {ev['loss']:.4f}")
    if bar is not None:
        bar.close()
    result.counts = {**dense_counts, "params_reference": parameter_count(model, "reference"),
                     "params_full": parameter_count(model, "full"),
                     "flops_full": forward_flops(model, task.input_shape, "full"),
                     "flops_reference": forward_flops(model, task.input_shape, "reference")}
    return result


def result_rows(result: TrainResult, name: str, theta, seed: int, config: dict) -> list[dict]:
    """Rows in the weightcast.results schema: per-epoch test accuracy and loss, per-layer ranks over steps,
    final counts and compression (1 - low-rank / dense) in both conventions."""
    rows = []
    base = dict(benchmark="lowrank_train", name=name, seed=seed, config={**config, "theta": theta})
    for e in result.epochs:
        for metric in ("test_acc", "test_loss"):
            rows.append({**base, "metric": metric, "unit": "fraction" if metric == "test_acc" else "nats",
                         "x_name": "epoch", "x_value": e["epoch"], "value": e[metric]})
        rows.append({**base, "metric": "train_time", "unit": "s", "x_name": "epoch", "x_value": e["epoch"],
                     "value": e["seconds"]})
    for step, ranks in result.ranks:
        for layer, r in ranks.items():
            rows.append({**base, "metric": f"rank/{layer}", "unit": "rank", "x_name": "step", "x_value": step,
                         "value": r})
    for k, v in result.counts.items():
        rows.append({**base, "metric": k, "unit": "flops" if "flops" in k else "params", "value": v})
    for conv in ("reference", "full"):
        if f"params_{conv}" in result.counts:
            rows.append({**base, "metric": f"compression_{conv}", "unit": "fraction",
                         "value": 1 - result.counts[f"params_{conv}"] / result.counts["dense_params"]})
    return rows


def plot_ranks(results: dict[str, TrainResult], path) -> bool:
    """Rank of each low-rank layer over training steps, one panel per run; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    runs = {k: r for k, r in results.items() if r.ranks}
    if not runs:
        return False
    fig, axes = plt.subplots(1, len(runs), figsize=(4 * len(runs), 3.2), squeeze=False)
    for ax, (label, res) in zip(axes[0], runs.items()):
        steps = [s for s, _ in res.ranks]
        for layer in res.ranks[0][1]:
            ax.plot(steps, [r[layer] for _, r in res.ranks], label=layer)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(label, fontsize=9)
    axes[0][0].set_ylabel("rank")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _progress(total: int, enabled: bool, desc: str):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, mininterval=2.0)
