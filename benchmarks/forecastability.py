"""How forecastable are the weights, and how forecastable is their average?

Trains one study task's model with AdamW (one seed), records every ``--record-every`` steps the raw weights and
exponential moving averages (EMA) of them with each ``--decays`` value, and for every window of 5 consecutive
records asks the per-element line (least squares through the window) and the shipped multi-horizon nowcasters
for the state k records later, k in ``--ks``. Reports each predictor's L1 error over all weights relative to
standing still (the window's last state): below 1 the predictor beats not moving.

The question it answers: a jump can only pay when the trajectory it forecasts has a drift larger than its noise.
Run on the study's held-out MNIST MLP:

    python benchmarks/forecastability.py --task mnist-mlp-deep --lr 3e-3 --data-dir ../shared/data \\
        --out benchmarks/results/long/forecastability_mnist-mlp-deep.csv

writes one row per (trajectory, predictor, k) in the schema of :mod:`weightcast.results` and a markdown table
beside it.
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from weightcast import data, models
from weightcast.forecasters import get
from weightcast.results import write_results
from weightcast.study import STUDY_TASKS
from weightcast.study.jumps import linear_predictor, nowcast_predictor
from weightcast.study.methods import ADAMW_WEIGHT_DECAY

WINDOW = 5


def record_trajectories(name: str, lr: float, decays: list[float], record_every: int, seed: int,
                        data_dir: str | None) -> tuple[list[str], dict[str, list[list[torch.Tensor]]]]:
    """Train ``name`` with AdamW for its study budget; return the parameter names and, per trajectory ("raw",
    "ema <decay>"), the recorded states (each a list of tensors in the model's parameter order)."""
    study = STUDY_TASKS[name]
    task = data.get_task(study.task, data_dir=data_dir, **study.task_kwargs)
    torch.manual_seed(seed)
    model = models.get(study.arch, **task.model_kwargs(), **study.model_kwargs)
    averages = {d: AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(d)) for d in decays}
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=ADAMW_WEIGHT_DECAY)
    states: dict[str, list[list[torch.Tensor]]] = {"raw": [], **{f"ema {d:g}": [] for d in decays}}
    batches = task.batches(study.batch_size, generator=seed)
    for step in range(1, study.budget + 1):
        x, y = next(batches)
        opt.zero_grad(set_to_none=True)
        task.loss(model(x), y).backward()
        opt.step()
        for average in averages.values():
            average.update_parameters(model)
        if step % record_every == 0:
            states["raw"].append([p.detach().clone() for p in model.parameters()])
            for d, average in averages.items():
                states[f"ema {d:g}"].append([p.detach().clone() for p in average.module.parameters()])
    return [n for n, _ in model.named_parameters()], states


def relative_errors(names, states, predictors, ks, stride: int) -> dict[tuple[str, int], float]:
    """Per (predictor, k): its L1 error summed over the windows (one every ``stride`` records) and all weights,
    over that of standing still."""
    total = {(p, k): 0.0 for p in ["still", *predictors] for k in ks}
    for start in range(0, len(states) - WINDOW - max(ks) + 1, stride):
        windows = [torch.stack([states[start + i][j] for i in range(WINDOW)]) for j in range(len(names))]
        truth = {k: states[start + WINDOW - 1 + k] for k in ks}
        forecasts = {"still": [[w[-1]] * len(ks) for w in windows]}
        forecasts.update({p: predict(windows, ks) for p, predict in predictors.items()})
        for p, preds in forecasts.items():
            for i, k in enumerate(ks):
                total[p, k] += sum(float((pred[i] - t).abs().sum()) for pred, t in zip(preds, truth[k]))
    return {(p, k): total[p, k] / total["still", k] for p in predictors for k in ks}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="mnist-mlp-deep", choices=sorted(STUDY_TASKS))
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--decays", type=float, nargs="+", default=[0.99, 0.995, 0.999])
    ap.add_argument("--record-every", type=int, default=100)
    ap.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    ap.add_argument("--stride", type=int, default=2, help="records between the starts of two windows")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", type=Path, required=True, help="CSV to write (a .md table is written beside it)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    names, trajectories = record_trajectories(args.task, args.lr, args.decays, args.record_every, args.seed,
                                              args.data_dir)
    predictors = {"line": linear_predictor(WINDOW)}
    for name in ("nowcast", "nowcast-graph"):
        predictors[name] = nowcast_predictor(get(name), names)
    rows, lines = [], []
    for label, states in trajectories.items():
        errors = relative_errors(names, states, predictors, args.ks, args.stride)
        for (p, k), value in errors.items():
            rows.append({"benchmark": "forecastability", "name": f"{p} on {label}", "metric": "l1_vs_still",
                         "unit": "ratio", "x_name": "k", "x_value": k, "seed": args.seed, "value": value,
                         "config": {"task": args.task, "lr": args.lr, "record_every": args.record_every,
                                    "window": WINDOW, "stride": args.stride}})
        for p in predictors:
            cells = " | ".join(f"{errors[p, k]:.3f}" for k in args.ks)
            mean = statistics.mean(errors[p, k] for k in args.ks)
            lines.append(f"| {label} | {p} | {cells} | {mean:.3f} |")
    write_results(args.out, rows, device="cpu")
    header = " | ".join(f"k={k}" for k in args.ks)
    table = [f"L1 error relative to standing still, {args.task}, AdamW lr {args.lr:g}, seed {args.seed}, "
             f"records {args.record_every} steps apart, window {WINDOW}:", "",
             f"| trajectory | predictor | {header} | mean |", "|---|---|" + "---|" * (len(args.ks) + 1), *lines]
    args.out.with_suffix(".md").write_text("\n".join(table) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
