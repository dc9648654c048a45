"""``weightcast prune ...``: build the pruning zoos, train the mask hypernetwork, prune a saved model.

    weightcast prune zoo   --data-dir DATA [--zoo DIR]                   train + held-out zoos (resumable)
    weightcast prune train --data-dir DATA [--zoo DIR] [--out FILE] [--steps N]
    weightcast prune apply --model NAME --state FILE --sparsity S --method M --out FILE [--data-dir DATA ...]
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path


def add_subparser(subparsers) -> None:
    parser = subparsers.add_parser("prune", help="one-shot pruning and the mask hypernetwork")
    sub = parser.add_subparsers(dest="prune_command", required=True)
    zoo = sub.add_parser("zoo", help="build the training and held-out zoos of pretrained models")
    train = sub.add_parser("train", help="train the mask hypernetwork on the training zoo")
    for p in (zoo, train):
        p.add_argument("--zoo", type=Path, default=None, help="zoo folder (default $WEIGHTCAST_PRUNE_ZOO or "
                       "~/.cache/weightcast/prune-zoo)")
        p.add_argument("--data-dir", default=None, help="folder with MNIST (default $WEIGHTCAST_DATA)")
        p.add_argument("--threads", type=int, default=1)
    zoo.set_defaults(func=_zoo)
    train.add_argument("--out", type=Path, default=None, help="weights file (default: the shipped one)")
    train.add_argument("--steps", type=int, default=1500)
    train.add_argument("--lr", type=float, default=3e-4)
    train.add_argument("--max-shift", type=float, default=0.5)
    train.add_argument("--token-size", type=int, default=32)
    train.add_argument("--hidden", type=int, default=32)
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(func=_train)
    apply = sub.add_parser("apply", help="prune a saved model (state_dict file) and save the pruned state_dict")
    apply.add_argument("--model", required=True, help="model name (weightcast.models, or mlp_nobias)")
    apply.add_argument("--model-kwargs", default="{}", help='JSON, e.g. {"widths": [40, 20]}')
    apply.add_argument("--task", default="mnist", help="task that gives the input shape and calibration data")
    apply.add_argument("--data-dir", default=None)
    apply.add_argument("--state", type=Path, required=True, help="the trained model's state_dict (torch.save)")
    apply.add_argument("--sparsity", type=float, required=True)
    apply.add_argument("--method", default="magnitude")
    apply.add_argument("--scope", default="global", choices=("global", "layer"))
    apply.add_argument("--calibration", type=int, default=1024, help="training examples for data-based methods")
    apply.add_argument("--out", type=Path, required=True)
    apply.set_defaults(func=_apply)


def _zoo(args) -> int:
    import torch

    from . import zoo

    torch.set_num_threads(args.threads)
    root = args.zoo or zoo.default_dir()
    for name, specs in (("heldout", zoo.held_out_specs()), ("train", zoo.train_specs())):
        manifest = zoo.build(root / name, specs, args.data_dir)
        print(f"{name}: {len(manifest['runs'])} runs in {root / name}")
    return 0


def _train(args) -> int:
    import torch

    from ..data import get_task
    from . import hypernet, zoo

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    root = args.zoo or zoo.default_dir()
    loaded = zoo.load_models(root / "train", zoo.train_specs())
    tasks = {name: get_task(name, args.data_dir) for name in {e["spec"]["task"] for e, _ in loaded}}
    val_ids = set(zoo.validation_ids())
    pairs = [(model, tasks[e["spec"]["task"]]) for e, model in loaded if e["id"] not in val_ids]
    val_pairs = [(model, tasks[e["spec"]["task"]]) for e, model in loaded if e["id"] in val_ids]
    net = hypernet.MaskHypernetwork(args.token_size, args.hidden, args.max_shift)
    start = time.perf_counter()
    log = hypernet.train(net, pairs, steps=args.steps, lr=args.lr, seed=args.seed, val_zoo=val_pairs)
    seconds = time.perf_counter() - start
    validation = hypernet.validate(net, val_pairs)
    print(json.dumps(validation, indent=1))
    out = args.out or hypernet.DEFAULT_FILE
    card = {"name": "weightcast mask hypernetwork", "method": "weightcast.prune.hypernet (module docstring)",
            "command": "weightcast " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv else "",
            "data": {"zoo": "weightcast.prune.zoo.train_specs()", "tasks": sorted(tasks),
                     "train_runs": [e["id"] for e, _ in loaded if e["id"] not in val_ids],
                     "validation_runs": sorted(val_ids)},
            "validation_note": "mean validation accuracy of the validation runs (full validation split) under "
                               "the hypernetwork's and global magnitude's masks, per sparsity",
            "steps": args.steps, "lr": args.lr, "seed": args.seed, "train_seconds": round(seconds, 1),
            "train_log": log, "validation": validation, "torch": torch.__version__}
    hypernet.save(net, out, card)
    print(f"saved {out} and {out.with_suffix('.json')}")
    return 0


def _apply(args) -> int:
    import torch

    from .. import models
    from ..data import get_task
    from .api import DATA_BASED, prune, sparsity_of
    from .models import registered

    task = get_task(args.task, args.data_dir)
    with registered():
        model = models.get(args.model, **task.model_kwargs(), **json.loads(args.model_kwargs))
    model.load_state_dict(torch.load(args.state, map_location="cpu"))
    data = task.eval_tensors("train", args.calibration) if args.method in DATA_BASED else None
    before = task.evaluate(model)["acc"]
    start = time.perf_counter()
    try:
        prune(model, args.sparsity, args.method, data=data, scope=args.scope)
    except ValueError as exc:
        print(f"weightcast prune apply: {exc}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    torch.save(model.state_dict(), args.out)
    print(json.dumps({"method": args.method, "sparsity": sparsity_of(model), "acc_dense": before,
                      "acc_pruned": task.evaluate(model)["acc"], "seconds": round(seconds, 3),
                      "out": str(args.out)}))
    return 0
