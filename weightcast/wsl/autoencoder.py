"""Weight autoencoder: each token (with its position) to a latent of size d and back, trained on zoo trajectories.

Numerics of one token x (T,) float32, already divided by its layer's scale (see :meth:`Tokenizer.layer_rms`), with
position p (P,):

    encode:  h1 = enc_w @ x + enc_pos @ p + enc_b          (H,)   -- the fused tokenize_encode op computes this
             z  = enc_out(act(enc_mid(act(h1))))            (d,)
    decode:  g  = act(dec_mid(act(dec_in([z, p]))))         (H,)
             x' = dec_w @ g + dec_b                         (T,)   -- the fused decode_overwrite op computes this

act is SiLU; H the hidden width. The position term ``enc_pos @ p + enc_b`` is a constant per token of a model, so
it is precomputed once (:meth:`WeightAutoencoder.first_layer_bias`) and the first layer of the encoder reads the
raw weights only.

Mixer (the middle layer of encoder and decoder): ``mixer="mlp"`` (default) is the per-token Linear(H, H) above
(enc_mid, dec_mid); every token is coded on its own. ``mixer="transformer"`` replaces each of them by one pre-norm
transformer encoder block (:class:`WindowBlock`) over windows of ``window`` consecutive tokens of the model (the
tokeniser's order: layer by layer, row by row, chunk by chunk; a window may span a layer boundary, the positions
tell the layers apart). The first and last layers stay per token, so the fused ops are unchanged. A token's latent
then depends on the other tokens of its window: whoever codes the tokens of a model in blocks must cut them into
blocks of :attr:`WeightAutoencoder.token_block_multiple` tokens (1 for the MLP, ``window`` for the transformer)
counted from token 0 (the latent forecaster rounds its ``block_tokens`` down to a multiple of it).

Training (:func:`train_autoencoder`) samples pairs of snapshots (s_t, s_{t+k}) of one zoo run, k in 1..max_gap,
normalises both with the layer scales of s_t (as the latent forecaster does over one window) and minimises the
relative reconstruction error of both plus ``diff_weight`` times the relative error on the *difference*
``dec(enc(s_{t+k})) - dec(enc(s_t))`` against ``s_{t+k} - s_t``: a forecast moves the weights by such
differences, so that is the error that lands in the parameters with the residual jump.
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from ..errors import InputError

from .tokenizer import POSITION_FEATURES, Tokenizer

DEFAULT_WEIGHTS = Path(__file__).with_name("weights") / "latent_ae.safetensors"


MIXERS = ("mlp", "transformer")


class WindowBlock(nn.Module):
    """One pre-norm transformer encoder block applied to windows of ``window`` consecutive rows.

    forward: x (K, H) float32 -> (K, H). The rows are zero-padded to n = ceil(K / window) windows, viewed as
    (n, window, H) and mixed by

        y = x + proj(attention(norm1(x)))        multi-head self-attention within each window (``heads`` heads of
                                                  H / heads, scaled dot product, no dropout)
        y = y + ff_out(silu(ff_in(norm2(y))))    per row, H -> 2H -> H

    then the padding rows are dropped. The padding rows are masked out as keys, so a real row's output depends only
    on the real rows of its window (the same as a window of fewer rows); LayerNorms are per row.
    """

    def __init__(self, width: int, window: int, heads: int):
        super().__init__()
        self.window, self.heads = window, heads
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.ff_in = nn.Linear(width, 2 * width)
        self.ff_out = nn.Linear(2 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        K, H = x.shape
        w = self.window
        n = -(-K // w)
        pad = n * w - K
        x = F.pad(x, (0, 0, 0, pad)).view(n, w, H)
        mask = None
        if pad:  # (n, 1, 1, w): True = a key that takes part; only the last window has padding
            mask = torch.ones(n, 1, 1, w, dtype=torch.bool, device=x.device)
            mask[-1, :, :, w - pad:] = False
        q, k, v = self.qkv(self.norm1(x)).view(n, w, 3, self.heads, H // self.heads).permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (n, heads, w, H / heads)
        x = x + self.proj(attn.transpose(1, 2).reshape(n, w, H))
        x = x + self.ff_out(F.silu(self.ff_in(self.norm2(x))))
        return x.reshape(n * w, H)[:K]


class WeightAutoencoder(nn.Module):
    """Token autoencoder (module docstring): token_size T, latent d, hidden H.

    mixer: "mlp" (the middle layers are per-token Linear(H, H)) or "transformer" (each is a :class:`WindowBlock`
    over windows of ``window`` consecutive tokens, ``heads`` attention heads; H must be a multiple of ``heads``).
    ``window`` (>= 1) and ``heads`` are ignored by the MLP. Every method maps K tokens to K rows.
    """

    def __init__(self, token_size: int = 64, latent: int = 8, hidden: int = 128, mixer: str = "mlp",
                 window: int = 16, heads: int = 4):
        super().__init__()
        if min(token_size, latent, hidden) < 1:
            raise InputError(f"token_size, latent and hidden must be >= 1, got {token_size}, {latent}, {hidden}")
        if mixer not in MIXERS:
            raise InputError(f"mixer must be one of {MIXERS}, got {mixer!r}")
        if window < 1:
            raise InputError(f"window must be >= 1 token, got {window}")
        if mixer == "transformer":
            if heads < 1 or hidden % heads:
                raise InputError(f"the transformer mixer needs hidden ({hidden}) to be a multiple of heads ({heads})")
        self.token_size, self.latent, self.hidden = token_size, latent, hidden
        self.mixer, self.window, self.heads = mixer, window, heads
        P = POSITION_FEATURES
        self.enc_w = nn.Parameter(torch.randn(hidden, token_size) / math.sqrt(token_size))
        self.enc_pos = nn.Parameter(torch.randn(hidden, P) / math.sqrt(P))
        self.enc_b = nn.Parameter(torch.zeros(hidden))
        # the middle layers: per token (Linear) or over token windows (WindowBlock), (K, H) -> (K, H) either way
        self.enc_mid = nn.Linear(hidden, hidden) if mixer == "mlp" else WindowBlock(hidden, window, heads)
        self.enc_out = nn.Linear(hidden, latent)
        self.dec_in = nn.Linear(latent + P, hidden)
        self.dec_mid = nn.Linear(hidden, hidden) if mixer == "mlp" else WindowBlock(hidden, window, heads)
        self.dec_w = nn.Parameter(torch.randn(token_size, hidden) / math.sqrt(hidden))
        self.dec_b = nn.Parameter(torch.zeros(token_size))

    @property
    def token_block_multiple(self) -> int:
        """Tokens of a model may be coded in separate calls only in blocks of a multiple of this many tokens,
        counted from token 0 (1 for the MLP; ``window`` for the transformer, whose windows must stay whole)."""
        return 1 if self.mixer == "mlp" else self.window

    def config(self) -> dict:
        """Constructor arguments: token_size, latent, hidden, plus mixer, window and heads for the transformer
        (an MLP's config has the three keys only, as files saved before the mixer option have)."""
        config = {"token_size": self.token_size, "latent": self.latent, "hidden": self.hidden}
        if self.mixer != "mlp":
            config.update(mixer=self.mixer, window=self.window, heads=self.heads)
        return config

    def first_layer_bias(self, positions: torch.Tensor) -> torch.Tensor:
        """(K, H) position term of the first encoder layer for positions (K, P)."""
        return positions @ self.enc_pos.t() + self.enc_b

    def encode_hidden(self, h1: torch.Tensor) -> torch.Tensor:
        """Latents (K, d) from the first layer's pre-activation h1 (K, H) of tokens 0..K-1 of a model (or of a
        block of them starting at a multiple of :attr:`token_block_multiple`)."""
        return self.enc_out(F.silu(self.enc_mid(F.silu(h1))))

    def encode(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Latents (K, d) of normalised tokens (K, T) at positions (K, P)."""
        return self.encode_hidden(tokens @ self.enc_w.t() + self.first_layer_bias(positions))

    def decoder_position_term(self, positions: torch.Tensor) -> torch.Tensor:
        """(K, H) position term of the decoder's first layer for positions (K, P)."""
        return positions @ self.dec_in.weight[:, self.latent:].t() + self.dec_in.bias

    def decode_hidden(self, z: torch.Tensor, positions: torch.Tensor,
                      position_term: torch.Tensor | None = None) -> torch.Tensor:
        """Last hidden activations (K, H) of the decoder for latents (K, d) of consecutive tokens (as for
        :meth:`encode_hidden`); ``position_term`` (:meth:`decoder_position_term`) may be passed when several latents
        of one model are decoded."""
        if position_term is None:
            position_term = self.decoder_position_term(positions)
        return F.silu(self.dec_mid(F.silu(z @ self.dec_in.weight[:, :self.latent].t() + position_term)))

    def decode(self, z: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Normalised tokens (K, T) for latents (K, d)."""
        return self.decode_hidden(z, positions) @ self.dec_w.t() + self.dec_b


KIND = "latent-ae"  # the kind of autoencoder weight files (weightcast.weights_io)


def _state_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the state dict of ``WeightAutoencoder(**config)`` (built on the meta device)."""
    with torch.device("meta"):
        model = WeightAutoencoder(**config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def save_autoencoder(model: WeightAutoencoder, path: str | os.PathLike, card: dict) -> None:
    """Weights to ``path`` and ``card`` (plus the config) beside it as ``.json``, both atomically, in the project's
    weight-file format (:mod:`weightcast.weights_io`, kind ``"latent-ae"``). Non-finite weights raise
    :class:`~weightcast.weights_io.WeightFileError` and nothing is written."""
    from ..weights_io import save_weights

    save_weights(path, model.state_dict(), kind=KIND, config=model.config(), card=dict(card, config=model.config()))


def load_autoencoder(path: str | os.PathLike | None = None) -> WeightAutoencoder:
    """The autoencoder saved at ``path`` (default: the weights shipped with the package), in eval mode. A config
    without ``mixer`` is an MLP. Raises :class:`~weightcast.weights_io.WeightFileError` (a ValueError) naming the
    path for a missing, truncated, non-safetensors, wrong-kind, mis-shaped or non-finite file."""
    from ..weights_io import load_weights

    path = Path(path) if path is not None else DEFAULT_WEIGHTS
    config, state = load_weights(path, KIND, _state_shapes, remake=f"weightcast ae train --zoo DIR --out {path}")
    model = WeightAutoencoder(**config)
    model.load_state_dict(state)
    return model.eval()


class _RunTokens:
    """One zoo run tokenised: tokens (S, K, T), positions (K, P), token_layer (K,), mask (K, T)."""

    def __init__(self, flat: torch.Tensor, shapes: list, token_size: int, group: str):
        tok = Tokenizer(shapes, token_size)
        self.tokenizer = tok
        self.tokens = tok.tokenize(flat)  # (S, K, T)
        self.positions, self.mask, self.group = tok.positions, tok.mask.float(), group


def _load_runs(zoo_dir, split: str, token_size: int, seed: int) -> list[_RunTokens]:
    """The usable (finite, not diverged) runs of ``split``: "train" or "val" (split by run), or "all"."""
    from ..zoo.dataset import TrajectoryDataset

    if split not in ("train", "val", "all"):
        raise ValueError(f"split must be 'train', 'val' or 'all', got {split!r}")
    runs = []
    for part in (("train", "val") if split == "all" else (split,)):
        ds = TrajectoryDataset(zoo_dir, split=part, window=1, horizon=1, granularity="model", seed=seed,
                               usable_only=True)
        for entry, flat in zip(ds.runs, ds.flat):
            runs.append(_RunTokens(flat, [t["shape"] for t in entry["tensors"]], token_size,
                                   f"{entry['spec']['task']}-{entry['spec']['arch']}"))
    if not runs:
        raise InputError(f"the {split} split of {zoo_dir} has no usable runs (finite, not diverged); build a zoo "
                         "with more runs (weightcast zoo build)")
    return runs


def evaluate_on_zoo(model: WeightAutoencoder, zoo_dir: str | os.PathLike, split: str = "all", seed: int = 0,
                    progress: bool = False) -> dict:
    """:func:`evaluate` on the runs of ``split`` ("train", "val" or "all") of a zoo, e.g. a zoo of held-out runs."""
    return evaluate(model, _load_runs(zoo_dir, split, model.token_size, seed), progress=progress)


def _pair(run: _RunTokens, t0: int, t1: int, tokens: torch.Tensor | None = None):
    """Normalised tokens of snapshots t0 and t1 (both with t0's layer scales) and the mask, restricted to
    ``tokens`` (indices) when given."""
    a, b = run.tokens[t0], run.tokens[t1]
    scale = run.tokenizer.layer_rms(a)[run.tokenizer.token_layer][:, None]
    sel = slice(None) if tokens is None else tokens
    return a[sel] / scale[sel], b[sel] / scale[sel], run.positions[sel], run.mask[sel]


def _losses(model: WeightAutoencoder, a, b, pos, mask) -> tuple[torch.Tensor, torch.Tensor]:
    """(relative squared reconstruction error of a and b, relative squared error of the difference b - a)."""
    za, zb = model.encode(a, pos), model.encode(b, pos)
    ra, rb = model.decode(za, pos) * mask, model.decode(zb, pos) * mask
    recon = (((ra - a) ** 2).sum() + ((rb - b) ** 2).sum()) / ((a ** 2).sum() + (b ** 2).sum()).clamp(min=1e-12)
    diff = (((rb - ra) - (b - a)) ** 2).sum() / ((b - a) ** 2).sum().clamp(min=1e-12)
    return recon, diff


@torch.no_grad()
def evaluate(model: WeightAutoencoder, runs: list[_RunTokens], gaps=(1, 5, 10), stride: int = 5,
             progress: bool = False) -> dict:
    """Relative L2 errors on whole snapshots: ``recon`` = ||x' - x|| / ||x||, ``diff@k`` = ||(b' - a') - (b - a)||
    / ||b - a|| for snapshot pairs k records apart (normalised space), averaged over runs, per (task, arch) group
    and overall."""
    model.eval()
    per_group: dict[str, dict[str, list[float]]] = {}
    for run in tqdm(runs, desc="evaluate", unit="run", disable=not progress, leave=False):
        S = run.tokens.shape[0]
        g = per_group.setdefault(run.group, {})
        for t0 in range(0, S - 1, stride):
            a, _, pos, mask = _pair(run, t0, t0)
            ra = model.decode(model.encode(a, pos), pos) * mask
            g.setdefault("recon", []).append(float((ra - a).norm() / a.norm().clamp(min=1e-12)))
            for k in gaps:
                if t0 + k < S:
                    _, b, _, _ = _pair(run, t0, t0 + k)
                    rb = model.decode(model.encode(b, pos), pos) * mask
                    err = ((rb - ra) - (b - a)).norm() / (b - a).norm().clamp(min=1e-12)
                    g.setdefault(f"diff@{k}", []).append(float(err))
    groups = {name: {k: sum(v) / len(v) for k, v in m.items()} for name, m in sorted(per_group.items())}
    keys = sorted({k for m in groups.values() for k in m})
    overall = {k: sum(m[k] for m in groups.values() if k in m) / sum(k in m for m in groups.values()) for k in keys}
    return {"overall": overall, "groups": groups}


def _sample_tokens(num_tokens: int, count: int, block: int, gen: torch.Generator) -> torch.Tensor:
    """Indices of about ``count`` tokens of a model of ``num_tokens``: random whole blocks of ``block`` consecutive
    tokens counted from token 0 (block 1: ``count`` random tokens). Blocks > 1 come in ascending order, so that
    the selection, cut into blocks from its start, gives the model's own blocks (the last one may be short)."""
    blocks = torch.randperm(-(-num_tokens // block), generator=gen)[:max(1, count // block)]
    if block == 1:
        return blocks
    tokens = (blocks.sort().values[:, None] * block + torch.arange(block)).flatten()
    return tokens[tokens < num_tokens]


def train_autoencoder(zoo_dir: str | os.PathLike, token_size: int = 64, latent: int = 8, hidden: int = 128,
                      steps: int = 1500, batch_tokens: int = 4096, pairs_per_batch: int = 8, lr: float = 2e-3,
                      diff_weight: float = 1.0, max_gap: int = 10, seed: int = 0, progress: bool = True,
                      mixer: str = "mlp", window: int = 16, heads: int = 4) -> tuple[WeightAutoencoder, dict]:
    """Train a :class:`WeightAutoencoder` (``mixer``, ``window``, ``heads`` as in its constructor) on the zoo's
    train split (module docstring); validate on its val split (split by run). Each snapshot pair contributes
    ``batch_tokens / pairs_per_batch`` tokens: random tokens for the MLP, random whole windows for the
    transformer. Returns the model (eval mode) and a card: config, training settings, wall time, final training
    losses and :func:`evaluate` on the val split."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    train_runs = _load_runs(zoo_dir, "train", token_size, seed)
    val_runs = _load_runs(zoo_dir, "val", token_size, seed)
    model = WeightAutoencoder(token_size, latent, hidden, mixer=mixer, window=window, heads=heads)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    per_pair = max(1, batch_tokens // pairs_per_batch)
    start, last = time.perf_counter(), (float("nan"), float("nan"))
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    bar = tqdm(range(steps), desc="train autoencoder", disable=not progress)
    for step in bar:
        model.train()
        recon_sum, diff_sum = 0.0, 0.0
        opt.zero_grad(set_to_none=True)
        for _ in range(pairs_per_batch):
            run = train_runs[int(torch.randint(len(train_runs), (), generator=gen))]
            S, K = run.tokens.shape[:2]
            k = int(torch.randint(1, min(max_gap, S - 1) + 1, (), generator=gen))
            t0 = int(torch.randint(0, S - k, (), generator=gen))
            sel = _sample_tokens(K, per_pair, model.token_block_multiple, gen)
            recon, diff = _losses(model, *_pair(run, t0, t0 + k, sel))
            ((recon + diff_weight * diff) / pairs_per_batch).backward()
            recon_sum += recon.item() / pairs_per_batch
            diff_sum += diff.item() / pairs_per_batch
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        last = (recon_sum, diff_sum)
        if not math.isfinite(recon_sum + diff_sum):
            raise InputError(f"the autoencoder training loss is non-finite at step {step}; nothing was written. "
                             f"Lower --lr (now {lr}) and train again")
        if step % 25 == 0:
            bar.set_postfix(recon=f"{recon_sum:.3g}", diff=f"{diff_sum:.3g}")
    wall = time.perf_counter() - start
    card = {"format": "weightcast-latent-ae", "version": 1, "zoo": str(zoo_dir),
            "train_runs": len(train_runs), "val_runs": len(val_runs),
            "training": {"steps": steps, "batch_tokens": batch_tokens, "pairs_per_batch": pairs_per_batch, "lr": lr,
                         "diff_weight": diff_weight, "max_gap": max_gap, "seed": seed, "wall_s": round(wall, 1),
                         "final_train_rel_sq_recon": last[0], "final_train_rel_sq_diff": last[1]},
            "val": evaluate(model, val_runs),
            "metrics": "relative L2 errors in the normalised space (each layer divided by its RMS at the earlier "
                       "snapshot); diff@k: error on the difference of two snapshots k records apart"}
    return model.eval(), card

