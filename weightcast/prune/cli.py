"""``weightcast prune ...``: build the pruning zoos, train the mask hypernetwork, prune a saved model.

    weightcast prune zoo   --data-dir DATA [--zoo DIR]                   every zoo of zoo.ZOOS (resumable)
    weightcast prune train --data-dir DATA [--zoo DIR] --out FILE [--steps N]
    weightcast prune prior --data-dir DATA [--zoo DIR] [--hypernet FILE] --out FILE [--samples N]
        [--block-size B] [--draws D] [--stages S] [--rel-damp R]
        (fits the hypernetwork's input priors and chooses where WoodFisher runs on their samples: on how many, in
        what Fisher blocks, over how many draws, the options say)
    weightcast prune apply --model NAME [--model-kwargs JSON] --state FILE [--task T --data-dir DATA] --sparsity S
        --method M --out FILE [--permanent] [--threads N]
        (the output holds weight_orig/weight_mask unless --permanent; load_pruned reads it, --state accepts it and
        prunes it further: --sparsity is the total)
"""
from __future__ import annotations

import argparse
import json
import pickle
import time
from dataclasses import asdict
from pathlib import Path

from ..cli_common import HelpFormatter, block_size, clip, positive_float, positive_int, state_misfit
from ..errors import InputError

from .api import DATA_BASED, METHODS
from .calibration import Calibration
from .hypernet import SHRINKS


def _sparsity(text: str) -> float:
    """argparse type: a number in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"{text} is out of range: pass a fraction in [0, 1) (0.9 keeps 10%)")
    return value


def _fraction(text: str) -> float:
    """argparse type: a number in (0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"{text} is out of range: pass a fraction in (0, 1)")
    return value


def add_subparser(subparsers) -> None:
    parser = subparsers.add_parser("prune", help="one-shot pruning and the mask hypernetwork")
    sub = parser.add_subparsers(dest="prune_command", required=True)
    zoo = sub.add_parser("zoo", help="build the training, held-out, replication and confirmation zoos of "
                         "pretrained models")
    train = sub.add_parser("train", help="train the mask hypernetwork on the training zoo")
    prior = sub.add_parser("prior", help="fit the mask hypernetwork's input priors (one per training task) and "
                                         "choose on the validation runs where it prunes by WoodFisher on them")
    gate = sub.add_parser("gate", help="choose the mask hypernetwork's gates again on the validation runs: where "
                                       "it uses its learned change, and how much, then where WoodFisher on its "
                                       "input priors")
    for p in (zoo, train, prior, gate):
        p.add_argument("--zoo", type=Path, default=None, help="zoo folder (default $WEIGHTCAST_PRUNE_ZOO or "
                       "~/.cache/weightcast/prune-zoo)")
        p.add_argument("--data-dir", default=None, help="folder with MNIST (default $WEIGHTCAST_DATA)")
        p.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads")
    zoo.set_defaults(func=_zoo)
    train.add_argument("--out", type=Path, required=True,
                       help="weights file to write (the shipped one is weightcast/prune/weights/"
                            "mask_hypernet.safetensors; a freshly trained network has no input priors: run "
                            "prune prior on it next)")
    train.add_argument("--steps", type=positive_int, default=1500)
    train.add_argument("--lr", type=positive_float, default=3e-4)
    train.add_argument("--max-shift", type=float, default=0.5, help="bound of the change of a weight's log|w| score")
    train.add_argument("--max-offset", type=float, default=1.0, help="bound of the per-layer score offset")
    train.add_argument("--val-every", type=positive_int, default=100,
                       help="steps between checkpoints scored on the validation runs (early stopping)")
    train.add_argument("--objective", choices=("straight-through", "search"), default="straight-through",
                       help="straight-through: the masked networks' task loss through a straight-through top-k "
                            "mask; search: fit the per-layer offsets to those found by coordinate search on each "
                            "training run's training data (allocation.offset_targets)")
    train.add_argument("--search-examples", type=positive_int, default=2048,
                       help="training examples per run for the offset search (--objective search)")
    train.add_argument("--search-min-gain", type=float, default=0.01,
                       help="relative loss decrease a searched offset must bring to be taken (--objective search)")
    for p in (train, gate):
        p.add_argument("--shrinks", type=_fraction, nargs="*", default=list(SHRINKS),
                       help="fractions of the learned change also judged on the validation runs per sparsity "
                            "(default %(default)s)")
    train.add_argument("--models-per-step", type=positive_int, default=1,
                       help="(model, sparsity, batch) draws averaged in each step's loss")
    train.add_argument("--token-size", type=positive_int, default=32)
    train.add_argument("--hidden", type=positive_int, default=32)
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(func=_train)
    prior.add_argument("--hypernet", type=Path, default=None,
                       help="the trained hypernetwork to add the priors to (default: the shipped one)")
    prior.add_argument("--out", type=Path, required=True, help="weights file to write (may be --hypernet's)")
    prior.add_argument("--samples", type=positive_int, default=Calibration.samples,
                       help="prior samples WoodFisher reads (default %(default)s)")
    prior.add_argument("--block-size", type=block_size, default=Calibration.block_size,
                       help="its Fisher blocks: 'full' or weights per block (default %(default)s)")
    prior.add_argument("--draws", type=positive_int, default=Calibration.draws,
                       help="draws of the samples, the one best on another draw kept (default %(default)s)")
    prior.add_argument("--stages", type=positive_int, default=Calibration.stages,
                       help="WoodFisher's stages (default %(default)s)")
    prior.add_argument("--rel-damp", type=positive_float, default=Calibration.rel_damp,
                       help="WoodFisher's relative damping (default %(default)s)")
    prior.set_defaults(func=_prior)
    gate.add_argument("--hypernet", type=Path, default=None,
                      help="the hypernetwork to gate again (default: the shipped one); its network, input priors "
                           "and calibration setting are kept")
    gate.add_argument("--out", type=Path, required=True, help="weights file to write (may be --hypernet's)")
    gate.set_defaults(func=_gate)
    apply = sub.add_parser(
        "apply", formatter_class=HelpFormatter,
        help="prune a saved model (state_dict file) and save the pruned state_dict",
        description="Prune a saved model and torch.save its state_dict to --out. By default the output keeps "
                    "torch.nn.utils.prune's parametrisation (<layer>.weight_orig and <layer>.weight_mask): load "
                    "it with weightcast.prune.load_pruned(model, torch.load(OUT)), or pass it again as --state "
                    "(its masks stay: the weights pruned before stay pruned and count toward --sparsity). With "
                    "--permanent the masks are folded into the weights: a plain state_dict (zeros where pruned) "
                    "that model.load_state_dict reads.")
    apply.add_argument("--model", required=True, help="model name (weightcast.models, or mlp_nobias: "
                       "weightcast.prune.BiasFreeMLP, the bias-free MLP of the prune zoos and benchmarks)")
    apply.add_argument("--model-kwargs", default="{}", help='JSON object of model arguments, e.g. '
                       '\'{"widths": [40, 20]}\'; must match the checkpoint\'s shapes')
    apply.add_argument("--task", default="mnist", help="task that gives the input shape and calibration data")
    apply.add_argument("--data-dir", default=None,
                       help="folder with MNIST, for --task mnist (default $WEIGHTCAST_DATA), whatever the method: "
                            "the command reports the accuracy on the task's validation split before and after "
                            "pruning, and the data-based methods draw their calibration batch from its training "
                            "split")
    apply.add_argument("--state", type=Path, required=True,
                       help="the trained model's state_dict (torch.save); a pruned one written by this command "
                            "is accepted too")
    apply.add_argument("--sparsity", type=_sparsity, required=True,
                       help="fraction of the prunable weights removed, in [0, 1) (0.9 keeps 10%%)")
    apply.add_argument("--method", default="magnitude", choices=METHODS,
                       help=f"pruning method; {', '.join(DATA_BASED)} need calibration data")
    apply.add_argument("--scope", default="global", choices=("global", "layer"),
                       help="prune over all layers at once or each layer to --sparsity (not woodfisher, chita; "
                            "obs: its uniform allocation)")
    apply.add_argument("--seed", type=int, default=0, help="seed of --method random's masks")
    apply.add_argument("--calibration", type=positive_int, default=1024,
                       help="training examples of calibration data for the data-based methods (at most the "
                            "task's training split; the output's calibration_examples says how many were used)")
    apply.add_argument("--out", type=Path, required=True, help="where the pruned state_dict goes (torch.save)")
    apply.add_argument("--threads", type=positive_int, default=None,
                       help="torch CPU threads (default: torch's own choice)")
    apply.add_argument("--permanent", action="store_true",
                       help="fold the masks into the weights: write a plain state_dict (no weight_orig/weight_mask)")
    apply.set_defaults(func=_apply)


def _zoo(args) -> int:
    import torch

    from . import zoo

    torch.set_num_threads(args.threads)
    root = args.zoo or zoo.default_dir()
    for name, specs in zoo.ZOOS.items():
        manifest = zoo.build(root / name, specs(), args.data_dir)
        print(f"{name}: {len(manifest['runs'])} runs in {root / name}")
    return 0


def _train(args) -> int:
    import torch

    from ..data import get_task
    from . import allocation, hypernet, zoo

    _check_out(args.out)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    root = args.zoo or zoo.default_dir()
    loaded = zoo.load_models(root / "train", zoo.train_specs())
    tasks = {name: get_task(name, args.data_dir) for name in {e["spec"]["task"] for e, _ in loaded}}
    val_ids = set(zoo.validation_ids())
    pairs = [(model, tasks[e["spec"]["task"]]) for e, model in loaded if e["id"] not in val_ids]
    val_pairs = [(model, tasks[e["spec"]["task"]]) for e, model in loaded if e["id"] in val_ids]
    net = hypernet.MaskHypernetwork(args.token_size, args.hidden, args.max_shift, args.max_offset)
    start = time.perf_counter()
    targets = (allocation.offset_targets(pairs, examples=args.search_examples, token_size=args.token_size,
                                            min_gain=args.search_min_gain)
               if args.objective == "search" else None)
    log = hypernet.train(net, pairs, steps=args.steps, lr=args.lr, seed=args.seed, val_zoo=val_pairs,
                         val_every=args.val_every, models_per_step=args.models_per_step, targets=targets,
                         shrinks=tuple(args.shrinks))
    seconds = time.perf_counter() - start
    validation = hypernet.validate(net, val_pairs)
    print(json.dumps(validation, indent=1))
    out = args.out
    card = {"name": "weightcast mask hypernetwork", "method": "weightcast.prune.hypernet (module docstring)",
            "command": args.command_line,
            "data": {"zoo": "weightcast.prune.zoo.train_specs()", "tasks": sorted(tasks),
                     "train_runs": [e["id"] for e, _ in loaded if e["id"] not in val_ids],
                     "validation_runs": sorted(val_ids)},
            "validation_note": "mean validation accuracy of the validation runs (full validation split) under "
                               "the hypernetwork's and global magnitude's masks, per sparsity",
            "steps": args.steps, "lr": args.lr, "models_per_step": args.models_per_step, "seed": args.seed,
            "train_seconds": round(seconds, 1),
            "objective": args.objective,
            "offset_targets": None if targets is None else
            [{str(s): [round(v, 3) for v in target.offsets.tolist()] for s, target in per_run.items()}
             for per_run in targets],
            "train_log": log, "validation": validation, "torch": torch.__version__}
    hypernet.save(net, out, card)
    print(f"saved {out} and {out.with_suffix('.json')}")
    return 0


def _prior(args) -> int:
    import torch

    from ..data import get_task
    from . import hypernet, zoo

    source, out = args.hypernet or hypernet.DEFAULT_FILE, args.out
    _check_out(out)
    torch.set_num_threads(args.threads)
    net = hypernet.load(source, priors=False)   # the priors and the gate are made anew
    card = json.loads(source.with_suffix(".json").read_text()) if source.with_suffix(".json").exists() else {}
    root = args.zoo or zoo.default_dir()
    val_ids = set(zoo.validation_ids())
    loaded = zoo.load_models(root / "train", [s for s in zoo.train_specs() if s.run_id in val_ids])
    tasks = {name: get_task(name, args.data_dir) for name in sorted({s.task for s in zoo.train_specs()})}
    start = time.perf_counter()
    hypernet.fit_priors(net, tasks)
    net.calibration = Calibration(samples=args.samples, block_size=args.block_size, draws=args.draws,
                                  stages=args.stages, rel_damp=args.rel_damp)
    row = hypernet.choose_calibration(net, [(model, tasks[e["spec"]["task"]]) for e, model in loaded],
                                      progress=True)
    if "gate" in card:   # `prune gate`'s WoodFisher gate, chosen again just now (against the same scores)
        card["gate"].pop("woodfisher_on_priors", None)
        card["gate"]["method"] = ("weightcast.prune.hypernet.choose_strength (margin_gate): the learned change's "
                                  "gate only; the WoodFisher gate was chosen again after it by prune prior "
                                  "(input_priors)")
    card["input_priors"] = {
        "command": args.command_line,
        "method": "weightcast.prune.prior (module docstring): class means, shared within-class covariance and "
                  "class frequencies of each task's whole training split; MaskHypernetwork.prune runs "
                  "WoodFisher on their samples where `calibrated` is set, as `calibration` says",
        "calibration": asdict(net.calibration),
        "tasks": {name: {"examples": len(task.train_y), "shape": list(net.priors[name].shape)}
                  for name, task in tasks.items()},
        "validation_runs": [e["id"] for e, _ in loaded], "sparsities": list(hypernet.VAL_SPARSITIES),
        **row, "seconds": round(time.perf_counter() - start, 1), "torch": torch.__version__}
    hypernet.save(net, out, {k: v for k, v in card.items() if k != "config"})
    print(f"saved {out} and {out.with_suffix('.json')}")
    return 0


def _gate(args) -> int:
    import torch

    from ..data import get_task
    from ..results import device_name
    from . import hypernet, zoo

    source, out = args.hypernet or hypernet.DEFAULT_FILE, args.out
    _check_out(out)
    torch.set_num_threads(args.threads)
    net = hypernet.load(source)
    card = json.loads(source.with_suffix(".json").read_text()) if source.with_suffix(".json").exists() else {}
    root = args.zoo or zoo.default_dir()
    val_ids = set(zoo.validation_ids())
    loaded = zoo.load_models(root / "train", [s for s in zoo.train_specs() if s.run_id in val_ids])
    tasks = {name: get_task(name, args.data_dir) for name in sorted({e["spec"]["task"] for e, _ in loaded})}
    val_pairs = [(model, tasks[e["spec"]["task"]]) for e, model in loaded]
    start = time.perf_counter()
    learned = hypernet.choose_strength(net, val_pairs, tuple(args.shrinks))
    calibration = hypernet.choose_calibration(net, val_pairs, progress=True)
    for key in calibration:   # the flags and accuracies of `prune prior`'s choice, replaced by this one
        card.get("input_priors", {}).pop(key, None)
    for key in ("validation", "validation_note"):   # the trained network's, before this gate
        card.pop(key, None)
    card["gate"] = {
        "command": args.command_line,
        "method": "weightcast.prune.hypernet.choose_strength, then choose_calibration (margin_gate for both); "
                  "replaces the gate of train_log's last row, prune prior's calibrated flags and the trained network's "
                  "validation summary (the per-run accuracies below give the gated one's)",
        "validation_runs": [e["id"] for e, _ in loaded], "sparsities": list(hypernet.VAL_SPARSITIES),
        "learned_change": learned, "woodfisher_on_priors": calibration,
        "seconds": round(time.perf_counter() - start, 1), "device": device_name("cpu"), "torch": torch.__version__}
    hypernet.save(net, out, {k: v for k, v in card.items() if k != "config"})
    print(f"saved {out} and {out.with_suffix('.json')}")
    return 0


def _model_kwargs(text: str) -> dict:
    try:
        kwargs = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"--model-kwargs {text!r} is not JSON ({exc}); pass a JSON object with quoted keys, "
                         'e.g. --model-kwargs \'{"widths": [40, 20]}\'') from None
    if not isinstance(kwargs, dict):
        raise InputError(f"--model-kwargs {text!r} is not a JSON object; pass e.g. '{{\"widths\": [40, 20]}}'")
    return kwargs


def _check_out(out: Path) -> None:
    if out.is_dir():
        raise InputError(f"--out {out} is a directory; pass a file name, e.g. --out {out / 'pruned.pt'}")
    if not out.parent.is_dir():
        raise InputError(f"--out {out}: the folder {out.parent} does not exist; create it or choose another path")


def _read_state(path: Path) -> dict:
    """The state_dict in ``path`` (torch.save, tensors only); InputError saying what to do otherwise."""
    import torch

    save_it = "save the model's state_dict itself: torch.save(model.state_dict(), FILE)"
    if path.is_dir():
        raise InputError(f"--state {path} is a directory; pass the state_dict's file ({save_it})")
    if not path.is_file():
        raise InputError(f"--state {path}: no such file; pass the trained model's state_dict ({save_it})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 -- any unreadable file is the user's input
        if "Unsupported global" in str(exc):   # torch's text about weights_only would mislead here: not shown
            raise InputError(f"--state {path} holds Python objects besides tensors (a whole model saved with "
                             f"torch.save(model), or a training checkpoint?); {save_it}") from None
        if isinstance(exc, (pickle.UnpicklingError, EOFError, KeyError)) or "zip archive" in str(exc):
            raise InputError(f"--state {path} is not a file torch.save wrote ({type(exc).__name__}); {save_it}") \
                from None
        raise InputError(f"--state {path} cannot be read ({type(exc).__name__}: {clip(str(exc))})") from None
    if not isinstance(state, dict):
        raise InputError(f"--state {path} holds a {type(state).__name__}, not a state_dict; {save_it}")
    return state


def _apply(args) -> int:
    import torch

    from .. import models
    from ..data import get_task
    from .api import load_pruned, make_permanent, prune, sparsity_of
    from .models import registered

    _check_out(args.out)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    kwargs = _model_kwargs(args.model_kwargs)
    state = _read_state(args.state)
    task = get_task(args.task, args.data_dir)
    with registered():
        try:
            model = models.get(args.model, **{**task.model_kwargs(), **kwargs})
        except KeyError as exc:
            raise InputError(f"--model {args.model!r}: {exc.args[0] if exc.args else exc}") from None
        except (TypeError, ValueError) as exc:
            raise InputError(f"--model {args.model} does not take --model-kwargs {args.model_kwargs} ({exc})") \
                from None
    try:
        load_pruned(model, state)
    except (RuntimeError, KeyError) as exc:
        raise InputError(state_misfit(f"--state {args.state} does not fit --model {args.model} with --model-kwargs "
                                      f"{args.model_kwargs}", state, model.state_dict(), exc)) from None
    data = task.eval_tensors("train", args.calibration) if args.method in DATA_BASED else None
    before = task.evaluate(model)["acc"]
    options, said = {}, {}
    if args.method == "random":
        options["generator"] = torch.Generator().manual_seed(args.seed)
    try:
        if args.method == "hypernet":   # say what prunes the model here: the scores, or WoodFisher on a prior (slow)
            from .hypernet import load_default

            options["hypernet"] = net = load_default()
            said["hypernet_decision"] = net.decision(args.sparsity, net.prior_for(model), args.scope)
        start = time.perf_counter()
        prune(model, args.sparsity, args.method, data=data, scope=args.scope, **options)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    seconds = time.perf_counter() - start
    after = task.evaluate(model)["acc"]
    if args.permanent:
        make_permanent(model)
    torch.save(model.state_dict(), args.out)
    print(json.dumps({"method": args.method, "sparsity": sparsity_of(model), "acc_before": before,
                      "acc_pruned": after, "seconds": round(seconds, 3), "permanent": args.permanent,
                      "calibration_examples": None if data is None else len(data[0]), **said,
                      "out": str(args.out)}))
    return 0
