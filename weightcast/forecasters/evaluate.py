"""Forecast error of forecasters on zoo trajectories, through the same path the optimizer jumps with.

For each run and window (W snapshots ``stride`` records apart, at every ``every``-th start) the snapshots are
recorded into a real :class:`weightcast.history.Bucket` (built from the run's initial weights, so farcast's
``w_0`` row is the run's step-0 snapshot), and each forecaster predicts the snapshot ``offset`` records after the
newest one (horizon ``offset / stride`` record intervals). Reported per (group, horizon, forecaster):

* ``rel_l2``: mean over windows of ``||w_hat - w*|| / ||w*||`` over all the model's parameters;
* ``vs_persistence``: mean of ``||w_hat - w*|| / ||w_t - w*||`` (below 1: better than not moving at all).

    python -m weightcast.forecasters.evaluate --zoo /work/zoo-default --held-out DIR --build-held-out \
        --data-dir ../shared/data --out benchmarks/results/learned

``--build-held-out`` first trains the runs of :func:`held_out_specs` into DIR (resumable; about 25 min on one
busy CPU core), with ``allow_held_out=True``: they must never go into a training zoo.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from .. import ops
from ..history import Bucket
from . import get
from .train import ZooWindows

HORIZONS = ((1, 1), (2, 5), (1, 5))


def held_out_specs() -> list:
    """Runs of the held-out tasks (weightcast.zoo.spec.HELD_OUT) used to judge forecasters: LeNet-5 width 4 on
    MNIST, ResNet-18 width 0.125 on MNIST, a 4-layer GPT on chars; one SGD (momentum 0.9) and one AdamW run each."""
    from ..zoo.spec import RunSpec

    sgd, adamw = ("sgd", {"momentum": 0.9}), ("adamw", {"weight_decay": 0.01})
    image = dict(steps=600, record_every=10, eval_every=100, eval_size=1000, seed=100)
    specs = [RunSpec("mnist", "lenet5", {"width": 4}, name, lr, kw, **image)
             for (name, kw), lr in ((sgd, 0.05), (adamw, 1e-3))]
    specs += [RunSpec("chars", "gpt", {"n_layer": 4, "n_head": 4, "n_embd": 48}, name, lr, kw, seed=100,
                      batch_size=16, steps=600, record_every=10, eval_every=100, eval_size=64)
              for (name, kw), lr in ((sgd, 0.2), (adamw, 3e-3))]
    specs += [RunSpec("mnist", "resnet18", {"width": 0.125}, name, lr, kw, seed=100, batch_size=32, steps=300,
                      record_every=10, eval_every=100, eval_size=500)
              for (name, kw), lr in ((sgd, 0.05), (adamw, 1e-3))]
    return specs  # (stride, offset): h = 1, 2.5 (the study's schedule), 5 record intervals


def run_errors(flat: torch.Tensor, steps: torch.Tensor, shapes, forecasters: dict, window: int, stride: int,
               offset: int, every: int) -> dict[str, list[tuple[float, float]]]:
    """(rel_l2, vs_persistence) per window of one run (T, P) for each named forecaster."""
    out = {name: [] for name in forecasters}
    last_start = flat.shape[0] - 1 - offset - (window - 1) * stride
    for start in range(0, last_start + 1, every):
        rows = [start + k * stride for k in range(window)]
        target_row = rows[-1] + offset
        true = flat[target_row]
        base = (flat[rows[-1]] - true).norm()
        for name, forecaster in forecasters.items():
            params, at = [], 0
            for shape in shapes:
                n = int(torch.tensor(shape).prod()) if shape else 1
                params.append(flat[0, at:at + n].reshape(shape).clone())
                at += n
            bucket = Bucket(params, window, forecaster.history_dtype)
            forecaster.attach(bucket)
            for r in rows:
                torch._foreach_copy_([p.view(-1) for p in params], list(flat[r].split(bucket.numels)))
                bucket.record(int(steps[r]))
            target = int(steps[target_row])
            if forecaster.forecasts_are_linear():
                pred = [torch.empty(n, dtype=bucket.dtype) for n in bucket.numels]
                coeffs = forecaster.coefficients(list(bucket.slot_steps), target).to(torch.float64)
                ops.lincomb_forecast(pred, bucket.history, bucket.offsets, coeffs, None)
            else:
                pred = forecaster.forecast(bucket, list(bucket.slot_steps), target)
            err = (torch.cat(pred) - true).norm()
            out[name].append((float(err / true.norm()), float(err / base) if base > 0 else float("nan")))
    return out


def evaluate(groups: dict[str, ZooWindows], forecasters: dict, window: int = 5, every: int = 4) -> list[dict]:
    """Rows {group, h, forecaster, rel_l2, vs_persistence, windows} for every group, horizon and forecaster."""
    rows = []
    for group, data in groups.items():
        for stride, offset in HORIZONS:
            acc = {name: [] for name in forecasters}
            for r, entry in enumerate(data.runs):
                shapes = [tuple(t["shape"]) for t in entry["tensors"]]
                res = run_errors(data.flat[r], data.steps[r], shapes, forecasters, window, stride, offset, every)
                for name in forecasters:
                    acc[name] += res[name]
            for name, values in acc.items():
                if not values:
                    continue
                t = torch.tensor(values)
                rows.append({"group": group, "h": offset / stride, "forecaster": name,
                             "rel_l2": float(t[:, 0].mean()), "vs_persistence": float(t[:, 1].nanmean()),
                             "windows": len(values)})
    return rows


def markdown(rows: list[dict]) -> str:
    """Table: one line per (group, h), columns rel_l2 (vs persistence) per forecaster."""
    names = list(dict.fromkeys(r["forecaster"] for r in rows))
    lines = ["| group | h (record intervals) | windows | " + " | ".join(names) + " |",
             "|---|---|---|" + "---|" * len(names)]
    keys = list(dict.fromkeys((r["group"], r["h"]) for r in rows))
    for group, h in keys:
        cells = {r["forecaster"]: r for r in rows if (r["group"], r["h"]) == (group, h)}
        n = next(iter(cells.values()))["windows"]
        lines.append(f"| {group} | {h:g} | {n} | " + " | ".join(
            f"{cells[m]['rel_l2']:.3e} ({cells[m]['vs_persistence']:.3f})" for m in names) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zoo", required=True, help="zoo the forecasters were trained on (its val split is used)")
    parser.add_argument("--held-out", default=None, help="a zoo of held-out tasks (all its runs are used)")
    parser.add_argument("--forecasters", nargs="+", default=["linear", "farcast", "wnn"],
                        help="names, or name=FILE for a learned forecaster file")
    parser.add_argument("--build-held-out", action="store_true", help="train the held-out runs into --held-out first")
    parser.add_argument("--data-dir", default=None, help="MNIST folder, for --build-held-out")
    parser.add_argument("--every", type=int, default=4, help="use every n-th window start")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.build_held_out:
        from ..zoo import build_zoo

        if not args.held_out or not args.data_dir:
            parser.error("--build-held-out needs --held-out DIR and --data-dir (MNIST)")
        build_zoo(args.held_out, held_out_specs(), data_dir=args.data_dir, allow_held_out=True)
    forecasters = {}
    for item in args.forecasters:
        name, _, path = item.partition("=")
        label = name if not path else f"{name}:{Path(path).stem}"
        forecasters[label] = get(name, path=path) if path else get(name)
    groups = {}
    val = ZooWindows(args.zoo, "val", 5, 5)
    for key in sorted({(e["spec"]["task"], e["spec"]["arch"]) for e in val.runs}):
        groups[f"zoo-val {key[0]}-{key[1]}"] = ZooWindows(args.zoo, "val", 5, 5, task=key[0], arch=key[1])
    if args.held_out:
        held = ZooWindows(args.held_out, "train", 5, 5, val_fraction=0.0)
        for key in sorted({(e["spec"]["task"], e["spec"]["arch"]) for e in held.runs}):
            groups[f"held-out {key[0]}-{key[1]}"] = ZooWindows(args.held_out, "train", 5, 5, task=key[0],
                                                               arch=key[1], val_fraction=0.0)
    rows = evaluate(groups, forecasters, every=args.every)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "forecast_errors.json").write_text(json.dumps(rows, indent=1))
    table = markdown(rows)
    (args.out / "forecast_errors.md").write_text(
        "Forecast error: mean rel. L2 ||w_hat - w*|| / ||w*|| (in brackets: / ||w_t - w*||, below 1 beats "
        "not moving).\n\n" + table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
