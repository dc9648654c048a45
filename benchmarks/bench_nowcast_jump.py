"""Cost of a nowcast jump against training, on CPU: is it <= 1% of training time amortised over its period?

    python benchmarks/bench_nowcast_jump.py [--threads 1] [--out benchmarks/results/nowcast_jump_cpu.csv]

For each model (the study's digits MLPs, LeNet-5 on MNIST-sized inputs, a 1M-parameter MLP): the median time of
one training step (forward, backward, AdamW step on the study's batch), of one nowcast jump (stack the window,
one forward of the shipped nowcaster for every element, write the parameters; reference PyTorch path) and of
one guarded jump (the same plus the guard's 4 evaluations of a 512-example batch). The amortised cost is the
jump's time over ``jump_every`` (50) training steps. Also printed: the nowcaster's FLOPs and bytes per element,
from which a GPU jump time can be bounded where no GPU was measured.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from weightcast import models
from weightcast.forecasters import get
from weightcast.forecasters.nowcast import nowcast_shapes
from weightcast.results import write_results
from weightcast.study.jumps import Jumps, nowcast_predictor
from weightcast.timing import median_ms

RESULTS = Path(__file__).resolve().parent / "results"
JUMP_EVERY, WINDOW, GUARD_BATCH = 50, 5, 512
CASES = {  # name: (arch, model kwargs, input shape, batch)
    "digits-mlp(64)": ("mlp", {"widths": (64,)}, (1, 8, 8), 32),
    "digits-mlp(48,48,48)": ("mlp", {"widths": (48, 48, 48)}, (1, 8, 8), 32),
    "mnist-lenet5": ("lenet5", {}, (1, 28, 28), 64),
    "mlp-1M": ("mlp", {"widths": (1024, 256)}, (1, 28, 28), 64),
}


def flops_bytes_per_element(config: dict, horizons: int = 1) -> tuple[int, int]:
    """Multiply-adds x 2 of the nowcaster per element for ``horizons`` output rows (hidden layers, then one row
    of the output layer and of the skip per horizon), and the bytes a fused kernel moves per element (W float32
    window values read, one float32 parameter written)."""
    shapes = nowcast_shapes(config)
    per_row = (shapes["w3"][1] + shapes["skip"][1]) * horizons
    flops = 2 * (math.prod(shapes["w1"]) + math.prod(shapes["w2"]) + per_row)
    return flops, 4 * (int(config["window"]) + 1)


def measure(name: str, arch: str, kwargs: dict, in_shape, batch: int, forecaster, repeats: int) -> list[dict]:
    torch.manual_seed(0)
    model = models.get(arch, in_shape=in_shape, num_classes=10, **kwargs)
    params = list(model.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3)
    x, y = torch.randn(batch, *in_shape), torch.randint(0, 10, (batch,))
    gx, gy = torch.randn(GUARD_BATCH, *in_shape), torch.randint(0, 10, (GUARD_BATCH,))

    def train_step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    @torch.no_grad()
    def guard():
        return float(torch.nn.functional.cross_entropy(model(gx), gy))

    names = [n for n, _ in model.named_parameters()]

    def jumper(with_guard):
        j = Jumps(params, nowcast_predictor(forecaster, names), window=WINDOW, record_every=1, ks=[8] * 10 ** 6,
                  guard=guard if with_guard else None)
        for t in range(1, WINDOW):  # fill the window up to the state before the jump
            j.after_step(t)
        history = list(j.history)

        def jump():
            j.history.clear()
            j.history.extend(history)
            j.after_step(WINDOW)
        return jump

    n = sum(p.numel() for p in params)
    step = median_ms(train_step, "cpu", repeats=repeats)
    rows = []
    for label, fn in (("train_step", train_step), ("nowcast_jump", jumper(False)),
                      ("nowcast_jump_guarded", jumper(True))):
        med, q20, q80 = step if label == "train_step" else median_ms(fn, "cpu", repeats=repeats)
        rows.append({"benchmark": "nowcast_jump", "name": f"{name}:{label}", "metric": "time", "unit": "ms",
                     "x_name": "params", "x_value": n, "value": med, "q20": q20, "q80": q80,
                     "config": {"batch": batch, "jump_every": JUMP_EVERY, "threads": torch.get_num_threads()}})
        if label != "train_step":
            rows.append({"benchmark": "nowcast_jump", "name": f"{name}:{label}", "metric": "amortised_share",
                         "unit": "fraction", "x_name": "params", "x_value": n,
                         "value": med / (med + JUMP_EVERY * step[0]),
                         "config": {"jump_every": JUMP_EVERY}})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, default=RESULTS / "nowcast_jump_cpu.csv")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    forecaster = get("nowcast")
    flops, nbytes = flops_bytes_per_element(forecaster.config)
    print(f"nowcaster: {flops} FLOPs and {nbytes} bytes (fused) per element")
    rows = []
    for name, (arch, kwargs, in_shape, batch) in CASES.items():
        rows += measure(name, arch, kwargs, in_shape, batch, forecaster, args.repeats)
    print("| model | params | train step (ms) | jump (ms) | guarded jump (ms) | jump share over 50 steps | "
          "guarded share |")
    print("|---|---|---|---|---|---|---|")
    by = {r["name"] + r["metric"]: r for r in rows}
    for name in CASES:
        s, j, g = (by[f"{name}:{k}time"] for k in ("train_step", "nowcast_jump", "nowcast_jump_guarded"))
        js, gs = (by[f"{name}:{k}amortised_share"]["value"] for k in ("nowcast_jump", "nowcast_jump_guarded"))
        print(f"| {name} | {s['x_value']:,} | {s['value']:.3f} | {j['value']:.3f} | {g['value']:.3f} | "
              f"{100 * js:.2f}% | {100 * gs:.2f}% |")
    rows.append({"benchmark": "nowcast_jump", "name": "nowcaster", "metric": "flops_per_element", "unit": "FLOP",
                 "value": flops})
    rows.append({"benchmark": "nowcast_jump", "name": "nowcaster", "metric": "bytes_per_element", "unit": "B",
                 "value": nbytes})
    write_results(args.out, rows, device="cpu")
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
