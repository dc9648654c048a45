"""Accuracy vs sparsity of every pruning method on the benchmark networks and the held-out models.

    python benchmarks/prune_accuracy.py --data-dir ../shared/data --zoo ZOO
    (the validation diagnosis reads the training zoo: `weightcast prune zoo --zoo ZOO` first, or --skip-validation)

Networks (the runs of weightcast.prune.zoo.held_out_specs(), none in the hypernetwork's training zoo, pruned from
their committed trained weights: benchmarks/prune_models.py, so that every machine prunes the same models): the MLP
784-40-20-10 without bias (seed 100, SGD) and LeNet-5 (width 1) on MNIST, and three more held-out models (the MLP
784-40-20-10 with seed 101 and AdamW, an MLP 784-64-32 with seed 102, LeNet-5 on digits with seed 104). Methods: random,
magnitude (global, per layer), LAMP (global), hypernet (shipped weights, MaskHypernetwork.prune: global), layer-wise
OBS with its default allocation ("relative": the cheapest steps over all layers' traces, each layer's relative to
its output energy; "obs-magnitude": each layer losing what global magnitude removes there; "obs-global": the raw
cheapest steps; "obs-uniform": OBC's uniform allocation), WoodFisher, CHITA (weightcast.prune.fisher.DEFAULT_STAGES
stages; CHITA with the full Fisher, WoodFisher with the Fisher blocks of FISHER_SETTINGS); calibration: the first
1,024 training examples (``--calibration``), for WoodFisher the first 8,192 (FISHER_SETTINGS; every row's config
records its size, each table says it). Sparsities 0.5, 0.7, 0.8, 0.9, 0.95, 0.98. For each: validation accuracy
one-shot and after recovery (BatchNorm recalibration -- a no-op for these BN-free networks -- then
``--finetune-steps`` Adam steps on the masked model), the achieved sparsity, and the seconds the method took (OBS:
its shared preparation -- Hessians and traces -- plus the per-sparsity step; WoodFisher/CHITA: all their stages,
gradients included). Writes, per network, benchmarks/results/prune/prune_<network>.csv (weightcast.results schema),
a markdown table and a PNG; prune_seeds.csv (OBS with two allocations, WoodFisher and CHITA at s = 0.9 on the two
MLPs 784-40-20-10 with two more calibration draws); prune_validation.csv (unless --skip-validation: the diagnosis on
the training zoo's validation runs -- data-free methods at s = 0.8, 0.9, 0.95 and, at 0.9, the ceilings that read
data: validation_rows); and summary.md (the done-means checks computed from the rows, then the diagnosis).
"""
from __future__ import annotations

import argparse
import copy
import functools
import json
import statistics
import time
from pathlib import Path

import torch

from common import RESULTS, row_config, write_results
from prune_models import load_all
from weightcast.data import get_task
from weightcast.prune import apply_masks, finetune, hypernet, keep_top, recalibrate_bn, sparsity_of, zoo
from weightcast.prune.api import masks_and_weights
from weightcast.prune.allocation import search_offsets
from weightcast.prune.fisher import CHITA_STARTS, DEFAULT_STAGES, prune_in_stages
from weightcast.prune.layers import prunable_layers, weight_of
from weightcast.prune.obs import DEFAULT_ALLOCATION, obs_prune, prepare as obs_prepare
from weightcast.prune.scores import lamp_scores
from weightcast.results import read_results

SPARSITIES = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98)
METHODS = ("random", "magnitude", "magnitude-layer", "lamp", "hypernet", "obs", "obs-magnitude", "obs-global",
           "obs-uniform", "woodfisher", "chita")
NETWORKS = zoo.HELD_OUT_NAMES  # the names of held_out_specs(), in its order
SEED_NETWORKS = ("mlp", "mlp-seed101")   # the two MLPs 784-40-20-10 (training seeds 100, 101)
SEED_METHODS = ("magnitude", "obs", "obs-magnitude", "obs-global", "woodfisher", "chita")
DATA_METHODS = ("obs", "obs-magnitude", "obs-global", "obs-uniform", "woodfisher", "chita")
CALIBRATION_SEEDS = (1, 2)
# WoodFisher's calibration examples (at most: the digits task has fewer) and Fisher blocks, chosen on the prune
# zoo's validation MLPs (benchmarks/prune_tune_fisher.py, prune_tune_fisher.md); the other data-based methods
# (CHITA too: with these it ended where WoodFisher did there) read --calibration examples, CHITA the full Fisher
FISHER_SETTINGS = {"woodfisher": {"calibration": 8192, "block_size": 2048}}
OUT = RESULTS / "prune"


@functools.cache
def shipped_hypernet() -> hypernet.MaskHypernetwork:
    """The shipped hypernetwork (loaded once)."""
    return hypernet.load_default()


def ungated(net: hypernet.MaskHypernetwork) -> hypernet.MaskHypernetwork:
    """A copy of ``net`` that uses its learned change at full strength at every s and never WoodFisher on its
    priors: the validation diagnosis's "hypernet-ungated"."""
    out = copy.deepcopy(net)
    out.active.fill_(True)
    out.shrink.fill_(1.0)
    out.calibrated = {}
    return out


def obs_allocation(method: str) -> str:
    """The OBS allocation of a method name: "obs-<allocation>", plain "obs" the default."""
    return method.partition("-")[2] or DEFAULT_ALLOCATION


def settings(method: str, sparsity: float | None = None, prior: str | None = None) -> dict:
    """What decides a method's rows besides the network, the ``--calibration`` size and the fine-tuning steps:
    the stages of WoodFisher and CHITA (and of their masks), their FISHER_SETTINGS (calibration size and Fisher
    blocks, which replace ``--calibration``), the supports CHITA's IHT may start from; OBS's allocation (and its
    mask's); for the hypernetwork (and its paired rows, "hypernet-...") at ``sparsity`` on a model of input prior
    ``prior`` (:meth:`MaskHypernetwork.prior_for`), that prior and the shipped hypernetwork's
    :meth:`MaskHypernetwork.decision` there -- WoodFisher on the prior (a digest of it and of the calibration
    setting) or the strength of its learned change (and a digest of its network) -- so that a change of its gate
    at one sparsity leaves the rows of the others valid; "hypernet-ungated" the same of :func:`ungated`. Written
    into each row's config, so that a results file says what made it and the cache reuses only rows made the
    same way. Raises ValueError for a hypernetwork method without ``sparsity``."""
    base = method.removesuffix("-mask")
    if base in DEFAULT_STAGES:
        out = {"stages": DEFAULT_STAGES[base]}
        if base == "chita":
            out["iht_starts"] = list(CHITA_STARTS)
        return {**out, **FISHER_SETTINGS.get(base, {})}
    if base.startswith("obs"):
        return {"allocation": obs_allocation(base)}
    if method.startswith("hypernet"):
        if sparsity is None:
            raise ValueError(f"the settings of {method} depend on the sparsity: pass it")
        net = ungated(shipped_hypernet()) if method == "hypernet-ungated" else shipped_hypernet()
        return {"hypernet_prior": prior, **net.decision(sparsity, prior)}
    return {}


def row_settings(row: dict) -> dict:
    """:func:`settings` of a results row (made now or read back from a CSV) at its sparsity and recorded
    hypernetwork prior; for a prior the shipped hypernetwork no longer has, settings no row holds (the row is
    stale). The prior is the one recorded: whether the model's prior is still that one is for the callers that
    hold the model to check (they expect it, ``hypernet_prior``)."""
    prior = row_config(row).get("hypernet_prior")
    if row["name"].startswith("hypernet") and prior is not None and prior not in shipped_hypernet().priors:
        return {"hypernet_prior": f"{prior} (no longer a prior of the shipped hypernetwork)"}
    return settings(row["name"], float(row["x_value"]), prior)


def fisher_setting(method: str, key: str, default=None):
    """``key`` ("calibration", "block_size") of ``method``'s FISHER_SETTINGS (a "-mask" method: its base's), else
    ``default``."""
    return FISHER_SETTINGS.get(method.removesuffix("-mask"), {}).get(key, default)


def load_cache(cached: Path | None, expected: dict, prior: str | None = None) -> list[dict]:
    """The rows of the ``--cache`` file ``cached`` whose config holds ``expected`` and the row's
    :func:`row_settings` (made the same way as now) and, for the hypernetwork's rows, ``prior``: the model's input
    prior now (:meth:`MaskHypernetwork.prior_for`); none without a cache or file. The callers make the rest
    again (for the hypernetwork: the sparsities where its decision changed, :func:`split_done`), saying so."""
    if cached is None or not cached.exists():
        return []
    rows = json.loads(cached.read_text())
    kept = [r for r in rows if row_config(r).items() >= {**expected, **row_settings(r)}.items()
            and (not r["name"].startswith("hypernet") or row_config(r).get("hypernet_prior") == prior)]
    if len(kept) < len(rows):
        print(f"{cached}: {len(rows) - len(kept)} of {len(rows)} rows made another way (expected {expected} and "
              "each method's settings); making them again", flush=True)
    return kept


def split_done(rows: list[dict], sparsities, keys: set[tuple[str, str, str | None]]
               ) -> tuple[list[dict], list[float]]:
    """(the rows of ``rows`` at the sparsities of ``sparsities`` where they hold every (method, metric, stage) of
    ``keys``, the other sparsities: those to make)."""
    found: dict[float, set] = {}
    for r in rows:
        found.setdefault(float(r["x_value"]), set()).add((r["name"], r["metric"], row_config(r).get("stage")))
    done = {s for s in sparsities if keys <= found.get(s, set())}
    return [r for r in rows if float(r["x_value"]) in done], [s for s in sparsities if s not in done]


def save_cache(cached: Path | None, rows: list[dict]) -> None:
    """Write ``rows`` to the ``--cache`` file ``cached`` (None: no cache)."""
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps(rows))


def method_pruner(method: str, model, data, net):
    """(prepare seconds, function sparsity -> (masks, weights or None))."""
    start = time.perf_counter()
    layers = prunable_layers(model)
    layer_keys = [f"{n}.weight" for n in layers]
    if method == "hypernet":   # its scores, or WoodFisher on its input prior's samples where calibrated
        return 0.0, lambda s: net.prune(model, s)
    if method in ("random", "magnitude", "magnitude-layer", "lamp"):
        scope = "layer" if method == "magnitude-layer" else "global"

        def run(s):
            if method == "random":
                g = torch.Generator().manual_seed(int(s * 1000))
                scores = {f"{n}.weight": torch.rand(weight_of(m).shape, generator=g) for n, m in layers.items()}
            elif method == "lamp":
                scores = dict(zip(layer_keys, lamp_scores([weight_of(m) for m in layers.values()])))
            else:
                scores = {f"{n}.weight": weight_of(m).detach().abs() for n, m in layers.items()}
            return keep_top(scores, s, scope), None
        return 0.0, run
    x, y = data
    if method.startswith("obs"):
        state = obs_prepare(model, x)
        prep = time.perf_counter() - start
        return prep, lambda s: masks_and_weights(obs_prune(model, s, x, allocation=obs_allocation(method),
                                                           state=state))
    block_size = fisher_setting(method, "block_size")
    return 0.0, lambda s: masks_and_weights(prune_in_stages(model, s, x, y, method, block_size=block_size))


def other_model_warning(path: Path, run: str, dense: float) -> str | None:
    """A warning when the results file ``path`` has a dense row of ``run`` whose accuracy is not ``dense``: the
    file was made from another model of that run (before the held-out models were committed, each machine pruned
    its own zoo build, and zoo builds depend on the CPU: weightcast/prune/README.md), so its figures will not
    match the file's. None when they agree or there is nothing to compare."""
    if not path.exists():
        return None
    for row in read_results(path):
        if row["name"] == "dense" and row_config(row)["run"] == run and float(row["value"]) != dense:
            return (f"warning: {run} has dense accuracy {dense:.4f} here but {float(row['value']):.4f} in {path} "
                    f"(made on {row['device']}): the file was made from another model of that run, so every "
                    "figure of it will differ from the file's")
    return None


def check_dense(name: str, entry: dict, dense: float, examples: int) -> None:
    """Warn when the committed model ``name`` (``entry`` from prune_models.load_all) has a dense accuracy ``dense``
    over ``examples`` validation examples more than one example from its card's."""
    if abs(dense - entry["dense_acc"]) * examples > 1.5:
        print(f"warning: {name} has dense accuracy {dense:.4f} here but {entry['dense_acc']:.4f} in its card: "
              "this machine evaluates the committed model differently, so every figure may differ", flush=True)


def run_network(name: str, entry: dict, model, task, net, args) -> list[dict]:
    dense = task.evaluate(model)["acc"]
    check_dense(name, entry, dense, task.eval_size)
    warning = other_model_warning(args.out / f"prune_{name}.csv", entry["id"], dense)
    if warning:
        print(warning, flush=True)
    rows = [dict(benchmark=f"prune-{name}", name="dense", metric="acc", unit="fraction", x_name="sparsity",
                 x_value=0.0, value=dense, config={"stage": "dense", "run": entry["id"]})]
    for method in args.methods:
        cached = args.cache / f"{name}-{method}.json" if args.cache else None
        base = {"run": entry["id"], "calibration": args.calibration, "finetune_steps": args.finetune_steps}
        prior = net().prior_for(model) if method == "hypernet" else None
        made, todo = split_done(load_cache(cached, base, prior), SPARSITIES,
                                {(method, "acc", "one-shot"), (method, "acc", "recovered"),
                                 (method, "achieved_sparsity", None), (method, "time", None)})
        if todo:
            data = task.eval_tensors("train", fisher_setting(method, "calibration", args.calibration))
            prep, run = method_pruner(method, model, data, net() if method == "hypernet" else None)
        for s in todo:
            config = {**base, **settings(method, s, prior)}
            pruned = copy.deepcopy(model)
            start = time.perf_counter()
            masks, weights = run(s)
            apply_masks(pruned, masks, weights)
            seconds = prep + time.perf_counter() - start
            one_shot = task.evaluate(pruned)["acc"]
            recalibrate_bn(pruned, [data[0]])
            finetune(pruned, task.batches(128, 0), args.finetune_steps, lr=1e-3)
            recovered = task.evaluate(pruned)["acc"]
            common = dict(benchmark=f"prune-{name}", name=method, x_name="sparsity", x_value=s)
            made += [dict(common, metric="acc", unit="fraction", value=one_shot,
                          config={**config, "stage": "one-shot"}),
                     dict(common, metric="acc", unit="fraction", value=recovered,
                          config={**config, "stage": "recovered"}),
                     dict(common, metric="achieved_sparsity", unit="fraction", value=sparsity_of(pruned),
                          config=config),
                     dict(common, metric="time", unit="s", value=seconds, config={**config, "prepare_s": prep})]
            print(f"{name} {method} s={s}: one-shot {one_shot:.4f} recovered {recovered:.4f} "
                  f"({seconds:.2f} s)", flush=True)
        made.sort(key=lambda r: SPARSITIES.index(float(r["x_value"])))
        save_cache(cached, made)
        rows += made
    return rows


VALIDATION_SPARSITIES = (0.8, 0.9, 0.95)
# data-free, at every s of VALIDATION_SPARSITIES; then the ceilings that read data, at s = 0.9 only
VALIDATION_FREE = ("magnitude", "lamp", "hypernet", "hypernet-ungated")
VALIDATION_DATA = ("searched-allocation", "obs-mask", "woodfisher-mask", "woodfisher")


def validation_pruner(method: str, model, task, net, without_gate, calibration: int):
    """Function sparsity -> (masks, weights or None) of a method of the validation diagnosis: the data-free
    ones (``hypernet-ungated``: ``without_gate``, :func:`ungated`), the offsets searched
    with the run's training data (allocation.search_offsets, the best layer allocation of magnitude's scores the
    hypernetwork's offsets can aim at), OBS's and WoodFisher's masks without their weight updates, and
    WoodFisher."""
    layers = prunable_layers(model)
    keys = [f"{n}.weight" for n in layers]
    weights = [weight_of(m).detach() for m in layers.values()]
    data = task.eval_tensors("train", fisher_setting(method, "calibration", calibration))
    if method in ("magnitude", "lamp", "hypernet"):
        return method_pruner(method, model, data, net)[1]
    if method == "hypernet-ungated":
        return lambda s: (keep_top(without_gate.scores(model, s), s), None)
    if method == "searched-allocation":
        def run(s):
            x, y = task.eval_tensors("train", 2048)
            offsets = search_offsets(model, hypernet.prepare(model, net.token_size), x, y, s).offsets.tolist()
            return keep_top({k: w.abs().log() + b for k, w, b in zip(keys, weights, offsets)}, s), None
        return run
    base = method.removesuffix("-mask")
    if base == method:
        return method_pruner(method, model, data, None)[1]
    return lambda s: (method_pruner(base, model, data, None)[1](s)[0], None)


def validation_rows(root: Path, data_dir, net, args) -> list[dict]:
    """One-shot validation accuracy of VALIDATION_FREE at VALIDATION_SPARSITIES and of VALIDATION_DATA at
    s = 0.9 on the training zoo's validation runs (zoo.validation_ids(): the runs the hypernetwork's early
    stopping and gate were chosen on, never the held-out models)."""
    val_ids = zoo.validation_ids()
    specs = [s for s in zoo.train_specs() if s.run_id in val_ids]
    without_gate = ungated(net)
    tasks, rows = {}, []
    for entry, model in zoo.load_models(root / "train", specs):
        task_name = entry["spec"]["task"]
        task = tasks.setdefault(task_name, get_task(task_name, data_dir))
        prior = net.prior_for(model)
        for method in VALIDATION_FREE + VALIDATION_DATA:
            cached = args.cache / f"validation-{entry['id']}-{method}.json" if args.cache else None
            calibration = fisher_setting(method, "calibration", args.calibration)
            base = {"run": entry["id"], "stage": "one-shot", "calibration": calibration}
            made, todo = split_done(load_cache(cached, base, prior),
                                    VALIDATION_SPARSITIES if method in VALIDATION_FREE else (0.9,),
                                    {(method, "acc", "one-shot")})
            run = validation_pruner(method, model, task, net, without_gate, args.calibration) if todo else None
            for s in todo:
                pruned = copy.deepcopy(model)
                apply_masks(pruned, *run(s))
                made.append(dict(benchmark="prune-validation", name=method, metric="acc", unit="fraction",
                                 x_name="sparsity", x_value=s, value=task.evaluate(pruned)["acc"],
                                 config={**base, **settings(method, s, prior)}))
                print(f"validation {entry['id']} {method} s={s}: {made[-1]['value']:.4f}", flush=True)
            made.sort(key=lambda r: float(r["x_value"]))
            save_cache(cached, made)
            rows += made
    return rows


def stale_methods(rows: list[dict]) -> list[str]:
    """The methods of ``rows`` (read back from a results file) whose rows' configs lack the method's current
    :func:`row_settings`: made another way (e.g. by another hypernetwork) than a run now would. Without the
    models it cannot see a model whose input prior changed; the benchmarks, which hold them, make such rows
    again."""
    return sorted({r["name"] for r in rows if not row_config(r).items() >= row_settings(r).items()})


def validation_summary(rows: list[dict], stale: list[str]) -> str:
    """Per validation run, each method's one-shot gain over global magnitude (points), from the rows of
    prune_validation.csv (read back: strings), captioned with the CPU that pruned them and naming ``stale``, the
    methods whose rows were made another way than now (:func:`stale_methods` of ``rows``)."""
    if not rows:
        return "The validation file has no rows: run without --skip-validation to make them.\n"
    acc = {(row_config(r)["run"], r["name"], float(r["x_value"])): float(r["value"]) for r in rows}
    runs = list(dict.fromkeys(row_config(r)["run"] for r in rows))
    lines = [f"Validation runs of the training zoo, pruned on the {rows[0]['device']} (the runs are local zoo "
             "builds, which depend on the CPU; where the hypernetwork's checkpoint was chosen -- its gate may "
             "have been chosen on another build of them: its card's `gate`; no held-out model): one-shot accuracy "
             "gain over global magnitude (points). hypernet: as shipped (gated); "
             "hypernet-ungated: its learned change at full strength at every s. With data (ceilings, s = 0.9): "
             "searched-allocation -- the per-layer offsets of magnitude's scores searched on 2,048 training "
             "examples (the target the hypernetwork's offsets are fitted to); obs-mask, woodfisher-mask -- their "
             "masks without the weight updates; woodfisher -- with them.", ""]
    if stale:
        lines[0:0] = [f"**Stale:** the rows of {', '.join(stale)} were made with other settings than the current "
                      "ones (e.g. another hypernetwork): run without --skip-validation to redo them.", ""]
    free = [m for m in VALIDATION_FREE if m != "magnitude"]
    for s in VALIDATION_SPARSITIES:
        methods = free + (list(VALIDATION_DATA) if s == 0.9 else [])
        lines += [f"s = {s}:", "", "| run | magnitude (%) | " + " | ".join(methods) + " |",
                  "|---" * (len(methods) + 2) + "|"]
        gains = {m: [] for m in methods}
        for run in runs:
            mag = acc[(run, "magnitude", s)]
            cells = []
            for m in methods:
                gains[m].append(100 * (acc[(run, m, s)] - mag))
                cells.append(f"{gains[m][-1]:+.2f}")
            lines.append(f"| {run} | {100 * mag:.2f} | " + " | ".join(cells) + " |")
        lines.append("| mean (runs below magnitude) | | " + " | ".join(
            f"{statistics.mean(g):+.2f} ({sum(x < 0 for x in g)})" for g in gains.values()) + " |")
        lines.append("")
    return "\n".join(lines)


def seed_rows(name: str, entry: dict, model, task, main_rows: list[dict], args) -> list[dict]:
    """One-shot accuracy at s = 0.9 of the data-based methods on more calibration draws (``next(task.batches(n,
    seed))`` for each seed of CALIBRATION_SEEDS, n the method's calibration size: ``args.calibration`` or its
    FISHER_SETTINGS) besides the first n training examples of the main table (taken from ``main_rows``), and
    global magnitude's (data-free: once)."""
    rows = []
    for r in main_rows:
        if r["metric"] == "acc" and r["x_value"] == 0.9 and _stage(r) == "one-shot" and r["name"] in SEED_METHODS:
            rows.append(dict(r, benchmark="prune-seeds", config={"network": name, "run": entry["id"],
                                                                   "calibration_seed": None, "stage": "one-shot",
                                                                   "calibration": args.calibration,
                                                                   **settings(r["name"])}))
    for method in SEED_METHODS[1:]:
        cached = args.cache / f"seeds-{name}-{method}.json" if args.cache else None
        calibration = fisher_setting(method, "calibration", args.calibration)
        reused = load_cache(cached, {"network": name, "run": entry["id"], "calibration": calibration})
        if reused is not None:
            rows += reused
            continue
        new = []
        for seed in CALIBRATION_SEEDS:
            data = next(task.batches(calibration, seed))
            pruned = copy.deepcopy(model)
            masks, weights = method_pruner(method, model, data, None)[1](0.9)
            apply_masks(pruned, masks, weights)
            new.append(dict(benchmark="prune-seeds", name=method, metric="acc", unit="fraction", x_name="sparsity",
                            x_value=0.9, value=task.evaluate(pruned)["acc"],
                            config={"network": name, "run": entry["id"], "calibration_seed": seed,
                                    "stage": "one-shot", "calibration": args.calibration, **settings(method)}))
            print(f"{name} {method} s=0.9 calibration seed {seed}: {new[-1]['value']:.4f}", flush=True)
        save_cache(cached, new)
        rows += new
    return rows


def seed_summary(rows: list[dict]) -> str:
    """Median and range over (network, calibration draw) of each data-based method's gain over global
    magnitude at s = 0.9."""
    magnitude = {row_config(r)["network"]: r["value"] for r in rows if r["name"] == "magnitude"}
    lines = [f"MLP 784-40-20-10 ({', '.join(magnitude)}) at s=0.9, one-shot, over the networks and calibration "
             "draws (the main tables' calibration batch, then random training batches of the same size with seeds "
             f"{', '.join(map(str, CALIBRATION_SEEDS))}): gain over global magnitude (points)", "",
             "| network | method | median | min | max | draws |", "|---|---|---|---|---|---|"]
    for network in [*magnitude, "both"] if len(magnitude) > 1 else magnitude:
        for method in SEED_METHODS[1:]:
            gains = sorted(100 * (r["value"] - magnitude[row_config(r)["network"]]) for r in rows
                           if r["name"] == method and network in (row_config(r)["network"], "both"))
            if gains:
                lines.append(f"| {network} | {method} | {statistics.median(gains):+.2f} | {gains[0]:+.2f} | "
                             f"{gains[-1]:+.2f} | {len(gains)} |")
    return "\n".join(lines + [""])


def calibration_line(rows: list[dict]) -> str:
    """Which calibration size (and Fisher blocks) each data-based method of ``rows`` read, from their configs."""
    groups: dict[tuple, list[str]] = {}
    for r in rows:
        c = row_config(r)
        if r["name"] in DATA_METHODS and r["metric"] == "acc":
            names = groups.setdefault((c.get("calibration"), c.get("block_size")), [])
            names += [r["name"]] if r["name"] not in names else []
    parts = [f"{', '.join(names)}: the first {n:,} training examples"
             + (f", Fisher blocks of {block:,} weights" if block else "") for (n, block), names in groups.items()]
    return "Calibration: " + "; ".join(parts) + " (all of them where the task has fewer)."


def table(rows: list[dict], name: str) -> str:
    acc = {(r["name"], r["x_value"], row_config(r)["stage"]): r["value"] for r in rows if r["metric"] == "acc"}
    secs = {(r["name"], r["x_value"]): r["value"] for r in rows if r["metric"] == "time"}
    ach = {(r["name"], r["x_value"]): r["value"] for r in rows if r["metric"] == "achieved_sparsity"}
    dense = acc[("dense", 0.0, "dense")]
    methods = present(rows)
    lines = [f"## {name} (dense {100 * dense:.2f}%)", "", calibration_line(rows), ""]
    for stage in ("one-shot", "recovered"):
        lines += [f"Validation accuracy (%), {stage}:", "",
                  "| method | " + " | ".join(f"s={s}" for s in SPARSITIES) + " | seconds at s=0.9 |",
                  "|---" * (len(SPARSITIES) + 2) + "|"]
        for m in methods:
            lines.append(f"| {m} | " + " | ".join(f"{100 * acc[(m, s, stage)]:.2f}" for s in SPARSITIES)
                         + f" | {secs[(m, 0.9)]:.2f} |")
        lines.append("")
    worst = max(abs(ach[(m, s)] - s) for m in methods for s in SPARSITIES)
    lines += [f"Achieved sparsity: every method within {worst:.2e} of the target (a kept weight may be 0).", ""]
    return "\n".join(lines)


def plot(rows: list[dict], name: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, m in enumerate(METHODS):
        if m not in present(rows):
            continue
        for stage, style in (("one-shot", "-"), ("recovered", ":")):
            pts = sorted((r["x_value"], r["value"]) for r in rows if r["name"] == m and r["metric"] == "acc"
                         and _stage(r) == stage)
            ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], style, marker="o", ms=3, color=f"C{i}",
                    label=m if stage == "one-shot" else None)
    ax.set_xlabel("sparsity")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(f"{name}: one-shot (solid), after fine-tuning (dotted)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def present(rows: list[dict]) -> list[str]:
    """The methods of METHODS that have rows."""
    return [m for m in METHODS if any(r["name"] == m for r in rows)]


def _stage(row):
    return row_config(row).get("stage")


def summary(all_rows: dict[str, list[dict]]) -> str:
    def acc(name, method, s, stage="one-shot"):
        return next(r["value"] for r in all_rows[name] if r["name"] == method and r["metric"] == "acc"
                    and r["x_value"] == s and _stage(r) == stage)

    lines = ["# Done-means checks (computed from the prune_<network>.csv files)", ""]
    held = [n for n in NETWORKS
            if n in all_rows and {"hypernet", "magnitude", "woodfisher"} <= set(present(all_rows[n]))]
    lines += ["Hypernetwork vs global magnitude on the held-out models, one-shot accuracy (points):", "",
              "| network | " + " | ".join(f"s={s}" for s in SPARSITIES) + " | hypernet - WoodFisher at 0.9 |",
              "|---" * (len(SPARSITIES) + 2) + "|"]
    all_diffs = []
    for n in held:
        diffs = [100 * (acc(n, "hypernet", s) - acc(n, "magnitude", s)) for s in SPARSITIES]
        all_diffs += diffs
        wf = 100 * (acc(n, "hypernet", 0.9) - acc(n, "woodfisher", 0.9))
        lines.append(f"| {n} | " + " | ".join(f"{d:+.2f}" for d in diffs) + f" | {wf:+.2f} |")
    if all_diffs:
        lines += ["", f"At or above magnitude at {sum(d >= 0 for d in all_diffs)} of {len(all_diffs)} points "
                  f"(above at {sum(d > 0 for d in all_diffs)}); "
                  f"{'largest shortfall' if min(all_diffs) < 0 else 'smallest gain'} {min(all_diffs):+.2f}, "
                  f"largest gain {max(all_diffs):+.2f} points."]
    lines.append("")
    lamp = [n for n in held if "lamp" in present(all_rows[n])]
    if lamp:
        lines += ["LAMP (data-free, global top-k of LAMP scores) vs global magnitude on the held-out models, one-shot "
                  "(points):", "", "| network | " + " | ".join(f"s={s}" for s in SPARSITIES)
                  + " | LAMP - WoodFisher at 0.9 |", "|---" * (len(SPARSITIES) + 2) + "|"]
        for n in lamp:
            lines.append(f"| {n} | " + " | ".join(f"{100 * (acc(n, 'lamp', s) - acc(n, 'magnitude', s)):+.2f}"
                                                   for s in SPARSITIES)
                         + f" | {100 * (acc(n, 'lamp', 0.9) - acc(n, 'woodfisher', 0.9)):+.2f} |")
        lines.append("")
    if "mlp" in all_rows and {"magnitude", "magnitude-layer", *DATA_METHODS} <= set(
            present(all_rows["mlp"])):
        mag = max(acc("mlp", "magnitude", 0.9), acc("mlp", "magnitude-layer", 0.9))
        lines += ["MLP 784-40-20-10 at s=0.9, one-shot, against the better magnitude variant "
                  f"({100 * mag:.2f}%):", ""]
        for m in DATA_METHODS:
            lines.append(f"- {m}: {100 * acc('mlp', m, 0.9):.2f}% ({100 * (acc('mlp', m, 0.9) - mag):+.2f} points)")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--zoo", type=Path, default=None, help="zoo folder whose train/ holds the validation runs "
                        "(default weightcast.prune.zoo.default_dir()); `weightcast prune zoo` builds it")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--calibration", type=int, default=1024)
    parser.add_argument("--finetune-steps", type=int, default=100)
    parser.add_argument("--networks", nargs="*", default=list(NETWORKS), choices=NETWORKS)
    parser.add_argument("--methods", nargs="*", default=list(METHODS), choices=METHODS)
    parser.add_argument("--cache", type=Path, default=None, help="keep each (network, method)'s rows here and "
                        "reuse them on the next run (to run the methods in parts; rows made another way -- the "
                        "hypernetwork's at a sparsity where its decision changed -- are made again); off by default")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-validation", action="store_true", help="do not recompute the diagnosis on the "
                        "training zoo's validation runs: the summary repeats --out's prune_validation.csv, if any")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_all(args.networks)
    net = hypernet.load_default
    args.out.mkdir(parents=True, exist_ok=True)
    all_rows, tasks = {}, {}
    for name in args.networks:
        entry, model = loaded[name]
        task_name = entry["spec"]["task"]
        tasks.setdefault(task_name, get_task(task_name, args.data_dir))
        rows = run_network(name, entry, model, tasks[task_name], net, args)
        all_rows[name] = rows
        write_results(args.out / f"prune_{name}.csv", rows, device="cpu")
        (args.out / f"prune_{name}.md").write_text(table(rows, name) + "\n")
        plot(rows, name, args.out / f"prune_{name}.png")
    text = summary(all_rows)
    seeds = [r for n in SEED_NETWORKS if n in all_rows and set(SEED_METHODS) <= set(present(all_rows[n]))
             for r in seed_rows(n, loaded[n][0], loaded[n][1], tasks["mnist"], all_rows[n], args)]
    if seeds:
        write_results(args.out / "prune_seeds.csv", seeds, device="cpu")
        text += "\n" + seed_summary(seeds)
    val_path = args.out / "prune_validation.csv"
    if not args.skip_validation:
        write_results(val_path, validation_rows(args.zoo or zoo.default_dir(), args.data_dir, net(), args),
                      device="cpu")
    if val_path.exists():
        val_rows = read_results(val_path)
        stale = stale_methods(val_rows)
        if stale:
            print(f"warning: {val_path} has rows of {', '.join(stale)} made with other settings than now; run "
                  "without --skip-validation to redo them", flush=True)
        text += "\n" + validation_summary(val_rows, stale)
    (args.out / "summary.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
