"""``weightcast slim ...``: dynamic width from pretrained weights.

    weightcast slim study --data-dir ../shared/data [--models lenet5 resnet18] [--out DIR] [--quick]
    weightcast slim finetune --model lenet5 --weights pretrained.safetensors --out slim.safetensors \
        --data-dir ../shared/data [--model-kwargs '{"batch_norm": true}'] [--widths 0.25 0.5 0.75 1.0] [--steps 200]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def _study(args: argparse.Namespace) -> int:
    import torch

    from ..results import write_results
    from .study import CONFIGS, plot, quick, report, run_study

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.models:
        config = quick(CONFIGS[name]) if args.quick else CONFIGS[name]
        rows = run_study(config, data_dir=args.data_dir)
        write_results(args.out / f"slim_{name}.csv", rows, device="cpu")
        (args.out / f"slim_{name}.md").write_text(report(rows, config.widths))
        plot(rows, config.widths, args.out / f"slim_{name}.png")
        print(report(rows, config.widths))
    return 0


def _finetune(args: argparse.Namespace) -> int:
    import torch
    from safetensors.torch import load_file, save_file

    from ..data import get_task
    from ..models import get
    from . import make_slimmable, set_width
    from .train import slimmable_finetune

    torch.set_num_threads(args.threads)
    task = get_task(args.task, data_dir=args.data_dir)
    model = get(args.model, **json.loads(args.model_kwargs), **task.model_kwargs())
    model.load_state_dict(load_file(str(args.weights)))
    make_slimmable(model, args.widths)
    log = slimmable_finetune(model, task.batches(args.batch_size, args.seed), args.steps, lr=args.lr,
                             seed=args.seed)
    accs = {}
    for w in model.slim_spec.widths:
        set_width(model, w)
        accs[w] = task.evaluate(model)["acc"]
    set_width(model, 1.0)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(args.out))
    print(json.dumps({"widths": accs, "steps": log.steps, "train_gflop": log.flops / 1e9, "out": str(args.out)}))
    return 0


def add_subparser(sub) -> None:
    from .study import CONFIGS

    slim = sub.add_parser("slim", help="dynamic width from pretrained weights (slimmable networks)")
    slim_sub = slim.add_subparsers(dest="slim_command", required=True)
    study = slim_sub.add_parser("study", help="accuracy per width: naive, generated (full/residual), fine-tuned, "
                                              "from scratch; results, table and plot")
    study.add_argument("--models", nargs="+", choices=sorted(CONFIGS), default=list(CONFIGS))
    study.add_argument("--data-dir", default=None, help="folder with the MNIST idx files (or $WEIGHTCAST_DATA)")
    study.add_argument("--out", type=Path, default=Path("benchmarks/results/slim"))
    study.add_argument("--threads", type=int, default=1)
    study.add_argument("--quick", action="store_true", help="tiny budgets: a smoke run, not results")
    study.set_defaults(func=_study)
    ft = slim_sub.add_parser("finetune", help="make a pretrained model slimmable by sandwich fine-tuning")
    ft.add_argument("--model", required=True, help="a weightcast.models name: mlp, lenet5, resnet18")
    ft.add_argument("--model-kwargs", default="{}", help="JSON keyword arguments of the model, e.g. "
                                                         "'{\"batch_norm\": true}'")
    ft.add_argument("--weights", type=Path, required=True, help="the pretrained state_dict (.safetensors)")
    ft.add_argument("--out", type=Path, required=True, help="where the slimmable state_dict goes (.safetensors)")
    ft.add_argument("--task", default="mnist", choices=["digits", "mnist"])
    ft.add_argument("--data-dir", default=None)
    ft.add_argument("--widths", type=float, nargs="+", default=[0.25, 0.5, 0.75, 1.0])
    ft.add_argument("--steps", type=int, default=200)
    ft.add_argument("--lr", type=float, default=0.01)
    ft.add_argument("--batch-size", type=int, default=64)
    ft.add_argument("--seed", type=int, default=0)
    ft.add_argument("--threads", type=int, default=1)
    ft.set_defaults(func=_finetune)
