"""Meta-training of the neuron-graph nowcaster (:mod:`.nowcast_graph`) on a long-trajectory zoo.

The data, loss and validation follow the per-element nowcaster's (:mod:`.nowcast_train`): a sample is (run,
spacing, start), the window the snapshots ``start + i * stride`` (i = 0..W-1), the targets the snapshots ``k *
stride`` further on (k = 1..K; those past the run's end masked out), each tensor z-scored with its own window
statistics. The graph needs the whole network, so a sample holds every element of the run (not a draw of
elements). The loss of a model is its L1 error in z units per horizon divided by standing still's on the same
rows, averaged over horizons (1 = standing still). Two models are trained on the same batches: the graph model
on the elements its graph places, and the per-element fallback (the "nowcast" model, ``fallback.*``) on every
element; the sum of their losses is minimised (they share no weights).

The card reports, on the validation runs' placed elements (the same windows for every entry), the L1 per horizon
of: the graph model; the per-element model trained beside it; standing still; the least-squares line; and, when a
per-element nowcast file is given (``compare``, default: the shipped one), that file's model on the horizons it
has. With a held-out zoo (runs of architectures not in the training zoo, :func:`held_out_specs`), the same figures
on all of its runs.
"""
from __future__ import annotations

import datetime
import math
from dataclasses import asdict, dataclass, field

import torch
from tqdm.auto import tqdm

from ..errors import InputError
from ..zoo import load_trajectory, read_manifest, split_runs
from ..zoo.spec import RunSpec
from . import io
from .neuron_graph import build_graph
from .nowcast import features, mlp_forward, param_type, window_stats
from .nowcast_graph import KIND, fallback_tensors, graph_forward, graph_shapes, init_graph
from .nowcast_train import _l1, evaluate, record_interval, strides


@dataclass(frozen=True)
class GraphTrainConfig:
    """Hyper-parameters of a nowcast-graph meta-training run (module docstring)."""

    window: int = 5
    k_max: int = 20
    spacings: tuple[int, ...] = (50, 100)
    hidden: int = 32
    embed: int = 8
    rounds: int = 2
    fallback_hidden: int = 32
    steps: int = 800
    samples_per_batch: int = 4
    lr: float = 3e-3
    val_fraction: float = 0.2
    val_windows: int = 32
    seed: int = 0
    tasks: tuple[str, ...] = field(default_factory=tuple)


def held_out_specs() -> list[RunSpec]:
    """Trajectories of an architecture no zoo holds (:data:`weightcast.zoo.spec.HELD_OUT`): the digits MLP of
    widths (48, 48, 48), with the long zoo's digits settings and optimizers (AdamW at 1e-3, 3e-3, 1e-2 and SGD
    with momentum 0.9 at 0.05), seed 0, 3000 steps recorded every 10."""
    optimizers = [("adamw", lr, {"weight_decay": 0.01}) for lr in (1e-3, 3e-3, 1e-2)]
    optimizers.append(("sgd", 0.05, {"momentum": 0.9}))
    return [RunSpec("digits", "mlp", {"widths": [48, 48, 48]}, name, lr, kwargs, batch_size=32, steps=3000,
                    record_every=10, eval_every=250, seed=0) for name, lr, kwargs in optimizers]


class _GraphRun:
    """One zoo run in memory: per tensor (T, n) float32 snapshots in the model's order, their types, the neuron
    graph, and the record interval."""

    def __init__(self, zoo_dir, entry):
        snapshots, steps = load_trajectory(zoo_dir, entry)
        self.id = entry["id"]
        names = list(snapshots)
        self.graph = build_graph([t.shape[1:] for t in snapshots.values()], names)
        self.order = self.graph.placed + self.graph.fallback  # placed tensors first: their rows lead each sample
        self.tensors = [snapshots[names[i]].reshape(len(steps), -1) for i in self.order]
        self.types = [param_type(snapshots[names[i]].shape[1:], names[i]) for i in self.order]
        self.num_placed = sum(self.tensors[j].shape[1] for j in range(len(self.graph.placed)))
        self.interval, self.length = record_interval(self.id, steps), len(steps)


def _sample(run: _GraphRun, stride: int, start: int, window: int, k_max: int):
    """Features (n, F), types (n,), targets (n, K) in z units and mask (n, K) of every element of a run's sample,
    the graph's placed elements first."""
    rows = start + stride * torch.arange(window)
    target_rows = int(rows[-1]) + stride * torch.arange(1, k_max + 1)
    valid = target_rows < run.length
    target_rows = target_rows.clamp_max(run.length - 1)
    feats, types, targets = [], [], []
    for traj, ptype in zip(run.tensors, run.types):
        z, mu, sigma, s = window_stats(traj[rows])
        feats.append(features(z, s))
        types.append(torch.full((traj.shape[1],), ptype, dtype=torch.int64))
        targets.append(((traj[target_rows] - mu) / sigma - z[-1]).T)  # residuals in z units, (n, K)
    targets = torch.cat(targets)
    return torch.cat(feats), torch.cat(types), targets, valid.expand(len(targets), -1)


def _batch(runs, cfg: GraphTrainConfig, g: torch.Generator, samples: int) -> dict[str, torch.Tensor | int]:
    """Samples drawn from ``runs`` as one disjoint union of their graphs (module docstring)."""
    parts = {key: [] for key in ("feats", "types", "targets", "mask", "placed", "src", "dst")}
    nodes = 0
    for _ in range(samples):
        run = runs[int(torch.randint(len(runs), (1,), generator=g))]
        options = strides(run.interval, run.length, cfg)
        stride = options[int(torch.randint(len(options), (1,), generator=g))]
        start = int(torch.randint(run.length - cfg.window * stride, (1,), generator=g))
        f, t, y, m = _sample(run, stride, start, cfg.window, cfg.k_max)
        placed = torch.zeros(len(f), dtype=torch.bool)
        placed[:run.num_placed] = True
        for key, value in zip(("feats", "types", "targets", "mask", "placed"), (f, t, y, m, placed)):
            parts[key].append(value)
        parts["src"].append(run.graph.src + nodes)
        parts["dst"].append(run.graph.dst + nodes)
        nodes += run.graph.num_nodes
    batch = {key: torch.cat(value) for key, value in parts.items()}
    batch["scale"] = batch["feats"][:, cfg.window].exp()  # s per row (the log s feature), m -> z units
    batch["num_nodes"] = nodes
    return batch


def _relative(pred, targets, mask) -> torch.Tensor:
    """The loss: per-horizon L1 divided by standing still's, averaged over horizons."""
    return (_l1(pred, targets, mask) / _l1(torch.zeros_like(targets), targets, mask).clamp_min(1e-8)).mean()


def _graph_pred(tensors, batch, rounds: int) -> torch.Tensor:
    placed = batch["placed"]
    m = graph_forward(tensors, batch["feats"][placed], batch["types"][placed], batch["src"], batch["dst"],
                      batch["num_nodes"], rounds)
    return m * batch["scale"][placed, None]


def evaluate_graph(tensors, batch, cfg: GraphTrainConfig, compare: dict | None = None) -> dict[str, list[float]]:
    """Per-horizon L1 (z units) on ``batch``'s placed elements of the graph model, the per-element fallback,
    standing still, the least-squares line and (``compare``: a nowcast file's tensors and config) that model."""
    placed = batch["placed"]
    rows = tuple(batch[key][placed] for key in ("feats", "types", "targets", "mask", "scale"))
    with torch.no_grad():
        graph = _graph_pred(tensors, batch, cfg.rounds)
    per_element = evaluate(fallback_tensors(tensors), rows, cfg.window)
    out = {"graph": _l1(graph, rows[2], rows[3]).tolist(), "per_element": per_element["model"],
           "still": per_element["still"], "line": per_element["line"]}
    if compare is not None:
        k = min(cfg.k_max, int(compare["config"]["k_max"]))
        with torch.no_grad():
            pred = mlp_forward(compare["tensors"], rows[0], rows[1], torch.arange(k)) * rows[4][:, None]
        out["compare"] = _l1(pred, rows[2][:, :k], rows[3][:, :k]).tolist()
    return out


def _usable(zoo_dir, cfg: GraphTrainConfig, tasks=()) -> list[dict]:
    entries = read_manifest(zoo_dir)["runs"]
    if tasks:
        entries = [e for e in entries if e["spec"]["task"] in tasks]
    held = sorted({(e["spec"]["record_every"], e["num_records"]) for e in entries})
    entries = [e for e in entries if not e["diverged"] and strides(e["spec"]["record_every"], e["num_records"], cfg)]
    if not entries:
        raise InputError(f"no run of {zoo_dir} can supply {cfg.window} states {list(cfg.spacings)} steps apart: its "
                         f"runs hold (record interval, snapshots) {held[:6]}; pass --spacings that are multiples of "
                         "the record interval spanning fewer snapshots, a smaller --window, or a zoo of longer runs "
                         "(python -m weightcast.zoo.long)")
    return entries


def _means(val: dict[str, list[float]]) -> dict[str, float]:
    return {name: sum(v) / len(v) for name, v in val.items()}


def train_graph(zoo_dir, cfg: GraphTrainConfig, progress: bool = True, command: str | None = None,
                compare: str | None = None, held_out_zoo=None):
    """Meta-train a nowcast-graph model on ``zoo_dir``; returns ``(config, tensors, card)`` for :func:`io.save`.
    ``compare``: a per-element nowcast file reported beside it on the same windows; ``held_out_zoo``: a zoo whose
    runs (all of them) are evaluated too."""
    if cfg.window < 2:
        raise InputError(f"a window needs at least 2 states (the optimizer refuses fewer), got {cfg.window}")
    entries = _usable(zoo_dir, cfg, cfg.tasks)
    train_ids, val_ids = split_runs(entries, cfg.val_fraction, cfg.seed)
    if not train_ids or not val_ids:
        raise InputError(f"the zoo at {zoo_dir} has too few usable runs ({len(entries)}) for a train and a "
                         "validation split; build it with `python -m weightcast.zoo.long --out DIR`")
    by_id = {e["id"]: e for e in entries}
    train_runs = [_GraphRun(zoo_dir, by_id[i]) for i in train_ids]
    val_runs = [_GraphRun(zoo_dir, by_id[i]) for i in val_ids]
    config = {"window": cfg.window, "hidden": cfg.hidden, "k_max": cfg.k_max, "embed": cfg.embed,
              "rounds": cfg.rounds, "fallback_hidden": cfg.fallback_hidden, "spacings": list(cfg.spacings)}
    compared = None
    if compare is not None:
        from .nowcast import KIND as NOWCAST, nowcast_shapes

        cmp_config, cmp_tensors = io.load(compare, NOWCAST, nowcast_shapes)
        if int(cmp_config["window"]) != cfg.window:
            raise InputError(f"--compare {compare} has a window of {cmp_config['window']} states, not {cfg.window}")
        compared = {"config": cmp_config, "tensors": cmp_tensors}
    tensors = {k: v.requires_grad_() for k, v in init_graph(config, cfg.seed).items()}
    opt = torch.optim.AdamW(tensors.values(), lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.steps)
    g = torch.Generator().manual_seed(cfg.seed)
    losses = []
    bar = tqdm(range(cfg.steps), desc="nowcast-graph meta-training", disable=not progress)
    for step in bar:
        batch = _batch(train_runs, cfg, g, cfg.samples_per_batch)
        placed, feats, types = batch["placed"], batch["feats"], batch["types"]
        graph_loss = _relative(_graph_pred(tensors, batch, cfg.rounds), batch["targets"][placed], batch["mask"][placed])
        per_element = mlp_forward(fallback_tensors(tensors), feats, types) * batch["scale"][:, None]
        loss = graph_loss + _relative(per_element, batch["targets"], batch["mask"])
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the meta-training loss became {float(loss)} at step {step}; nothing was "
                                     "written; lower --lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(graph_loss.detach()))
        if step % 20 == 0:
            bar.set_postfix(graph=f"{sum(losses[-50:]) / len(losses[-50:]):.4f}")
    tensors = {k: v.detach() for k, v in tensors.items()}
    val = evaluate_graph(tensors, _batch(val_runs, cfg, torch.Generator().manual_seed(cfg.seed + 1),
                                         cfg.val_windows), cfg, compared)
    card = {"kind": KIND, "config": config, "zoo": str(zoo_dir), "train_runs": len(train_ids),
            "val_runs": len(val_ids), "train": asdict(cfg), "final_train_loss": sum(losses[-50:]) / len(losses[-50:]),
            "val_l1_by_horizon": val, "final": {f"val_l1_{name}": v for name, v in _means(val).items()},
            "trained_for": {"window": cfg.window, "spacings_steps": list(cfg.spacings), "k_range": [1, cfg.k_max]},
            "params": sum(math.prod(s) for s in graph_shapes(config).values()),
            "date": datetime.date.today().isoformat(), "command": command}
    if compared is not None:
        card["compare"] = {"file": str(compare), "trained_for": compared["config"].get("spacings"),
                           "k_max": int(compared["config"]["k_max"])}
    if held_out_zoo is not None:
        runs = [_GraphRun(held_out_zoo, e) for e in _usable(held_out_zoo, cfg)]
        held = evaluate_graph(tensors, _batch(runs, cfg, torch.Generator().manual_seed(cfg.seed + 2),
                                              cfg.val_windows), cfg, compared)
        card["held_out"] = {"zoo": str(held_out_zoo), "runs": [r.id for r in runs], "l1_by_horizon": held,
                            "mean": _means(held)}
    return config, tensors, card


def train_from_args(args) -> int:
    """``weightcast forecaster train --kind nowcast-graph ...``: train, save weights and card, print the
    validation L1. ``--hidden`` sizes both the graph model and its per-element fallback. A ``--held-out-zoo``
    directory without a manifest is built first (:func:`held_out_specs`)."""
    import json

    torch.set_num_threads(args.threads)
    cfg = GraphTrainConfig(window=args.window, k_max=args.k_max, spacings=tuple(args.spacings), hidden=args.hidden,
                           fallback_hidden=args.hidden, rounds=args.rounds, steps=args.steps,
                           samples_per_batch=args.samples, lr=args.lr, seed=args.seed)
    if args.held_out_zoo is not None and not (args.held_out_zoo / "manifest.json").exists():
        from ..zoo import build_zoo

        build_zoo(args.held_out_zoo, held_out_specs(), progress=not args.no_progress, allow_held_out=True)
    compare = args.compare if args.compare is not None else io.default_path("nowcast")
    command = args.command_line if args.record_command else None
    config, tensors, card = train_graph(args.zoo, cfg, progress=not args.no_progress, command=command,
                                        compare=compare, held_out_zoo=args.held_out_zoo)
    io.save(args.out, KIND, config, tensors, card)
    print(json.dumps(card["final"]), f"-> {args.out}")
    return 0
