"""Forecast error of the latent forecaster against the linear one on zoo trajectories (validation split by run)
and on held-out trajectories, for several autoencoders (compression T/d).

For every window of ``--window`` consecutive snapshots of a run (windows start every ``--stride`` snapshots) and
every horizon h (in snapshots), each method forecasts the snapshot h after the window's last one:

* ``linear``: the per-element least-squares line (the linear forecaster);
* ``linear-half``: a control, the linear forecast's move halved (``last + (linear - last) / 2``): does the latent
  forecaster help by what it models, or only because it shrinks the move?
* ``farcast`` / ``wnn`` (other registered forecasters, ``--others``) when this checkout has them, through the
  same buckets;
* ``latent-residual[AE]`` / ``latent-direct[AE]`` / ``latent-farcast[AE]``:
  :class:`weightcast.forecasters.latent.LatentForecaster` with that autoencoder, run through a real
  :class:`weightcast.history.Bucket` (record = tokenise + encode, jump = forecast + decode_overwrite): residual
  and direct forms with the latent line, and the residual form with farcast's weights in latent space
  (``--direct`` / ``--farcast`` add the last two).

Every bucket starts from the run's first snapshot (step 0), which farcast keeps as its initial weights.

Error: ``||forecast - target|| / ||target - last||`` over all parameters (1.0 = as far off as not jumping at all,
below 1 = the jump helps; the relative error of the forecast *move*), and ``cos:`` the cosine between the
forecast move ``forecast - last`` and the true move ``target - last``. Reported as the median over windows, per
(task, arch) group and split.

    python benchmarks/latent_forecast_error.py --zoo /work/zoo-default --heldout DIR \\
        --ae AE1.safetensors AE2.safetensors ... --out benchmarks/results/latent

``--heldout DIR`` names a zoo of held-out runs; when DIR has no manifest it is built first with the runs the learned
forecasters are judged on (:func:`weightcast.forecasters.evaluate.held_out_specs`: configurations in
:data:`weightcast.zoo.HELD_OUT`, which no training zoo contains; MNIST needs ``--data-dir``).
"""
from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import torch

from weightcast import forecasters as wc_forecasters
from weightcast.cli_common import DocstringHelpFormatter, existing_dir, positive_int
from weightcast.forecasters import least_squares_line_coefficients
from weightcast.forecasters.evaluate import held_out_specs
from weightcast.forecasters.latent import LatentForecaster
from weightcast.history import Bucket
from weightcast.wsl import load_autoencoder
from weightcast.zoo import build_zoo
from weightcast.zoo.dataset import split_runs
from weightcast.zoo.store import load_trajectory, read_manifest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_results  # noqa: E402

def runs_of(zoo: Path, split: str | None) -> list[tuple[dict, dict, torch.Tensor]]:
    """(entry, snapshots, steps) of the runs of ``split`` (None: all runs)."""
    entries = read_manifest(zoo)["runs"]
    keep = None if split is None else set(split_runs(entries)[split == "val"])
    out = []
    for e in sorted(entries, key=lambda e: e["id"]):
        if (keep is None or e["id"] in keep) and not e.get("diverged"):
            snaps, steps = load_trajectory(zoo, e)
            out.append((e, snaps, steps))
    return out


def forecast_errors(snaps: dict, steps: torch.Tensor, window: int, horizons: list[int], stride: int,
                    forecasters: dict) -> dict[str, list[float]]:
    """{method@h: [relative errors]} over the windows of one run."""
    flat_traj = torch.cat([t.reshape(t.shape[0], -1) for t in snaps.values()], dim=1)
    S = flat_traj.shape[0]
    params = [t[0].clone() for t in snaps.values()]  # the run's first snapshot (farcast's initial weights)
    if int(steps[0]) != 0:
        raise ValueError(f"the trajectory starts at step {int(steps[0])}, not at the initial weights (step 0)")
    buckets = {}
    for name, factory in forecasters.items():
        f = factory()
        b = Bucket([torch.nn.Parameter(p.clone()) for p in params], window)
        f.attach(b)
        buckets[name] = (f, b)
    errors = defaultdict(list)
    for start in range(0, S - window - max(horizons) + 1, stride):
        rows = flat_traj[start:start + window]
        ws = [int(s) for s in steps[start:start + window]]
        last = rows[-1]
        for name, (_, b) in buckets.items():
            b.clear()
            for k in range(window):
                torch._foreach_copy_([t.view(-1) for t in b.tensors()], list(rows[k].split(b.numels)))
                b.record(ws[k])
        for h in horizons:
            target_i = start + window - 1 + h
            target, tstep = flat_traj[target_i], int(steps[target_i])
            denom = float((target - last).norm())
            if denom == 0:
                continue
            true_move = target - last
            c = least_squares_line_coefficients(ws, tstep).float()
            lin = (c[:, None] * rows).sum(0)
            errors[f"linear@{h}"].append(float((lin - target).norm()) / denom)
            errors[f"cos:linear@{h}"].append(float(torch.nn.functional.cosine_similarity(lin - last, true_move, 0)))
            damped = last + 0.5 * (lin - last)
            errors[f"linear-half@{h}"].append(float((damped - target).norm()) / denom)
            for name, (f, b) in buckets.items():
                if f.forecasts_are_linear():  # e.g. farcast: its coefficients over the raw window
                    coeffs = f.coefficients(list(b.slot_steps), tstep).to(torch.float32)
                    full = (coeffs[:, None] * b.history.float()).sum(0)  # farcast: w_0 is the last row
                    out = torch.cat([full[b.segment(i)] for i in range(len(b.params))])
                else:
                    out = torch.cat(f.forecast(b, list(b.slot_steps), tstep))
                errors[f"{name}@{h}"].append(float((out - target).norm()) / denom)
                errors[f"cos:{name}@{h}"].append(float(torch.nn.functional.cosine_similarity(out - last, true_move,
                                                                                             0)))
    return errors


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=DocstringHelpFormatter)
    parser.add_argument("--zoo", type=existing_dir, required=True, help="zoo whose validation runs are used")
    parser.add_argument("--heldout", type=Path, default=None, help="a zoo of held-out runs (all used)")
    parser.add_argument("--ae", type=Path, nargs="+", required=True, help="autoencoder weight files")
    parser.add_argument("--others", nargs="*", default=["farcast", "wnn"],
                        help="other registered forecasters to compare, when they exist")
    parser.add_argument("--window", type=positive_int, default=5, help="snapshots per window")
    parser.add_argument("--horizons", type=positive_int, nargs="+", default=[1, 3, 5], help="horizons in snapshots")
    parser.add_argument("--stride", type=positive_int, default=5, help="snapshots between window starts")
    parser.add_argument("--out", type=Path, required=True,
                        help="folder for forecast_error.csv (weightcast.results schema), .md and .png")
    parser.add_argument("--data-dir", default=None, help="MNIST, to build the held-out zoo")
    parser.add_argument("--direct", type=Path, nargs="*", default=[], help="autoencoders to run in direct form too")
    parser.add_argument("--farcast", type=Path, nargs="*", default=[],
                        help="autoencoders to run with farcast's weights in latent space too")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.heldout is not None and not (args.heldout / "manifest.json").is_file():
        build_zoo(args.heldout, held_out_specs(), args.data_dir, allow_held_out=True)
    forecasters = {}  # name -> factory (one forecaster per run: farcast keeps the run's initial weights)
    for path in args.ae:
        ae = load_autoencoder(path)
        tag = f"T{ae.token_size}/d{ae.latent}" + ("" if ae.hidden == 128 else f"/h{ae.hidden}") + \
            ("/tf" if ae.config().get("mixer") == "transformer" else "")
        forecasters[f"latent-residual[{tag}]"] = lambda ae=ae: LatentForecaster(ae)
        if path in args.direct:
            forecasters[f"latent-direct[{tag}]"] = lambda ae=ae: LatentForecaster(ae, residual=False)
        if path in args.farcast:
            forecasters[f"latent-farcast[{tag}]"] = lambda ae=ae: LatentForecaster(ae, trajectory="farcast")
    for name in args.others:
        if name in wc_forecasters.names():
            forecasters[name] = lambda name=name: wc_forecasters.get(name)
        else:
            print(f"forecaster {name!r} is not registered in this checkout: left out", file=sys.stderr)
    sources = [("val", args.zoo, "val")] + ([("held-out", args.heldout, None)] if args.heldout else [])
    table: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for split_name, zoo, split in sources:
        for entry, snaps, steps in runs_of(zoo, split):
            spec = entry["spec"]
            group = f"{split_name}:{spec['task']}-{spec['arch']}"
            if split_name == "held-out":
                group += "-" + "-".join(f"{k}{v}" for k, v in sorted(spec["model_kwargs"].items()))
            errs = forecast_errors(snaps, steps, args.window, args.horizons, args.stride, forecasters)
            for key, values in errs.items():
                table[group][key] += values
            print(f"{group} {entry['id']}: " + ", ".join(f"{k} {statistics.median(v):.3f}" for k, v in
                                                          sorted(errs.items()) if k.endswith(f"@{args.horizons[-1]}")),
                  flush=True)
    summary = {g: {k: {"median": statistics.median(v), "mean": statistics.fmean(v), "n": len(v)}
                   for k, v in sorted(m.items())} for g, m in sorted(table.items())}
    write_results(args.out / "forecast_error.csv", results_rows(summary, args.window, args.stride), device="cpu")
    methods = sorted({k.rsplit("@", 1)[0] for m in summary.values() for k in m},
                     key=lambda s: (s.startswith("cos:"), "latent" in s, s))
    text = markdown(summary, methods, args.horizons, args.window, args.stride)
    (args.out / "forecast_error.md").write_text(text)
    print(text)
    _plot(summary, methods, args.horizons, args.out / "forecast_error.png")
    _plot_sweep(summary, args.horizons[-1], args.out / "forecast_error_sweep.png")
    return 0


def results_rows(summary: dict, window: int, stride: int) -> list[dict]:
    """The summary in the weightcast.results schema: one row per (group, method, horizon); metric ``rel_error``
    (||forecast - target|| / ||target - last||) or ``cosine`` (forecast move vs true move), value the median over
    windows, x = horizon in snapshots; group, mean and window count in config."""
    rows = []
    for group, metrics in summary.items():
        for key, stats in metrics.items():
            method, h = key.rsplit("@", 1)
            rows.append({"benchmark": "latent_forecast_error", "name": method.removeprefix("cos:"),
                         "metric": "cosine" if method.startswith("cos:") else "rel_error", "unit": "ratio",
                         "x_name": "horizon_snapshots", "x_value": int(h), "value": stats["median"],
                         "config": {"group": group, "mean": stats["mean"], "windows": stats["n"],
                                    "window": window, "stride": stride}})
    return rows


def markdown(summary: dict, methods: list[str], horizons: list[int], window: int, stride: int) -> str:
    """Per horizon: a table of median relative errors and one of median cosines (groups x methods)."""
    lines = ["# Forecast error, latent vs linear (and farcast / wnn where present)", "",
             f"Windows of {window} consecutive snapshots, one every {stride} snapshots. Error: median over windows "
             "of ||forecast - target|| / ||target - last|| (1.0 = no better than not jumping). cos: median cosine "
             "between the forecast move and the true move. Groups: val = zoo validation runs (split by run), "
             "held-out = runs of a configuration no zoo contains.", ""]
    for h in horizons:
        for kind, label in (("err", "relative error"), ("cos", "cosine with the true move")):
            cols = [m for m in methods if m.startswith("cos:") == (kind == "cos")]
            lines += [f"### horizon {h} snapshots: {label}", "",
                      "| group | " + " | ".join(c.removeprefix("cos:") for c in cols) + " |",
                      "|---" * (len(cols) + 1) + "|"]
            for g, m in summary.items():
                lines.append(f"| {g} | " + " | ".join(f"{m[f'{c}@{h}']['median']:.3f}" if f"{c}@{h}" in m else "-"
                                                       for c in cols) + " |")
            lines.append("")
    return "\n".join(lines)


def _plot_sweep(summary, h: int, path) -> None:
    """Residual latent forecaster against the compression T/d: error and cosine per group (solid), with the
    linear forecaster (dashed) and, for the error, linear-half (dotted) at the same horizon."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, (g, m) in enumerate(summary.items()):
        color = f"C{i}"
        pts = sorted((int(k.split("T")[1].split("/")[0]) / int(k.split("/d")[1].split("]")[0]), k)
                     for k in m if k.startswith("latent-residual[") and k.endswith(f"@{h}") and k.count("/") == 1)
        if not pts:
            continue
        xs = [x for x, _ in pts]
        axes[0].plot(xs, [m[k]["median"] for _, k in pts], "o-", color=color, label=g)
        axes[0].axhline(m[f"linear@{h}"]["median"], color=color, ls="--", lw=0.8)
        axes[0].axhline(m[f"linear-half@{h}"]["median"], color=color, ls=":", lw=0.8)
        axes[1].plot(xs, [m["cos:" + k]["median"] for _, k in pts], "o-", color=color, label=g)
        axes[1].axhline(m[f"cos:linear@{h}"]["median"], color=color, ls="--", lw=0.8)
    for ax, label in zip(axes, ("median relative error (1 = no jump)", "median cosine with the true move")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("compression T/d")
        ax.set_ylabel(label)
    axes[0].set_title(f"latent-residual (solid) vs linear (dashed), linear-half (dotted); horizon {h}", fontsize=9)
    axes[1].set_title("direction of the forecast move", fontsize=9)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot: {path}")


def _plot(summary, methods, horizons, path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no plot", file=sys.stderr)
        return
    groups = list(summary)
    methods = [m for m in methods if not m.startswith("cos:")]
    h = horizons[-1]
    fig, ax = plt.subplots(figsize=(max(8, 1.4 * len(groups)), 4.5))
    width = 0.8 / len(methods)
    for i, m in enumerate(methods):
        vals = [summary[g].get(f"{m}@{h}", {}).get("median", float("nan")) for g in groups]
        ax.bar([x + i * width for x in range(len(groups))], vals, width, label=m)
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.set_yscale("log")  # the direct form is 5-50x off; the others sit around 1
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(groups))], groups, rotation=25, ha="right", fontsize=8)
    ax.set_ylabel("median ||forecast - target|| / ||target - last||")
    ax.set_title(f"forecast error at horizon {h} snapshots (lower is better; 1 = no jump)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot: {path}")


if __name__ == "__main__":
    raise SystemExit(main())
