"""``weightcast slim ...``: dynamic width from pretrained weights.

    weightcast slim study --data-dir ../shared/data --out DIR [--models lenet5 resnet18] [--quick]
    weightcast slim finetune --model lenet5 --weights pretrained.safetensors --out slim.safetensors \
        --data-dir ../shared/data [--model-kwargs '{"batch_norm": true}'] [--widths 0.25 0.5 0.75 1.0] [--steps 200]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..cli_common import HelpFormatter, positive_float, positive_int, state_misfit
from ..errors import InputError

# the models `slim finetune` can build from an image task (the GPT's MLP blocks are slimmable from Python only)
FINETUNE_MODELS = ("lenet5", "mlp", "resnet18")
CONVERT = ('python -c "import torch; from safetensors.torch import save_file; '
           "save_file({k: v.contiguous() for k, v in torch.load('IN.pt', weights_only=True).items()}, "
           "'OUT.safetensors')\"")


def _load_state(path: Path) -> dict:
    """The plain safetensors state_dict at ``path``; InputError for a missing file or another format."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise InputError(f"--weights {path}: no such file" + (" (a directory)" if path.is_dir() else "") +
                         "; pass the pretrained model's state_dict saved with safetensors.torch.save_file")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise InputError(f"--weights {path} is not a safetensors file ({exc}): expected a .safetensors file "
                         "written by safetensors.torch.save_file(model.state_dict(), FILE); convert a torch.save "
                         f"file with {CONVERT}") from None


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
    from safetensors.torch import save_file

    from ..data import get_task
    from ..models import get
    from . import make_slimmable, set_width
    from .train import slimmable_finetune

    if args.model not in FINETUNE_MODELS:
        raise InputError(f"--model {args.model!r} cannot be fine-tuned here; choose one of {list(FINETUNE_MODELS)}")
    try:
        kwargs = json.loads(args.model_kwargs)
    except json.JSONDecodeError as exc:
        raise InputError(f"--model-kwargs {args.model_kwargs!r} is not JSON ({exc}); pass a JSON object with "
                         'quoted keys, e.g. \'{"batch_norm": true}\'') from None
    if not isinstance(kwargs, dict):
        raise InputError(f"--model-kwargs {args.model_kwargs!r} is not a JSON object, e.g. '{{\"batch_norm\": true}}'")
    state = _load_state(args.weights)
    torch.set_num_threads(args.threads)
    task = get_task(args.task, data_dir=args.data_dir)
    try:
        model = get(args.model, **{**kwargs, **task.model_kwargs()})
    except (TypeError, ValueError) as exc:
        raise InputError(f"--model {args.model} does not take --model-kwargs {args.model_kwargs} ({exc})") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise InputError(state_misfit(f"--weights {args.weights} does not fit --model {args.model} with "
                                      f"--model-kwargs {args.model_kwargs}", state, model.state_dict(), exc)) from None
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
    study = slim_sub.add_parser("study", formatter_class=HelpFormatter,
                                help="accuracy per width: naive, generated (full/residual), fine-tuned, "
                                     "from scratch; results, table and plot")
    study.add_argument("--models", nargs="+", choices=sorted(CONFIGS), default=list(CONFIGS))
    study.add_argument("--data-dir", default=None, help="folder with the MNIST idx files (or $WEIGHTCAST_DATA)")
    study.add_argument("--out", type=Path, required=True,
                       help="folder for the CSV, table and plot per model (required here, so that a run never "
                            "overwrites the committed benchmarks/results/slim by accident; pass that folder to "
                            "regenerate them, as benchmarks/slim_study.py does when given no --out)")
    study.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads")
    study.add_argument("--quick", action="store_true", help="tiny budgets: a smoke run, not results")
    study.set_defaults(func=_study)
    ft = slim_sub.add_parser("finetune", formatter_class=HelpFormatter,
                             help="make a pretrained model slimmable by sandwich fine-tuning")
    ft.add_argument("--model", required=True, help=f"a weightcast.models name: {', '.join(FINETUNE_MODELS)}")
    ft.add_argument("--model-kwargs", default="{}", help="JSON keyword arguments of the model, e.g. "
                                                         "'{\"batch_norm\": true}'")
    ft.add_argument("--weights", type=Path, required=True,
                    help="the pretrained state_dict as safetensors (safetensors.torch.save_file; not a torch.save .pt)")
    ft.add_argument("--out", type=Path, required=True, help="where the slimmable state_dict goes (.safetensors)")
    ft.add_argument("--task", default="mnist", choices=["digits", "mnist"],
                    help="training and evaluation data (and the input shape)")
    ft.add_argument("--data-dir", default=None, help="folder with the MNIST idx files (or $WEIGHTCAST_DATA)")
    ft.add_argument("--widths", type=positive_float, nargs="+", default=[0.25, 0.5, 0.75, 1.0],
                    help="fractions of the full width in (0, 1] to train and evaluate; must include 1.0")
    ft.add_argument("--steps", type=positive_int, default=200, help="SGD steps of sandwich fine-tuning")
    ft.add_argument("--lr", type=positive_float, default=0.01, help="peak SGD learning rate (cosine schedule)")
    ft.add_argument("--batch-size", type=positive_int, default=64, help="training batch size")
    ft.add_argument("--seed", type=int, default=0)
    ft.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads")
    ft.set_defaults(func=_finetune)
