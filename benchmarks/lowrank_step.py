"""Per-step time and peak training memory of dense training vs three-pass KLS vs one-pass KLS.

    python benchmarks/lowrank_step.py [--repeats 15] [--threads 1]

Models on MNIST-shaped batches (random inputs: the cost of a step does not depend on the pixel values), batch
128, SGD lr 0.05: the DLRT paper's LeNet-5 (low-rank conv1, conv2, fc1 at ranks 9/16/28, the paper's ranks at
theta = 0.15) and an MLP 784-1024-1024-10 (both hidden layers at rank 32). The KLS runs keep the rank fixed
(``fixed_rank=True``) so every step costs the same. Time: the median (20th/80th percentiles) of ``--repeats``
steps after 3 warm-up steps, the three variants interleaved in one process. Peak memory: the tensors that live
across steps (parameters, optimizer state, the batch; gradients are set to None before) plus the highest point of
the allocation timeline of one step, gradients included, as torch's profiler records it (``profile_memory=True``). Writes
benchmarks/results/lowrank/step_cpu.{csv,md}.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from common import RESULTS, write_results
from weightcast import lowrank as lr
from weightcast.models import GPT, MLP

OUT = RESULTS / "lowrank"
VARIANTS = ("dense", "kls-3pass", "kls-1pass")
MODELS = ("lenet5-ref", "mlp-1024", "gpt-mlp")
VOCAB = 96


def build(model_name: str, variant: str):
    torch.manual_seed(0)
    if model_name == "lenet5-ref":
        model, ranks = lr.ReferenceLeNet5(), {"conv1": 9, "conv2": 16, "fc1": 28}
    elif model_name == "mlp-1024":
        model, ranks = MLP((1, 28, 28), 10, (1024, 1024)), {"layers.0": 32, "layers.2": 32}
    else:
        model = GPT(VOCAB, block_size=64)
        ranks = {f"blocks.{i}.mlp.{j}": 16 for i in range(2) for j in (0, 2)}
    if variant == "dense":
        return model, torch.optim.SGD(model.parameters(), lr=0.05)
    for name, r in ranks.items():
        lr.to_low_rank(model, [name], rank=r)
    cls = lr.KLS if variant == "kls-1pass" else lr.KLSThreePass
    return model, cls(model, lr=0.05, theta=0.15, fixed_rank=True)


def batch(model_name: str):
    g = torch.Generator().manual_seed(0)
    if model_name == "gpt-mlp":
        ids = torch.randint(0, VOCAB, (32, 65), generator=g)
        return ids[:, :-1], ids[:, 1:]
    return torch.randn(128, 1, 28, 28, generator=g), torch.randint(0, 10, (128,), generator=g)


def make_step(model, opt, variant, x, y):
    def loss():
        out = model(x)
        return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))

    if variant == "kls-3pass":
        return lambda: opt.step(loss)

    def step():
        opt.zero_grad()
        loss().backward()
        opt.step()
    return step


def live_bytes(model, opt, x, y) -> int:
    tensors = [*model.parameters(), *(p.grad for p in model.parameters() if p.grad is not None), x, y]
    stack = list(opt.state.values())
    while stack:
        v = stack.pop()
        if isinstance(v, torch.Tensor):
            tensors.append(v)
        elif isinstance(v, dict):
            stack.extend(v.values())
    seen, total = set(), 0
    for t in tensors:
        key = t.untyped_storage().data_ptr()
        if key not in seen:
            seen.add(key)
            total += t.untyped_storage().nbytes()
    return total


def step_peak_bytes(step) -> int:
    """Highest point of the allocation timeline of one ``step()`` (bytes above its start)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = sorted((e for e in prof.events() if e.self_cpu_memory_usage), key=lambda e: e.time_range.start)
    current = peak = 0
    for e in events:
        current += e.self_cpu_memory_usage
        peak = max(peak, current)
    return peak


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows, lines = [], []
    load = os.getloadavg()[0]
    for model_name in MODELS:
        x, y = batch(model_name)
        runs = {v: build(model_name, v) for v in VARIANTS}
        steps = {v: make_step(*runs[v], v, x, y) for v in VARIANTS}
        times = {v: [] for v in VARIANTS}
        for _ in range(3):
            for v in VARIANTS:
                steps[v]()
        for _ in range(args.repeats):  # interleaved, so load changes hit every variant alike
            for v in VARIANTS:
                start = time.perf_counter()
                steps[v]()
                times[v].append((time.perf_counter() - start) * 1e3)
        for v in VARIANTS:
            model, opt = runs[v]
            opt.zero_grad()  # measured from the state between steps without gradients, for every variant
            persistent = live_bytes(model, opt, x, y)
            transient = step_peak_bytes(steps[v])
            q = statistics.quantiles(times[v], n=5)
            med = statistics.median(times[v])
            config = {"model": model_name, "batch": len(x), "threads": args.threads, "load1": load,
                      "ranks": opt.ranks() if hasattr(opt, "ranks") else None}
            rows.append(dict(benchmark="lowrank_step", name=v, metric="step_time", unit="ms", x_name="model",
                             x_value=model_name, value=med, q20=q[0], q80=q[3], config=config))
            rows.append(dict(benchmark="lowrank_step", name=v, metric="peak_memory", unit="MiB", x_name="model",
                             x_value=model_name, value=(persistent + transient) / 2**20, config=config))
            rows.append(dict(benchmark="lowrank_step", name=v, metric="persistent_memory", unit="MiB",
                             x_name="model", x_value=model_name, value=persistent / 2**20, config=config))
            lines.append(f"| {model_name} | {v} | {med:.1f} ({q[0]:.1f}-{q[3]:.1f}) | "
                         f"{statistics.median(times['kls-3pass']) / med:.2f}x | "
                         f"{(persistent + transient) / 2**20:.2f} | {persistent / 2**20:.2f} |")
            print(lines[-1], flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    write_results(OUT / "step_cpu.csv", rows, device="cpu")
    header = (f"Per-step time and peak training memory, batch 128 (GPT: 32 x 64 tokens), {args.threads} thread(s), CPU "
              f"(1-min load average {load:.1f} on a shared 2-core machine at the start); "
              "ranks fixed (LeNet-5 9/16/28, MLP 32/32, GPT MLPs 16)\n\n"
              "| model | variant | step ms median (q20-q80) | 3-pass time / this | peak MiB | persistent MiB |\n"
              "|---|---|---|---|---|---|\n")
    (OUT / "step_cpu.md").write_text(header + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
