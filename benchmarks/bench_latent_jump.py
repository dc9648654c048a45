"""Cost of a forecast jump of each forecaster on real models, against one SGD step and one training step, and
the memory of each forecaster's history.

For LeNet-5 (MNIST shape), ResNet-18 (CIFAR shape, 11.2M parameters) and the small GPT (chars study config), with
``ForecastSGD(window=5)`` and forecasters linear, latent (shipped autoencoder) and farcast / wnn when registered:

* ``record_ms``: one record (linear: a copy into the ring; latent: tokenise + encode, the fused tokenize_encode op
  and the encoder MLP); ``forecast_ms``: the forecast written into the parameters (linear: one lincomb pass;
  latent: latent line + decoder + the fused decode_overwrite op, plus the finiteness check); ``jump_ms`` = both
  (what the optimizer does at a jump step);
* ``sgd_step_ms``: ``torch.optim.SGD(momentum=0.9)`` step; ``train_step_ms``: forward + backward + that step on a
  batch (128 images, or 32 x 64 characters for the GPT);
* ``jump_over_train`` = jump_ms / train_step_ms, and ``overhead_per_step`` = (record_ms / record_every +
  forecast_ms / jump_every) / train_step_ms for the study's schedule (record every 10, jump every 50);
* ``history_MB`` (the window) and ``maps_MB`` (latent: the tokeniser's spans and token layers, and the layer
  scales), against ``params_MB``.

    python benchmarks/bench_latent_jump.py [--device cpu|cuda] [--models lenet5 resnet18 gpt] [--repeats 5]

writes ``benchmarks/results/latent/jump_<device>.csv`` (weightcast.results schema: one row per metric, x = model) and
a markdown table beside it (.md); ``--ops-only`` writes ``ops_<device>.csv`` and .md.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import weightcast as wc  # noqa: E402
from weightcast import models  # noqa: E402
from common import RESULTS, device_name, device_slug, long_rows, median_ms, write_results  # noqa: E402
from weightcast.cli_common import DocstringHelpFormatter, positive_int  # noqa: E402

MODELS = ("lenet5", "resnet18", "gpt")
# metric -> unit of the jump rows and of the --ops-only rows
JUMP_METRICS = {"record_ms": "ms", "forecast_ms": "ms", "jump_ms": "ms", "sgd_step_ms": "ms", "train_step_ms": "ms",
                "jump_over_sgd": "ratio", "jump_over_train": "ratio", "overhead_per_step": "ratio",
                "params_MB": "MiB", "history_MB": "MiB", "maps_MB": "MiB", "history_over_params": "ratio"}
OPS_METRICS = {"tokenize_encode_ms": "ms", "decode_overwrite_ms": "ms"}


def build(name: str, device: str):
    """(model, make_batch, loss_fn) for the benchmark's three models."""
    if name == "lenet5":
        model = models.get("lenet5", in_shape=(1, 28, 28), num_classes=10)
        x, y = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))
    elif name == "resnet18":
        model = models.get("resnet18", in_shape=(3, 32, 32), num_classes=10)
        x, y = torch.randn(128, 3, 32, 32), torch.randint(0, 10, (128,))
    elif name == "gpt":
        model = models.get("gpt", vocab_size=96, block_size=64, n_layer=2, n_head=4, n_embd=64)
        x, y = torch.randint(0, 96, (32, 64)), torch.randint(0, 96, (32, 64))
    else:
        raise ValueError(f"unknown model {name!r}")
    model = model.to(device)
    x, y = x.to(device), y.to(device)

    def loss():
        out = model(x)
        return torch.nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))

    return model, loss


def bench_model(name: str, device: str, forecasters: list[str], repeats: int) -> list[dict]:
    torch.manual_seed(0)
    model, loss = build(name, device)
    params = [p for p in model.parameters()]
    n = sum(p.numel() for p in params)
    sgd = torch.optim.SGD(params, lr=1e-3, momentum=0.9)

    def train_step():
        sgd.zero_grad()
        loss().backward()
        sgd.step()

    train_ms = median_ms(train_step, device, repeats, warmup=1)[0]
    sgd_ms = median_ms(sgd.step, device, repeats, warmup=1)[0]
    rows = []
    for fname in forecasters:
        opt = wc.ForecastSGD(params, lr=1e-3, momentum=0.9, forecaster=fname, window=5, record_every=1,
                             jump_every=10**9)
        engine = opt.engine
        for t in range(5):
            opt.step()
        ready = [(gi, b, list(range(len(b.params)))) for gi, b in engine.buckets]
        clock = [engine.step_count]

        def record():  # one more snapshot, one step later (the ring keeps the last 5)
            clock[0] += 1
            for _, b, _ in ready:
                b.record(clock[0])

        forecast = lambda: engine._forecast_all(ready, clock[0] + 5)  # noqa: E731
        with torch.no_grad():
            record_ms = median_ms(record, device, repeats, warmup=1)[0]
            forecast_ms = median_ms(forecast, device, repeats, warmup=1)[0]
        f = engine.forecaster
        hist = sum(b.history.numel() * b.history.element_size() for _, b, _ in ready)
        maps = sum(f.map_bytes(b) for _, b, _ in ready) if hasattr(f, "map_bytes") else 0
        kernel = "tokenize_encode" if fname.startswith("latent") else "lincomb"
        jump = record_ms + forecast_ms
        rows.append({"model": name, "params": n, "forecaster": fname,
                     "backend": wc.ops.select_backend(kernel, torch.device(device)),
                     "record_ms": round(record_ms, 3), "forecast_ms": round(forecast_ms, 3),
                     "jump_ms": round(jump, 3), "sgd_step_ms": round(sgd_ms, 3), "train_step_ms": round(train_ms, 3),
                     "jump_over_sgd": round(jump / sgd_ms, 3), "jump_over_train": round(jump / train_ms, 4),
                     "overhead_per_step": round((record_ms / 10 + forecast_ms / 50) / train_ms, 5),
                     "params_MB": round(n * 4 / 2**20, 2), "history_MB": round(hist / 2**20, 2),
                     "maps_MB": round(maps / 2**20, 2), "history_over_params": round(hist / (n * 4), 3)})
        print(" ".join(f"{k}={v}" for k, v in rows[-1].items()), flush=True)
        # give the parameters back their own storage for the next optimizer
        del opt, engine, ready
    return rows


def bench_ops(name: str, device: str, repeats: int) -> list[dict]:
    """The two fused ops alone on the model's tokens with the shipped autoencoder's sizes, on every backend that
    runs here (the reference is the unfused PyTorch composition: gather, matmul, scatter)."""
    from weightcast.wsl import Tokenizer, load_autoencoder

    model, _ = build(name, device)
    params = list(model.parameters())
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    ae = load_autoencoder().to(device)
    tok = Tokenizer.for_params(params, ae.token_size)
    K = tok.num_tokens
    scale = torch.ones(K, device=device)
    bias = ae.first_layer_bias(tok.positions).detach().contiguous()
    hidden = torch.randn(K, ae.hidden, device=device)
    rows = []
    backends = [b for b in wc.ops.available_backends(device, "tokenize_encode") if not (device == "cpu" and
                                                                                           b == "triton")]
    for backend in backends:
        with wc.ops.use_backend(backend), torch.no_grad():
            encode = lambda: wc.ops.tokenize_encode(flat, tok.spans, scale, ae.enc_w, bias)  # noqa: E731
            out = flat.clone()
            decode = lambda: wc.ops.decode_overwrite(out, hidden, ae.dec_w, None, tok.spans, scale, True)  # noqa: E731
            enc = median_ms(encode, device, repeats, warmup=1)[0]
            dec = median_ms(decode, device, repeats, warmup=1)[0]
        rows.append({"model": name, "tokens": K, "backend": backend, "tokenize_encode_ms": round(enc, 3),
                     "decode_overwrite_ms": round(dec, 3)})
        print(rows[-1], flush=True)
    return rows


def markdown(title: str, rows: list[dict], cols: list[str]) -> str:
    return "\n".join([title, "", "| " + " | ".join(cols) + " |", "|---" * len(cols) + "|"] +
                     ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=DocstringHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS, help="models to time")
    parser.add_argument("--repeats", type=positive_int, default=5, help="timed calls per median")
    parser.add_argument("--out", type=Path, default=None,
                        help="results CSV (default: benchmarks/results/latent/jump_<device>.csv, or ops_<device>.csv "
                             "with --ops-only); the markdown table goes beside it")
    parser.add_argument("--ops-only", action="store_true", help="time the two fused ops per backend instead")
    args = parser.parse_args(argv)
    if args.repeats < 2:
        parser.error("--repeats must be at least 2 (the quantiles need two timings)")
    where = f"{device_name(args.device)} ({args.device}, torch threads {torch.get_num_threads()})"
    if args.ops_only:
        rows = [r for m in args.models for r in bench_ops(m, args.device, args.repeats)]
        out = args.out or RESULTS / "latent" / f"ops_{device_slug(args.device)}.csv"
        write_results(out, long_rows("latent_ops", rows, "{backend}", "model", "model", OPS_METRICS,
                                     config_keys=("tokens",)), device=args.device)
        config = ", ".join(f"{k} {v}" for k, v in wc.wsl.load_autoencoder().config().items())
        out.with_suffix(".md").write_text(markdown(f"# Fused latent ops on {where}; shipped autoencoder ({config})",
                                                   rows, list(rows[0])))
        print(f"wrote {out} and {out.with_suffix('.md').name}")
        return 0
    forecasters = [f for f in ("linear", "farcast", "wnn", "latent") if f in wc.forecasters.names()]
    rows = [r for m in args.models for r in bench_model(m, args.device, forecasters, args.repeats)]
    out = args.out or RESULTS / "latent" / f"jump_{device_slug(args.device)}.csv"
    write_results(out, long_rows("latent_jump", rows, "{forecaster}/{backend}", "model", "model", JUMP_METRICS,
                                 config_keys=("params",)), device=args.device)
    cols = ["model", "params", "forecaster", "backend", "record_ms", "forecast_ms", "jump_ms", "train_step_ms",
            "jump_over_train", "overhead_per_step", "jump_over_sgd", "params_MB", "history_MB", "maps_MB"]
    out.with_suffix(".md").write_text(markdown(f"# Jump cost on {where}", rows, cols))
    print(f"wrote {out} and {out.with_suffix('.md').name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
