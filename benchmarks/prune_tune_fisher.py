"""Choose WoodFisher's and CHITA's hyperparameters on the prune zoo's validation runs (never a held-out model).

    python benchmarks/prune_tune_fisher.py --data-dir ../shared/data --zoo .cache/prune-zoo \
        --methods woodfisher chita --rel-damp 1e-4 1e-3 1e-2 1e-1 --stages 1 8 32 --calibration 1024 4096 \
        --block-size full 784 --sparsities 0.9
    python benchmarks/prune_tune_fisher.py --data-dir ../shared/data --zoo .cache/prune-zoo \
        --methods woodfisher --stages 8 --rel-damp 1e-3 --inputs prior --calibration 1024 8192 \
        --block-size 128 2048 --sparsities 0.9 --runs validation   # the mask hypernetwork's calibration setting

Runs: the MNIST MLPs among the training zoo's validation runs (weightcast.prune.zoo.validation_ids(), the runs
the mask hypernetwork's checkpoint was chosen on; widths (32, 16), (64, 32), (96, 48)), or with --runs validation
all of them (the MLPs, two MNIST LeNet-5s and a digits MLP, each on its own task). For every setting of the
grid -- method x calibration N (the first N training examples, as benchmarks/prune_accuracy.py, or with
--inputs prior N samples of the shipped mask hypernetwork's input prior of the run's task, to choose its
weightcast.prune.Calibration) x stages x rel_damp x block size (weightcast.prune.fisher.prune_in_stages;
"full": the full Fisher) -- and every sparsity, the one-shot validation accuracy (the run's task's full validation
split) of the pruned and updated weights, and global magnitude's once per (run, sparsity).

Writes benchmarks/results/prune/prune_tune_fisher.csv (weightcast.results schema; name = method, x_value = sparsity,
config = run, calibration, inputs, stages, rel_damp, block_size -- None: the full Fisher) and prune_tune_fisher.md:
per sparsity and setting, the gain over global magnitude on each run, the number of runs and their mean.
Resumable and cumulative: a (run, setting, sparsity) already in the CSV is not run again, so the grid can be run
in parts (each call appends its rows) and the markdown always covers every row of the CSV. A CSV made from other
models under the same run ids (another machine's zoo build: global magnitude's accuracy differs from a row of
the file at any of its sparsities) is refused before any row is added (the command exits with 2 and says so).
"""
from __future__ import annotations

import argparse
import copy
import inspect
import itertools
import statistics
import sys
from pathlib import Path

import torch

from common import RESULTS, row_config, write_results
from weightcast.cli_common import block_size
from weightcast.data import get_task
from weightcast.prune import apply_masks, hypernet, keep_top, zoo
from weightcast.prune.api import masks_and_weights
from weightcast.prune.fisher import DEFAULT_STAGES, prune_in_stages
from weightcast.prune.layers import prunable_layers, weight_of
from weightcast.results import read_results

OUT = RESULTS / "prune"
CSV_NAME, MD_NAME = "prune_tune_fisher.csv", "prune_tune_fisher.md"
SETTING = ("calibration", "inputs", "stages", "rel_damp", "block_size")
INPUTS = ("train", "prior")
RUN_SETS = ("mnist-mlps", "validation")


def setting_of(config: dict) -> tuple:
    """A row's setting, in SETTING's order (rows from before --inputs read training examples)."""
    return tuple(config.get(k, "train" if k == "inputs" else None) for k in SETTING)


def calibration_batch(task, inputs: str, n: int, priors: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` training examples of ``task`` (``inputs="train"``, as benchmarks/prune_accuracy.py), or
    ``n`` samples of the task's input prior among ``priors`` (``"prior"``, seed 0: what MaskHypernetwork.prune
    reads with one draw; ``priors``: the shipped mask hypernetwork's)."""
    if inputs == "train":
        return task.eval_tensors("train", n)
    priors = priors if priors is not None else hypernet.load_default().priors
    return priors[task.name].sample(n, seed=0)


def validation_specs(runs: str = RUN_SETS[0]) -> list:
    """The specs of the training zoo's validation runs: those that are MNIST MLPs (``runs="mnist-mlps"``) or all
    of them (``"validation"``). Raises ValueError for another ``runs``."""
    if runs not in RUN_SETS:
        raise ValueError(f"runs must be one of {RUN_SETS}, got {runs!r}")
    ids = set(zoo.validation_ids())
    specs = [s for s in zoo.train_specs() if s.run_id in ids]
    if runs == "validation":
        return specs
    return [s for s in specs if (s.task, s.arch) == ("mnist", "mlp_nobias")]


def specs_by_task(specs: list) -> dict[str, list]:
    """``specs`` grouped by their task's name, in order of first appearance (each group is pruned and evaluated
    on its own task)."""
    groups = {}
    for s in specs:
        groups.setdefault(s.task, []).append(s)
    return groups


def _key(row: dict) -> tuple:
    c = row_config(row)
    return (c["run"], row["name"], float(row["x_value"])) + setting_of(c)


def read_rows(path: Path) -> list[dict]:
    """The rows written so far (none when the file does not exist), x_value and value as floats."""
    if not path.exists():
        return []
    return [dict(r, x_value=float(r["x_value"]), value=float(r["value"])) for r in read_results(path)]


def one_shot(model, task, masks, weights) -> float:
    pruned = copy.deepcopy(model)
    apply_masks(pruned, masks, weights)
    return task.evaluate(pruned)["acc"]


class OtherModelsError(RuntimeError):
    """The results file was made from other models than this machine's zoo holds under the same run ids."""


def magnitude_accuracy(model, task, sparsity: float) -> float:
    """One-shot validation accuracy of ``model`` pruned by global magnitude to ``sparsity``."""
    scores = {f"{n}.weight": weight_of(m).detach().abs() for n, m in prunable_layers(model).items()}
    return one_shot(model, task, keep_top(scores, sparsity), None)


def check_same_models(specs, zoo_dir: Path, task, done: dict[tuple, float]) -> None:
    """Raise :class:`OtherModelsError` when global magnitude, at any sparsity ``done`` (row key -> value,
    :func:`_key`) has for one of these runs, does not give the accuracy ``done`` has: this machine then built
    another model under the run's id (zoo builds depend on the CPU, weightcast/prune/README.md), and rows of it
    would not be comparable with the file's."""
    for entry, model in zoo.load_models(zoo_dir, specs):
        for key, value in done.items():
            if key[:2] == (entry["id"], "magnitude") and (acc := magnitude_accuracy(model, task, key[2])) != value:
                raise OtherModelsError(f"{entry['id']}: global magnitude at s = {key[2]} gives {acc:.4f} here but "
                                       f"{value:.4f} in the results file: this machine built another model under "
                                       "that id; tune into another --out")


def tune_rows(specs, zoo_dir: Path, task, args, done: dict[tuple, float]):
    """Yield the rows of (run, setting, sparsity) not in ``done`` (row key -> value, :func:`_key`), one at a
    time (:func:`check_same_models` first: rows are added only to a file made from the same models)."""
    priors = hypernet.load_default().priors if "prior" in args.inputs else None
    for entry, model in zoo.load_models(zoo_dir, specs):
        run = entry["id"]
        common = dict(metric="acc", unit="fraction", x_name="sparsity", benchmark="prune-tune-fisher")
        for s in args.sparsities:
            if (run, "magnitude", s) + setting_of({}) not in done:
                yield dict(common, name="magnitude", x_value=s, value=magnitude_accuracy(model, task, s),
                           config={"run": run, "stage": "one-shot"})
        for method, n, inputs in itertools.product(args.methods, args.calibration, args.inputs):
            x, y = calibration_batch(task, inputs, n, priors)
            for stages, damp, block, s in itertools.product(args.stages, args.rel_damp, args.block_size,
                                                             args.sparsities):
                if (run, method, s, n, inputs, stages, damp, block) in done:
                    continue
                result = prune_in_stages(model, s, x, y, method, stages=stages, rel_damp=damp, block_size=block)
                acc = one_shot(model, task, *masks_and_weights(result))
                print(f"{run} {method} N={n} inputs={inputs} stages={stages} rel_damp={damp:g} "
                      f"block={block or 'full'} s={s}: {acc:.4f}", flush=True)
                yield dict(common, name=method, x_value=s, value=acc,
                           config={"run": run, "stage": "one-shot", "calibration": n, "inputs": inputs,
                                   "stages": stages, "rel_damp": damp, "block_size": block})


def _default(name: str):
    return inspect.signature(prune_in_stages).parameters[name].default


def _order(item) -> tuple:
    """Sort key of a (setting, gains) item: the full Fisher (block None) before any block size."""
    return tuple(0 if v is None else v for v in item[0])


def table(rows: list[dict]) -> str:
    """Per sparsity, each setting's one-shot gain over global magnitude (points) on each run and the mean over
    the runs that have it."""
    mag = {(row_config(r)["run"], r["x_value"]): r["value"] for r in rows if r["name"] == "magnitude"}
    runs = list(dict.fromkeys(row_config(r)["run"] for r in rows))
    lines = ["One-shot validation accuracy gain over global magnitude (points) on the prune zoo's validation runs "
             "(benchmarks/prune_tune_fisher.py; no held-out model). N: calibration examples -- the first N training "
             "examples (inputs train) or N samples of the shipped mask hypernetwork's input prior of the run's task "
             "(inputs prior); the mean is over the runs a setting has (their number: runs).", "",
             f"Defaults of weightcast.prune.fisher.prune_in_stages: stages {DEFAULT_STAGES}, "
             f"rel_damp {_default('rel_damp')}, block_size {_default('block_size') or 'full'}.", ""]
    for s in sorted({r["x_value"] for r in rows}):
        settings = {}
        for r in rows:
            if r["name"] != "magnitude" and r["x_value"] == s:
                c = row_config(r)
                settings.setdefault((r["name"],) + setting_of(c), {})[c["run"]] = \
                    100 * (r["value"] - mag[(c["run"], s)])
        if not settings:
            continue
        lines += [f"s = {s} (global magnitude: " + ", ".join(f"{100 * mag[(run, s)]:.2f}%" for run in runs
                                                           if (run, s) in mag) + "):", "",
                  "| method | N | inputs | stages | rel_damp | block | " + " | ".join(runs) + " | runs | mean |",
                  "|---" * (len(runs) + 8) + "|"]
        for (method, n, inputs, stages, damp, block), gains in sorted(settings.items(), key=_order):
            cells = [f"{gains[run]:+.2f}" if run in gains else "" for run in runs]
            lines.append(f"| {method} | {n} | {inputs} | {stages} | {damp:g} | {block or 'full'} | " + " | ".join(cells)
                         + f" | {len(gains)} | {statistics.mean(gains.values()):+.2f} |")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--zoo", type=Path, default=None, help="zoo folder (default zoo.default_dir())")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--methods", nargs="+", default=["woodfisher", "chita"], choices=["woodfisher", "chita"])
    parser.add_argument("--rel-damp", nargs="+", type=float, default=[1e-4, 1e-3, 1e-2, 1e-1])
    parser.add_argument("--stages", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--calibration", nargs="+", type=int, default=[1024, 4096])
    parser.add_argument("--block-size", nargs="+", type=block_size, default=[None],
                        help="'full' (the full Fisher) or a positive number of weights per block")
    parser.add_argument("--inputs", nargs="+", choices=INPUTS, default=["train"],
                        help="calibration inputs: training examples, or samples of the shipped mask hypernetwork's "
                             "input prior (its calibration with one draw)")
    parser.add_argument("--sparsities", nargs="+", type=float, default=[0.9])
    parser.add_argument("--runs", choices=RUN_SETS, default=RUN_SETS[0],
                        help="the validation runs tuned on: the MNIST MLPs, or all of them")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    specs = validation_specs(args.runs)
    root = args.zoo or zoo.default_dir()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / CSV_NAME
    rows = read_rows(path)
    done = {_key(r): r["value"] for r in rows}
    groups = [(get_task(name, args.data_dir), task_specs) for name, task_specs in specs_by_task(specs).items()]
    try:   # every run checked before any row is added
        for task, task_specs in groups:
            check_same_models(task_specs, root / "train", task, done)
    except OtherModelsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for task, task_specs in groups:
        for row in tune_rows(task_specs, root / "train", task, args, done):
            write_results(path, [row], device="cpu", append=path.exists())
            rows.append(row)
            (args.out / MD_NAME).write_text(table(rows) + "\n")
    (args.out / MD_NAME).write_text(table(rows) + "\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
