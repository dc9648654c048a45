"""Time-to-accuracy of ForecastSGD with the latent forecaster against SGD and the linear forecaster, with the
compression ratio T/d swept over several autoencoders (one study per task, the held-out one included).

Each autoencoder file is registered as a forecaster ``latent-d<d>`` (``wc.forecasters.register``), so the study's
methods are ``forecast-sgd:latent-d4`` etc.; ``forecast-sgd:latent`` is the shipped default. Farcast / wnn are
compared too when they are registered in this checkout (``--methods`` lists what to run).

    python benchmarks/latent_study.py --tasks digits-mlp mnist-lenet5-wide --seeds 3 --data-dir DATA \\
        --ae AE1.safetensors ... --out benchmarks/results/latent/tta
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import weightcast as wc
from weightcast.forecasters.latent import LatentForecaster
from weightcast.study import STUDY_TASKS, markdown_table, plot, run_study, summarise, write_csv
from weightcast.wsl import load_autoencoder


def register_autoencoders(paths: list[Path], direct: bool = False, farcast: bool = False) -> list[str]:
    """Register every autoencoder as forecaster ``latent-d<d>`` (``-h<hidden>`` added for a hidden width other than
    128, ``-tf`` for a transformer mixer), and ``<name>-direct`` (the direct form) when ``direct``,
    ``<name>-farcast`` (farcast trajectory in latent space) when ``farcast``; return the names."""
    names = []
    for path in paths:
        ae = load_autoencoder(path)
        name = f"latent-d{ae.latent}" + ("" if ae.hidden == 128 else f"-h{ae.hidden}") + \
            ("-tf" if ae.config().get("mixer") == "transformer" else "")
        variants = {name: {}}
        if direct:
            variants[name + "-direct"] = {"residual": False}
        if farcast:
            variants[name + "-farcast"] = {"trajectory": "farcast"}
        for variant, options in variants.items():
            wc.forecasters.register(variant, lambda ae=ae, options=options, **kw: LatentForecaster(ae, **options,
                                                                                                    **kw))
            names.append(variant)
    return names


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(STUDY_TASKS), choices=list(STUDY_TASKS))
    parser.add_argument("--methods", nargs="+", default=None,
                        help="default: sgd, forecast-sgd:linear and forecast-sgd:<each registered --ae>")
    parser.add_argument("--ae", type=Path, nargs="*", default=[])
    parser.add_argument("--direct", action="store_true", help="also run the direct form of each autoencoder")
    parser.add_argument("--farcast", action="store_true",
                        help="also run each autoencoder with the farcast trajectory in latent space")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sgd-lrs", type=float, nargs="+", default=None,
                        help="override the SGD learning-rate grid (one value: no tuning, one lr for every method)")
    parser.add_argument("--budget", type=int, default=None, help="override the tasks' step budgets")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = register_autoencoders(args.ae, args.direct, args.farcast)
    methods = args.methods or ["sgd", "forecast-sgd:linear"] + [f"forecast-sgd:{n}" for n in names]
    args.out.mkdir(parents=True, exist_ok=True)
    for key in args.tasks:
        study = STUDY_TASKS[key]
        start = time.perf_counter()
        lrs = {"sgd": tuple(args.sgd_lrs)} if args.sgd_lrs else None
        results = run_study(study, methods=methods, seeds=args.seeds, data_dir=args.data_dir, lrs=lrs,
                            budget=args.budget, progress=False)
        title = f"{key}{' (held out)' if study.held_out else ''}"
        table = markdown_table(summarise(results, study.goal), study.goal, title)
        print(table, flush=True)
        (args.out / f"tta_{key}.md").write_text(table)
        write_csv(results, args.out / f"tta_{key}.csv", key)
        plot(results, study.goal, args.out / f"tta_{key}.png", title)
        (args.out / f"tta_{key}.json").write_text(json.dumps(
            {"task": key, "methods": methods, "seeds": args.seeds, "sgd_lrs": args.sgd_lrs, "budget": args.budget,
             "wall_s": round(time.perf_counter() - start, 1),
             "summary": summarise(results, study.goal)}, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
