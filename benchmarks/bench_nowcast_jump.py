"""Cost of a nowcast jump against training: measured on CPU (1 thread) or a GPU, estimated for an H100.

    OMP_NUM_THREADS=1 python benchmarks/bench_nowcast_jump.py [--record-every R [R ...]] [--repeats N]
    python benchmarks/bench_nowcast_jump.py --device cuda      # on a GPU machine (tools/gpu_check.sh runs it)

For each model (the study's digits MLP, MNIST LeNet-5 and chars GPT at their study batch sizes, and a
1M-parameter MLP), side by side in one process: the median time of

* one training step (forward, backward, AdamW step on a random batch of the study's size);
* one record (the optimizer engine copying the parameters into its history, ``Bucket.record``);
* one jump on the optimizer engine's path (``NowcastForecaster.forecast``: every parameter forecast one horizon
  ahead from the engine's history buffer, then the finiteness check and the write into the parameters, as
  ``weightcast.optim.engine`` does), with the fused kernel (cpp on the CPU, cuda on a GPU) and with the
  pure-PyTorch reference;
* the study guard's forecast (``NowcastForecaster.predict``: k, k/2, k/4 from one call on the stacked windows; the
  guard's loss evaluations are not included), kernel and reference;
* :class:`weightcast.ForecastEMA` (the forecast slow average, records R apart): one jump period of W x R updates
  with W records and a jump (kernel), and the same W x R updates of a plain EMA (``forecaster=None``: the averaging
  every training step that any EMA of the weights costs); the records and the jump cost the difference.

The quantities are timed in interleaved rounds (one call of each per round; medians and 20th/80th percentiles over
the rounds), so that load changes on a shared machine hit them alike. A jump period is W records and one jump per W
x R training steps (R = record_every, the study's value per task by default). Amortised share = (W records + jump) /
(W x R steps + W records + jump); for ForecastEMA, (W x R updates + W records + jump) / (W x R steps + the same).
Per-jump share = jump / step.

With ``--device cuda`` everything runs on the GPU and each timed call ends with ``torch.cuda.synchronize()``, so
the jump / step column is the measured per-jump share (target <= 5%). The jump time on an H100 is also estimated from the kernel's FLOP and byte counts per element
(``weightcast.ops.nowcast_forecast.flops_per_element``) against NVIDIA's published H100 SXM peaks (FP32 non-tensor
67 TFLOP/s, HBM3 3.35 TB/s), without launch overheads; the training step from its FLOPs (forward + backward,
counted by ``torch.utils.flop_counter``) at the same FP32 peak. Both are roofline lower bounds, so the per-jump
share is the ratio of work, not a measurement; small models on a GPU are launch-bound (their real steps take
longer), which this estimate does not capture.

Writes ``benchmarks/results/nowcast_jump_<device>.csv`` (``cpu`` or the GPU's name; one results schema) and
``.md``, with the load average.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from common import device_name, device_slug
from weightcast import ForecastEMA, models
from weightcast.data import get_task
from weightcast.forecasters import get
from weightcast.history import Bucket
from weightcast.ops import use_backend
from weightcast.ops.nowcast_forecast import flops_per_element
from weightcast.results import write_results
from weightcast.study.tasks import LONG, STUDY_TASKS

RESULTS = Path(__file__).resolve().parent / "results"
H100_FP32_FLOPS = 67e12  # NVIDIA H100 SXM datasheet: FP32 (non-tensor) 67 TFLOP/s
H100_BYTES = 3.35e12  # NVIDIA H100 SXM datasheet: HBM3 3.35 TB/s
GUARD_FRACTIONS = (1.0, 0.5, 0.25)  # weightcast.study.jumps.Jumps' default candidates, 0 (stay) needs no forecast


def cases() -> dict[str, dict]:
    """name -> model kwargs, input maker, batch, the study task whose schedule it follows (None: LONG)."""
    chars = get_task("chars", **STUDY_TASKS["chars-gpt"].task_kwargs)
    block = STUDY_TASKS["chars-gpt"].task_kwargs["block_size"]
    return {
        "digits-mlp": dict(arch="mlp", kwargs={"in_shape": (1, 8, 8), "num_classes": 10,
                                               **STUDY_TASKS["digits-mlp"].model_kwargs},
                           batch=STUDY_TASKS["digits-mlp"].batch_size, task="digits-mlp", input=("image", (1, 8, 8))),
        "mnist-lenet5": dict(arch="lenet5", kwargs={"in_shape": (1, 28, 28), "num_classes": 10},
                             batch=STUDY_TASKS["mnist-lenet5"].batch_size, task="mnist-lenet5",
                             input=("image", (1, 28, 28))),
        "chars-gpt": dict(arch="gpt", kwargs={**chars.model_kwargs(), **STUDY_TASKS["chars-gpt"].model_kwargs},
                          batch=STUDY_TASKS["chars-gpt"].batch_size, task="chars-gpt",
                          input=("tokens", (block, chars.model_kwargs()["vocab_size"]))),
        "mlp-1M": dict(arch="mlp", kwargs={"in_shape": (1, 28, 28), "num_classes": 10, "widths": (1024, 192)},
                       batch=64, task=None, input=("image", (1, 28, 28))),
    }


def make_batch(spec, batch: int, device: torch.device):
    kind, shape = spec
    if kind == "image":
        return torch.randn(batch, *shape, device=device), torch.randint(0, 10, (batch,), device=device)
    block, vocab = shape
    tokens = torch.randint(0, vocab, (batch, block + 1), device=device)
    return tokens[:, :-1], tokens[:, 1:]


def loss_of(model, x, y):
    logits = model(x)
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


def interleaved(fns: dict, repeats: int, warmup: int = 2, sync=lambda: None) -> dict[str, tuple[float, float, float]]:
    """(median, q20, q80) milliseconds of each function, timed in interleaved rounds (one call of each per round),
    so that a change of the shared machine's load hits every quantity alike; ``sync`` (e.g.
    ``torch.cuda.synchronize``) runs before the clock starts and before it stops."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times[key].append((time.perf_counter() - start) * 1e3)
    out = {}
    for key, values in times.items():
        q = statistics.quantiles(values, n=5)
        out[key] = (statistics.median(values), q[0], q[3])
    return out


def jump_work(forecaster) -> tuple[dict, int]:
    """The nowcast kernel's work per element and output row (``flops_per_element``) and the bytes one element
    moves on the engine path: float32 history reads and forecast write, then the engine's read of the forecast and
    write of the parameter (8)."""
    cfg = forecaster.config
    work = flops_per_element(forecaster.window, int(cfg["hidden"]), int(cfg["embed"]), rows=1)
    return work, 4 * work["reads"] + 4 * work["writes"] + 8


def kernel_backend(device: torch.device) -> str:
    """The fused kernel's backend on ``device``: cpp on the CPU, cuda on a GPU."""
    return "cuda" if device.type == "cuda" else "cpp"


def measure(name: str, case: dict, forecaster, record_everys: list[int] | None, repeats: int,
            device: torch.device = torch.device("cpu")) -> tuple[list, dict]:
    torch.manual_seed(0)
    model = models.get(case["arch"], **case["kwargs"]).to(device)
    params = list(model.parameters())
    n = sum(p.numel() for p in params)
    opt = torch.optim.AdamW(params, lr=1e-3)
    x, y = make_batch(case["input"], case["batch"], device)
    kernel = kernel_backend(device)

    def train_step():
        opt.zero_grad(set_to_none=True)
        loss_of(model, x, y).backward()
        opt.step()

    with FlopCounterMode(display=False) as counter:
        loss_of(model, x, y).backward()
    step_flops = counter.get_total_flops()
    window = forecaster.window
    spacing = LONG.record_every if case["task"] is None else STUDY_TASKS[case["task"]].schedule.record_every
    rs = record_everys or [spacing]
    bucket = Bucket([p.detach() for p in params], window)
    for j in range(window):  # a trajectory: W states of AdamW training, `spacing` steps apart
        for _ in range(spacing):
            train_step()
        bucket.record((j + 1) * spacing)
    history = [[p.detach().clone() for p in params] for _ in range(window)]
    steps = list(bucket.slot_steps)
    k = max(1, min(forecaster.k_max, 8))
    target = max(steps) + k * spacing
    ks = sorted({max(1, round(k * f)) for f in GUARD_FRACTIONS}, reverse=True)

    scratch = Bucket([p.detach() for p in params], window)  # records are timed here, the jump's history stays

    def record():
        scratch.record(max(steps))

    def jump():
        out = forecaster.forecast(bucket, steps, target)
        assert all(bool(torch.isfinite(v).all()) for v in out)
        bucket.write(out, list(range(len(out))))

    def guard_forecast():
        windows = [torch.stack([h[i] for h in history]) for i in range(len(params))]
        forecaster.predict(windows, ks)

    average = ForecastEMA(model, forecaster, record_every=spacing, horizon=k * spacing)  # a jump every W x R updates

    plain = ForecastEMA(model, None)  # the same averaging, no records or jumps

    def plain_period():
        for _ in range(average.jump_every):
            plain.update()

    def ema_period():
        for _ in range(average.jump_every):
            average.update()
        assert average.num_updates % average.jump_every == 0 and not average.records

    def on(backend, fn):
        def run():
            with use_backend(backend):
                fn()
        return run

    timed = interleaved({"train_step": train_step, "record": record, f"jump_{kernel}": on(kernel, jump),
                         "jump_reference": on("reference", jump), f"guard_forecast_{kernel}": on(kernel, guard_forecast),
                         "guard_forecast_reference": on("reference", guard_forecast), "ema_period_plain": plain_period,
                         f"ema_period_{kernel}": on(kernel, ema_period)}, repeats,
                        sync=torch.cuda.synchronize if device.type == "cuda" else lambda: None)
    config = {"batch": case["batch"], "threads": torch.get_num_threads(), "window": window, "k": k, "guard_ks": ks,
              "device": str(device)}
    rows = [{"benchmark": "nowcast_jump", "name": f"{name}:{label}", "metric": "time", "unit": "ms",
             "x_name": "params", "x_value": n, "value": med, "q20": q20, "q80": q80, "config": config}
            for label, (med, q20, q80) in timed.items()]
    step, rec = timed["train_step"][0], timed["record"][0]
    summary = {"params": n, "batch": case["batch"], "window": window, "step_flops": step_flops, "times": timed,
               "shares": {}, "kernel": kernel}
    for backend in (kernel, "reference"):
        j = timed[f"jump_{backend}"][0]
        rows.append({"benchmark": "nowcast_jump", "name": f"{name}:jump_{backend}", "metric": "share_of_step",
                     "unit": "fraction", "x_name": "params", "x_value": n, "value": j / step})
        for r in rs:
            period = window * rec + j
            share = period / (window * r * step + period)
            summary["shares"][(backend, r)] = share
            rows.append({"benchmark": "nowcast_jump", "name": f"{name}:jump_{backend}", "metric": "amortised_share",
                         "unit": "fraction", "x_name": "record_every", "x_value": r, "value": share,
                         "config": {"jump_every": window * r, "records_per_period": window, "params": n}})
    ema = timed["ema_period_plain"][0] / average.jump_every  # one averaging update
    ema_extra = timed[f"ema_period_{kernel}"][0] - timed["ema_period_plain"][0]  # W records and the jump
    summary["ema_update_ms"] = ema
    for r in rs:
        total = window * r * step + window * r * ema + ema_extra
        for part, cost in (("forecast_ema_jump", ema_extra), ("forecast_ema_averaging", window * r * ema)):
            summary["shares"][(part, r)] = cost / total
            rows.append({"benchmark": "nowcast_jump", "name": f"{name}:{part}_{kernel}", "metric": "amortised_share",
                         "unit": "fraction", "x_name": "record_every", "x_value": r, "value": cost / total,
                         "config": {"jump_every": window * r, "ema_update_every": 1, "params": n}})
    work, gpu_bytes = jump_work(forecaster)
    jump_gpu = n * max(work["flops"] / H100_FP32_FLOPS, gpu_bytes / H100_BYTES)
    step_gpu = step_flops / H100_FP32_FLOPS
    summary.update(jump_gpu_s=jump_gpu, step_gpu_s=step_gpu, gflops=n * work["flops"] / timed[f"jump_{kernel}"][0] / 1e6)
    rows += [{"benchmark": "nowcast_jump", "name": f"{name}:train_step", "metric": "flops", "unit": "FLOP",
              "x_name": "params", "x_value": n, "value": step_flops, "config": {"counted": "forward+backward"}},
             {"benchmark": "nowcast_jump", "name": f"{name}:jump_{kernel}", "metric": f"{device.type}_throughput",
              "unit": "GFLOP/s", "x_name": "params", "x_value": n, "value": summary["gflops"]},
             {"benchmark": "nowcast_jump", "name": f"{name}:jump_h100_estimate", "metric": "share_of_step_estimate",
              "unit": "fraction", "x_name": "params", "x_value": n, "value": jump_gpu / step_gpu,
              "config": {"estimate": "roofline, not measured", "jump_us": jump_gpu * 1e6,
                         "step_us": step_gpu * 1e6}}]
    return rows, summary


def markdown(summaries: dict, work: dict, gpu_bytes: int, load: tuple, device_name: str) -> str:
    lines = [f"# Nowcast jump cost ({device_name}, {torch.get_num_threads()} CPU thread)", "",
             f"Load average while measuring (1/5/15 min): {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} at the start,"
             f" {load[3]:.2f} / {load[4]:.2f} / {load[5]:.2f} at the end ({os.cpu_count()} cores). Medians of "
             "repeated runs; q20-q80 in the CSV.", "",
             "| model | params | step (ms) | record (ms) | jump kernel (ms) | jump reference (ms) | guard forecast "
             "kernel / reference (ms) | jump / step (kernel) | kernel GFLOP/s | ForecastEMA update / period of W x R "
             "(ms) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, s in summaries.items():
        t, kernel = s["times"], s["kernel"]
        lines.append(f"| {name} | {s['params']:,} | {t['train_step'][0]:.2f} | {t['record'][0]:.3f} | "
                     f"{t[f'jump_{kernel}'][0]:.2f} | {t['jump_reference'][0]:.2f} | "
                     f"{t[f'guard_forecast_{kernel}'][0]:.2f} / {t['guard_forecast_reference'][0]:.2f} | "
                     f"{100 * t[f'jump_{kernel}'][0] / t['train_step'][0]:.0f}% | {s['gflops']:.1f} | "
                     f"{s['ema_update_ms']:.3f} / {t[f'ema_period_{kernel}'][0]:.2f} |")
    lines += ["", "Amortised share of training time (W records + one jump per W x R steps; target <= 1%; ForecastEMA's "
              "records + jump, and its averaging at every step, which any EMA of the weights costs):", "",
              "| model | R (steps) | jump every | kernel | reference | ForecastEMA records + jump (kernel) | "
              "ForecastEMA averaging |", "|---|---|---|---|---|---|---|"]
    for name, s in summaries.items():
        for r in sorted({r for _, r in s["shares"]}):
            lines.append(f"| {name} | {r} | {s['window'] * r} | {100 * s['shares'][(s['kernel'], r)]:.2f}% | "
                         f"{100 * s['shares'][('reference', r)]:.2f}% | "
                         f"{100 * s['shares'][('forecast_ema_jump', r)]:.2f}% | "
                         f"{100 * s['shares'][('forecast_ema_averaging', r)]:.2f}% |")
    lines += ["", f"Per element and output row the kernel does {work['flops']} FLOP (a multiply-add counts 2, a "
              f"ReLU 1) and moves {gpu_bytes} bytes on the engine path (float32: {work['reads']} history values read "
              "over the reduction and element passes, one forecast written, the engine's read of it and write of "
              "the parameter).", "",
              "H100 estimate (not a measurement: roofline at the published H100 SXM FP32 non-tensor 67 TFLOP/s and "
              "3.35 TB/s, no launch overheads; the training step's forward + backward FLOPs at the same FP32 peak):",
              "", "| model | batch | step FLOPs | jump (us, est.) | step (us, est.) | jump / step (est.; target <= "
              "5%) | batch at which the estimate reaches 5% |", "|---|---|---|---|---|---|---|"]
    for name, s in summaries.items():
        ratio = s["jump_gpu_s"] / s["step_gpu_s"]
        lines.append(f"| {name} | {s['batch']} | {s['step_flops']:.3g} | {s['jump_gpu_s'] * 1e6:.2f} | "
                     f"{s['step_gpu_s'] * 1e6:.2f} | {100 * ratio:.0f}% | {s['batch'] * ratio / 0.05:,.0f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--record-every", type=int, nargs="+", default=None,
                        help="record spacings R (steps) for the amortised share; default: the study's per task")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--models", nargs="+", default=None, help="subset of the models (default: all)")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda on a GPU machine")
    parser.add_argument("--out", type=Path, default=None,
                        help="results CSV (default: benchmarks/results/nowcast_jump_<device>.csv)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no GPU is visible to torch here")
    out = args.out or RESULTS / f"nowcast_jump_{device_slug(str(device))}.csv"
    if args.record_every and min(args.record_every) < 1:
        parser.error("--record-every must be >= 1")
    if args.repeats < 2:
        parser.error("--repeats must be >= 2 (the spread needs two timings)")
    torch.set_num_threads(args.threads)
    forecaster = get("nowcast").to(device)
    all_cases = cases()
    names = args.models or list(all_cases)
    unknown = set(names) - set(all_cases)
    if unknown:
        parser.error(f"unknown models {sorted(unknown)}; choose from {list(all_cases)}")
    load = os.getloadavg()
    rows, summaries = [], {}
    for name in names:
        r, summaries[name] = measure(name, all_cases[name], forecaster, args.record_every, args.repeats, device)
        rows += r
    load += os.getloadavg()
    cfg = forecaster.config
    work, gpu_bytes = jump_work(forecaster)
    rows += [{"benchmark": "nowcast_jump", "name": "nowcaster", "metric": "flops_per_element", "unit": "FLOP",
              "value": work["flops"], "config": {"rows": 1, **{k: cfg[k] for k in ("window", "hidden", "embed")}}},
             {"benchmark": "nowcast_jump", "name": "nowcaster", "metric": "bytes_per_element", "unit": "B",
              "value": gpu_bytes, "config": {"dtype": "float32", "path": "engine"}},
             {"benchmark": "nowcast_jump", "name": "machine", "metric": "load_average", "unit": "processes",
              "value": load[0], "config": {"start_1_5_15": load[:3], "end_1_5_15": load[3:]}}]
    write_results(out, rows, device=str(device))
    text = markdown(summaries, work, gpu_bytes, load, device_name(str(device)))
    out.with_suffix(".md").write_text(text)
    print(text)
    print(f"-> {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
