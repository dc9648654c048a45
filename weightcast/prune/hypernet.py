"""The sparsity-conditioned mask hypernetwork: from a model's weights alone (no data), a score per weight.

Input: the prunable weights (Linear/Conv, :mod:`.layers`) tokenised by the project's weight tokeniser
(:class:`weightcast.wsl.Tokenizer`, ``token_size`` values per token, each layer divided by its RMS), the token
positions, and the target sparsity s. Per weight it also reads data-free context from the weights: its
normalised magnitude, the RMS of its output unit's row, of its input unit's column, of the next layer's
weights leaving its output unit and of the previous layer's weights entering its input unit (how much the
network uses the two neurons it connects), its path score (SynFlow's |w dR/dw| from the weights alone,
:func:`.scores.path_scores`) and LAMP score (:func:`.scores.lamp_scores`), and the layer's size and place; per
layer also its RMS over all weights' and the fractions of it that global pruning at s removes when it ranks
by magnitude, by LAMP score and by path score (:func:`layer_shares`: three data-free sparsity allocations to
choose between).

    token embedding  h_k = MLP([tokens_k / rms, position_k, s])                              (K, H)
    layer context    h_k += Linear(mean of h over the token's layer)
    change per slot  c = MLP(Linear(h_k) + Linear([features, s])), minus its mean over the layer   (K, T)
    layer offset     b_l = MLP([mean of h over layer l, layer features, s]), minus its mean over layers (layers,)
    score per slot   score = log|w| + strength(s) * (max_shift * tanh(c) + max_offset * tanh(b_l))

A residual on global magnitude pruning: both output layers start at zero, so an untrained hypernetwork *is*
global magnitude pruning exactly. Training learns which weights of a layer to keep (the centred change c, moving
a weight's log-magnitude score by at most ``max_shift``) and how many (the per-layer offset b_l, moving a whole
layer's scores by at most ``max_offset``: the layer-wise sparsity allocation that magnitude cannot change; the
bound keeps training from emptying a layer, where the gradient vanishes). A gate chosen on validation runs
decides, per sparsity of a grid, whether the learned change is used there at all and how much of it
(:func:`choose_strength`, :meth:`MaskHypernetwork.applies_at`): where it did not beat magnitude there by more
than the validation noise (:func:`margin_gate`), the hypernetwork falls back to magnitude pruning.

Input priors (:mod:`.prior`, :meth:`MaskHypernetwork.prune`): the hypernetwork also keeps, per task of its
training zoo, a class-conditional Gaussian of the task's inputs fitted on its training split, and at the
sparsities where that beat its scores on the validation runs of the task by a margin (``calibrated``,
:func:`choose_calibration`) it prunes by WoodFisher on labelled samples of the prior of the model's task (how
many, in Fisher blocks of what size, over how many draws: the hypernetwork's :class:`Calibration`, saved with
its gate): a mask *and* the compensating weight update, still without reading any data. Elsewhere, and for
models of a task it has no prior for, it prunes by its scores.

Masks keep the top scores (:func:`weightcast.prune.api.keep_top`, global or per layer), so every
sparsity is met exactly. Training (:func:`train`) runs over a zoo of pretrained models, either through the task
loss of the masked network relative to that of global magnitude's mask, a random s in [0.5, 0.98] per step,
with a straight-through top-k mask (hard mask forward, sigmoid((score - threshold) / temperature) backward), or
(``targets``) by fitting the per-layer offsets to the ones searched with training data on each zoo run
(:mod:`.allocation`); the shipped weights use the second. ``strength(s)`` (:meth:`MaskHypernetwork.strength`)
is the gate's choice: 0 (magnitude) or the fraction of the learned change used at s.
Seed: "Learning to Prune Image
Classifiers in Weight Space via Hypernetworks" (Petruzzella, Pisa 2026).
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from safetensors.torch import save as save_bytes
from torch import nn
from torch.func import functional_call
from tqdm import tqdm

from ..errors import MissingInputError
from ..weights_io import WeightFileError
from ..wsl.tokenizer import POSITION_FEATURES, Tokenizer
from .calibration import UNRECORDED_CALIBRATION, Calibration
from .layers import forward_with, live_weight, masks_of, prunable_layers, weight_of
from .prior import InputPrior
from .scores import lamp_scores, path_scores

NUM_FEATURES = 11
LAYER_FEATURES = 8
VAL_SPARSITIES = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98)   # where checkpoints are judged against magnitude
SHRINKS = (0.75, 0.5, 0.25)   # fractions of the learned change the gate also judges (choose_strength)
WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_FILE = WEIGHTS_DIR / "mask_hypernet.safetensors"
PRIOR_PREFIX = "prior."     # the input priors' tensors in the weights file: prior.<task>.<field>


@dataclass
class Prepared:
    """A model's weights in the hypernetwork's input form (computed once per model; only s changes)."""

    names: list[str]
    shapes: list[torch.Size]
    flat: torch.Tensor            # (n,) float32 weights, layer order
    tokens: torch.Tensor          # (K, T) weights / layer rms
    positions: torch.Tensor       # (K, POSITION_FEATURES)
    token_layer: torch.Tensor     # (K,) int64
    num_layers: int
    features: torch.Tensor        # (K, T, NUM_FEATURES)
    log_abs: torch.Tensor         # (K, T) log|w|
    index: torch.Tensor           # (K, T) flat offset, -1 padding
    layer_features: torch.Tensor  # (num_layers, LAYER_FEATURES - 3): layer_features() without the s-dependent ones
    rankings: torch.Tensor        # (3, n): log|w|, LAMP and path scores, the global rankings of layer_shares()


def _rms(t: torch.Tensor, dims) -> torch.Tensor:
    return t.pow(2).mean(dims).sqrt().clamp(min=1e-12)


def weight_features(weights: list[torch.Tensor], lamp: list[torch.Tensor], path: list[torch.Tensor]
                    ) -> torch.Tensor:
    """(NUM_FEATURES, n) float32 data-free features of every weight (layer order, flattened): log normalised
    |w|, log RMS of its row (output unit), column (input unit), of the next layer's weights leaving its output
    unit and of the previous layer's weights entering its input unit (each over its layer's RMS; 0 where there
    is no such layer), log10 of the layer size, the layer's share of the weights, first/last-layer flags, the
    log of its path score (``path``, :func:`.scores.path_scores`) times the layer size and the log of its LAMP
    score (``lamp``, :func:`.scores.lamp_scores`)."""
    w3 = [w.detach().float().reshape(w.shape[0], w.shape[1], -1) for w in weights]
    rms = [_rms(w, (0, 1, 2)) for w in w3]
    n_total = sum(w.numel() for w in w3)
    out = []
    for li, w in enumerate(w3):
        o, i, _ = w.shape
        row = (_rms(w, (1, 2)) / rms[li]).log()[:, None, None]
        col = (_rms(w, (0, 2)) / rms[li]).log()[None, :, None]
        nxt = torch.zeros(o, 1, 1)
        if li + 1 < len(w3) and w3[li + 1].shape[1] % o == 0:
            wn = w3[li + 1]
            nxt = (_rms(wn.reshape(wn.shape[0], o, -1), (0, 2)) / rms[li + 1]).log()[:, None, None]
        prv = torch.zeros(1, i, 1)
        if li > 0 and i % w3[li - 1].shape[0] == 0:
            rows_prev = _rms(w3[li - 1], (1, 2)) / rms[li - 1]
            prv = rows_prev.repeat_interleave(i // w3[li - 1].shape[0]).log()[None, :, None]
        shape = w.shape
        feats = [(w.abs() / rms[li]).clamp(min=1e-8).log(), row.expand(shape), col.expand(shape), nxt.expand(shape),
                 prv.expand(shape), torch.full(shape, math.log10(w.numel())), torch.full(shape, w.numel() / n_total),
                 torch.full(shape, float(li == 0)), torch.full(shape, float(li == len(w3) - 1))]
        out.append(torch.stack([f.reshape(-1) for f in feats]))
    sizes = torch.tensor([w.numel() for w in w3], dtype=torch.float32)
    path_flat = torch.cat([p.flatten().float() * n for p, n in zip(path, sizes)])
    lamp_flat = torch.cat([s.flatten() for s in lamp])
    extra = torch.stack([path_flat.clamp(min=1e-30).log(), lamp_flat.clamp(min=1e-30).log()])
    return torch.cat([torch.cat(out, dim=1), extra])


def prepare(model: nn.Module, token_size: int) -> Prepared:
    """The hypernetwork's input for ``model`` (its prunable weights only)."""
    layers = prunable_layers(model)
    weights = [live_weight(m).float().cpu() for m in layers.values()]
    tok = Tokenizer([w.shape for w in weights], token_size)
    flat = torch.cat([w.flatten() for w in weights])
    index = tok.index
    valid = index >= 0
    rms = tok.layer_rms_of_params(weights, eps=1e-12)
    token_layer = tok.token_layer.long()
    tokens = tok.tokenize(flat) / rms[token_layer][:, None]
    lamp, path = lamp_scores(weights), path_scores(weights)   # once: per-weight features and layer rankings
    feats = weight_features(weights, lamp, path)[:, index.clamp(min=0)] * valid
    log_abs = torch.where(valid, flat[index.clamp(min=0)].abs().clamp(min=1e-30).log(), 0.0)
    rankings = torch.stack([flat.abs().clamp(min=1e-30).log(),
                            torch.cat([s.flatten() for s in lamp]).clamp(min=1e-30).log(),
                            torch.cat([s.flatten() for s in path]).float().clamp(min=1e-30).log()])
    return Prepared([f"{n}.weight" for n in layers], [w.shape for w in weights], flat, tokens, tok.positions,
                    token_layer, len(weights), feats.permute(1, 2, 0).contiguous(), log_abs, index,
                    layer_features(weights), rankings)


def layer_features(weights: list[torch.Tensor]) -> torch.Tensor:
    """(layers, LAYER_FEATURES - 3) float32 data-free features of every layer: log10 of its size, its share of
    the weights, first/last-layer flags, log of its RMS over the RMS of all weights (the other three,
    :func:`layer_shares`, depend on the sparsity)."""
    n_total = sum(w.numel() for w in weights)
    all_rms = _rms(torch.cat([w.flatten() for w in weights]), 0)
    return torch.tensor([[math.log10(w.numel()), w.numel() / n_total, float(i == 0), float(i == len(weights) - 1),
                          float((_rms(w, tuple(range(w.dim()))) / all_rms).log())] for i, w in enumerate(weights)])


def layer_shares(p: Prepared, sparsity: float) -> torch.Tensor:
    """(layers, 3): the fraction of each layer's weights that global pruning at ``sparsity`` removes when it
    ranks by magnitude, by LAMP score and by path score (``p.rankings``): three data-free layer allocations."""
    k = round(sparsity * len(p.flat))
    removed = torch.zeros(p.rankings.shape)
    if k:
        removed.scatter_(1, torch.topk(p.rankings, k, dim=1, largest=False).indices, 1.0)
    sizes = [shape.numel() for shape in p.shapes]
    return torch.stack([part.mean(1) for part in removed.split(sizes, dim=1)])


class MaskHypernetwork(nn.Module):
    """Weights + sparsity -> a score per weight (module docstring). ``token_size``: values per token;
    ``hidden``: width of every hidden layer; ``max_shift``: bound of the learned change of a log|w| score within
    its layer; ``max_offset``: bound of the learned per-layer offset of the scores."""

    def __init__(self, token_size: int = 32, hidden: int = 32, max_shift: float = 0.5, max_offset: float = 1.0):
        super().__init__()
        self.token_size, self.hidden, self.max_shift, self.max_offset = token_size, hidden, max_shift, max_offset
        self.embed = nn.Sequential(nn.Linear(token_size + POSITION_FEATURES + 1, hidden), nn.GELU(),
                                   nn.Linear(hidden, hidden))
        self.layer_context = nn.Linear(hidden, hidden)
        self.slot_token = nn.Linear(hidden, hidden)
        self.slot_features = nn.Linear(NUM_FEATURES + 1, hidden)
        self.head = nn.Sequential(nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, 1))
        self.budget = nn.Sequential(nn.Linear(hidden + LAYER_FEATURES + 1, hidden), nn.GELU(), nn.Linear(hidden, 1))
        for last in (self.head[-1], self.budget[-1]):
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        # at which of VAL_SPARSITIES the learned change is used, and how much of it (its gate: choose_strength)
        self.register_buffer("active", torch.ones(len(VAL_SPARSITIES), dtype=torch.bool))
        self.register_buffer("shrink", torch.ones(len(VAL_SPARSITIES)))
        self.priors: dict[str, InputPrior] = {}   # task name -> input prior (prior.py), saved with the weights
        # task name -> at which of VAL_SPARSITIES prune() runs WoodFisher on that prior's samples
        # (choose_calibration; none until chosen)
        self.calibrated: dict[str, list[bool]] = {}
        self.calibration = Calibration()   # how prune() runs WoodFisher there; the gate is chosen with it

    def config(self) -> dict:
        return {"token_size": self.token_size, "hidden": self.hidden, "max_shift": self.max_shift,
                "max_offset": self.max_offset}

    def applies_at(self, sparsity: float) -> bool:
        """Whether the learned change is used at ``sparsity``: at an active sparsity of :data:`VAL_SPARSITIES`,
        or strictly between two neighbouring active ones; elsewhere the scores are global magnitude's."""
        return _on_grid(self.active.tolist(), sparsity)

    def calibrates_at(self, sparsity: float, prior: str) -> bool:
        """Whether :meth:`prune` runs WoodFisher on the samples of input prior ``prior`` at ``sparsity``: where
        its ``calibrated`` flag is set on :data:`VAL_SPARSITIES`, or strictly between two such
        (:func:`choose_calibration`)."""
        return _on_grid(self.calibrated.get(prior, [False] * len(VAL_SPARSITIES)), sparsity)

    def _check_prior_name(self, prior: str | None) -> None:
        if prior is not None and prior not in self.priors:
            raise ValueError(f"the hypernetwork has no input prior {prior!r}; it has {sorted(self.priors)}")

    def prior_for(self, model: nn.Module, prior: str | None = None, names: list[str] | None = None) -> str | None:
        """The name of the input prior :meth:`prune` uses for ``model``, among ``names`` (default: all): ``prior``
        itself if it is among them (checked with :meth:`InputPrior.logits`), else the one whose task ``model``
        classifies (:meth:`InputPrior.accepts`), None if none. Runs the model on synthetic inputs. Raises
        ValueError for an unknown name, a named prior the model does not fit, or several priors that fit (pass
        ``prior=``)."""
        self._check_prior_name(prior)
        names = list(self.priors) if names is None else names
        if prior is not None:
            if prior in names:
                self.priors[prior].logits(model, 2)
                return prior
            return None
        fitting = [name for name in names if self.priors[name].accepts(model)]
        if len(fitting) > 1:
            raise ValueError(f"the model accepts the inputs of several input priors {fitting}; name the task it "
                             "was trained on with prior=")
        return fitting[0] if fitting else None

    def calibration_prior(self, model: nn.Module, sparsity: float, scope: str = "global",
                          prior: str | None = None) -> str | None:
        """The input prior :meth:`prune` runs WoodFisher on for ``model`` at ``sparsity`` (it then changes the
        surviving weights), or None where it takes the scores alone. Raises ValueError as :meth:`prior_for`."""
        self._check_prior_name(prior)
        calibrated = [name for name in self.priors if self.calibrates_at(sparsity, name)]
        return self.prior_for(model, prior, calibrated) if scope == "global" and calibrated else None

    def prune(self, model: nn.Module, sparsity: float, scope: str = "global", prior: str | None = None,
              calibration: Calibration | None = None
              ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
        """(masks, new weights or None) for ``model`` at ``sparsity``, from its weights and no data: where the input
        prior of the model's task (:meth:`prior_for`, among the priors that :meth:`calibrates_at` ``sparsity``)
        is calibrated, WoodFisher (:func:`.fisher.prune_in_stages`, global) on labelled inputs drawn from the
        prior as ``calibration`` says (None: the hypernetwork's own, :attr:`calibration`, the one its gate was
        chosen with) -- masks and the compensated float64 weights; the model is run on those synthetic inputs.
        Otherwise the top :meth:`scores` (``scope`` "global" or "layer"), weights unchanged (None);
        ``scope="layer"`` always takes the scores. Raises TypeError for a ``calibration`` that is not a
        :class:`Calibration`, and ValueError as :meth:`prior_for` does."""
        from .api import keep_top, masks_and_weights

        c = self.calibration if calibration is None else calibration
        if not isinstance(c, Calibration):
            raise TypeError(f"calibration must be a weightcast.prune.Calibration, got {type(c).__name__}")
        chosen = self.calibration_prior(model, sparsity, scope, prior)
        if chosen is None:
            return keep_top(self.scores(model, sparsity), sparsity, scope, masks_of(model)), None
        from .fisher import prune_in_stages

        first = weight_of(next(iter(prunable_layers(model).values())))

        def draw(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
            x, y = self.priors[chosen].sample(c.samples, seed)
            return x.to(first.device, first.dtype), y.to(first.device)

        def woodfisher(seed: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
            return masks_and_weights(prune_in_stages(model, sparsity, *draw(seed), "woodfisher", stages=c.stages,
                                                     rel_damp=c.rel_damp, block_size=c.block_size))

        if c.draws == 1:
            return woodfisher(0)
        x_check, y_check = draw(c.draws)
        best = None
        for seed in range(c.draws):
            masks, weights = woodfisher(seed)
            with torch.no_grad():
                pruned = {k: weights[k] * masks[k] for k in masks}
                loss = float(F.cross_entropy(forward_with(model, pruned, x_check), y_check))
            if best is None or loss < best[0] or math.isnan(best[0]):   # a NaN loss never wins
                best = (loss, masks, weights)
        return best[1], best[2]

    def decision(self, sparsity: float, prior: str | None, scope: str = "global",
                 calibration: Calibration | None = None) -> dict:
        """What decides :meth:`prune`'s masks (and weights) at ``sparsity`` with ``scope`` and ``calibration``
        (as :meth:`prune` takes them) for a model whose input prior is ``prior`` (:meth:`prior_for`; None: none
        fits it), as a dict to record with results: where WoodFisher on that prior runs (global scope, the prior
        calibrated there: :meth:`calibrates_at`), the prior's name and a digest of its tensors, shape and the
        calibration setting; elsewhere the learned change's :meth:`strength` there and, where it is above 0, a
        digest of the network's weights and config (at 0 the scores are global magnitude's whatever the network),
        and a per-layer ``scope``. Two hypernetworks with equal decisions prune such a model alike (the code
        being the same), so results recorded with it stay valid when the gate changes at other sparsities.
        Digests: the first 16 hex digits of a SHA-256. Raises ValueError for a prior the hypernetwork does not
        have."""
        self._check_prior_name(prior)
        if scope == "global" and prior is not None and self.calibrates_at(sparsity, prior):
            c = self.calibration if calibration is None else calibration
            text = json.dumps(self.priors[prior].shape) + c.to_json()
            return {"woodfisher_prior": prior, "prior_sha256": _digest(self.priors[prior].tensors(""), text)}
        out = {"strength": self.strength(sparsity)}
        if out["strength"] > 0:
            network = {k: v for k, v in self.state_dict().items() if k not in ("active", "shrink")}
            out["network_sha256"] = _digest(network, json.dumps(self.config(), sort_keys=True))
        return out if scope == "global" else {**out, "scope": scope}

    def strength(self, sparsity: float) -> float:
        """The fraction of the learned change used at ``sparsity`` (0 where :meth:`applies_at` is False): the
        grid sparsity's ``shrink``, between two active ones the smaller of theirs."""
        if not self.applies_at(sparsity):
            return 0.0
        shrink = self.shrink.tolist()
        for i, grid_s in enumerate(VAL_SPARSITIES):
            if abs(sparsity - grid_s) < 1e-9:
                return shrink[i]
            if i and VAL_SPARSITIES[i - 1] < sparsity < grid_s:
                return min(shrink[i - 1], shrink[i])
        return 0.0

    def _embed(self, p: Prepared, sparsity: float) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.embed(torch.cat([p.tokens, p.positions, torch.full((len(p.tokens), 1), float(sparsity))], dim=1))
        sums = torch.zeros(p.num_layers, self.hidden).index_add_(0, p.token_layer, h)
        counts = torch.bincount(p.token_layer, minlength=p.num_layers).clamp(min=1)[:, None]
        return h, sums / counts

    def _offsets(self, p: Prepared, sparsity: float, layer_mean: torch.Tensor) -> torch.Tensor:
        s_layer = torch.full((p.num_layers, 1), float(sparsity))
        raw = self.budget(torch.cat([layer_mean, p.layer_features, layer_shares(p, sparsity), s_layer], 1))
        raw = raw.squeeze(1)
        # centred over the layers: a shift common to all layers moves no weight across the global threshold, and
        # training spent its steps on it
        return self.max_offset * torch.tanh(raw - raw.mean())

    def layer_offsets(self, p: Prepared, sparsity: float) -> torch.Tensor:
        """(layers,) the learned per-layer offsets b_l of the scores (module docstring), whether or not they are
        used at ``sparsity`` (:meth:`applies_at`)."""
        return self._offsets(p, sparsity, self._embed(p, sparsity)[1])

    def flat_scores(self, p: Prepared, sparsity: float) -> torch.Tensor:
        """(n,) float32 score of every weight of the prepared model (layer order)."""
        if not self.applies_at(sparsity):
            return p.flat.abs().clamp(min=1e-30).log()
        K = len(p.tokens)
        s = torch.full((K, 1), float(sparsity))
        h, layer_mean = self._embed(p, sparsity)
        h = h + self.layer_context(layer_mean)[p.token_layer]
        offset = self._offsets(p, sparsity, layer_mean)
        slot_in = torch.cat([p.features, s[:, None, :].expand(K, self.token_size, 1)], dim=2)
        z = self.slot_token(h)[:, None, :] + self.slot_features(slot_in)
        valid = p.index >= 0
        change = self.head(z).squeeze(-1) * valid
        # centred per layer: shifting a whole layer is the bounded offset's job; an uncentred change drifted
        # into tanh saturation, where the gradient dies
        sums = torch.zeros(p.num_layers).index_add_(0, p.token_layer, change.sum(1))
        counts = torch.zeros(p.num_layers).index_add_(0, p.token_layer, valid.sum(1).float())
        change = change - (sums / counts)[p.token_layer][:, None]
        learned = self.max_shift * torch.tanh(change) + offset[p.token_layer][:, None]
        scores = p.log_abs + self.strength(sparsity) * learned
        out = torch.empty(len(p.flat), dtype=scores.dtype)
        return out.index_put((p.index[valid],), scores[valid])

    @torch.no_grad()
    def scores(self, model: nn.Module, sparsity: float) -> dict[str, torch.Tensor]:
        """``{"<layer>.weight": scores}`` (float32, the weight's shape and device) for ``model`` at ``sparsity``;
        reads the weights only."""
        p = prepare(model, self.token_size)
        flat = self.flat_scores(p, sparsity)
        out, start = {}, 0
        devices = [weight_of(m).device for m in prunable_layers(model).values()]
        for name, shape, device in zip(p.names, p.shapes, devices):
            out[name] = flat[start:start + shape.numel()].reshape(shape).to(device)
            start += shape.numel()
        return out


def _digest(tensors: dict[str, torch.Tensor], text: str) -> str:
    """The first 16 hex digits of the SHA-256 of ``tensors`` (as safetensors bytes) followed by ``text``."""
    data = save_bytes({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
    return hashlib.sha256(data + text.encode()).hexdigest()[:16]


def _on_grid(flags: list[bool], sparsity: float) -> bool:
    """``flags`` (one per :data:`VAL_SPARSITIES`) read at ``sparsity``: the grid point's flag, strictly between
    two grid points both of theirs, outside the grid False."""
    for i, grid_s in enumerate(VAL_SPARSITIES):
        if abs(sparsity - grid_s) < 1e-9:
            return flags[i]
        if i and VAL_SPARSITIES[i - 1] < sparsity < grid_s:
            return flags[i - 1] and flags[i]
    return False


def straight_through_mask(scores: torch.Tensor, sparsity: float, temperature: float = 0.1) -> torch.Tensor:
    """Hard top-k mask forward (``round(sparsity * n)`` removed), gradient of sigmoid((score - threshold) / t)
    backward, t = ``temperature`` x the scores' standard deviation."""
    k = round(sparsity * scores.numel())
    thr = torch.kthvalue(scores.detach(), k).values if k else scores.detach().min() - 1
    hard = (scores > thr).float()
    soft = torch.sigmoid((scores - thr) / (temperature * scores.detach().std() + 1e-12))
    return hard + soft - soft.detach()


def magnitude_mask(p: Prepared, sparsity: float) -> torch.Tensor:
    """(n,) float32 global magnitude mask of the prepared model: ``round(sparsity * n)`` smallest |w| removed."""
    mask = torch.ones(len(p.flat))
    k = round(sparsity * len(p.flat))
    if k:
        mask[torch.topk(p.flat.abs(), k, largest=False).indices] = 0.0
    return mask


def masked_forward(model: nn.Module, p: Prepared, mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Logits of ``model`` with its prunable weights replaced by flat * mask (differentiable in the mask)."""
    params, start = {}, 0
    masked = p.flat * mask
    for name, shape in zip(p.names, p.shapes):
        params[name] = masked[start:start + shape.numel()].reshape(shape)
        start += shape.numel()
    return functional_call(model, params, (x,))


def train(net: MaskHypernetwork, zoo: list[tuple[nn.Module, object]], steps: int = 1500, lr: float = 3e-4,
          batch_size: int = 256, sparsity_range: tuple[float, float] = (0.5, 0.98), seed: int = 0,
          temperature: float = 0.1, val_zoo: list[tuple[nn.Module, object]] | None = None, val_every: int = 250,
          log_every: int = 100, models_per_step: int = 1, targets: list[dict] | None = None,
          shrinks: tuple[float, ...] = SHRINKS, log=print) -> list[dict]:
    """Train ``net`` over ``zoo`` (pairs of a pretrained model and its :class:`weightcast.data.Task`) for
    ``steps`` Adam steps (gradient norm clipped at 1): each step ``models_per_step`` draws of a model, a sparsity
    s ~ U(sparsity_range) and a training batch, the mean over the draws of the cross-entropy of the masked model
    over that of global magnitude's mask (so that the high sparsities, whose losses are large, do not drown the
    others; 1 = as good as magnitude), straight-through mask with ``temperature`` (a fraction of the scores'
    standard deviation). With ``targets``
    (one ``{s: Target}`` per model of ``zoo``, :func:`.allocation.offset_targets`) the loss is instead, at a
    sparsity drawn from the model's targets, the searched relative loss of the learned per-layer offsets
    (:meth:`MaskHypernetwork.layer_offsets`; ``Target.loss``, each layer's loss curve around the searched
    optimum) plus 0.1 x their squared error against the searched offsets: a layer-wise allocation fitted
    where it matters. With ``val_zoo``, the validation accuracy of its models at each s of
    :data:`VAL_SPARSITIES` (:func:`val_score`) is measured at step 0 (an untrained hypernetwork: global
    magnitude) and every ``val_every`` steps (early stopping against magnitude): ``net`` ends with the weights of
    the checkpoint of largest summed mean gain over step 0 at the sparsities where it gains on average and loses
    on no validation run; then :func:`choose_strength` gates its learned change per sparsity with
    :func:`margin_gate`, judging it whole and scaled down by each of ``shrinks`` (fractions in (0, 1);
    ``net.active``, ``net.shrink``, :meth:`MaskHypernetwork.strength`; where none passes it is magnitude
    pruning). Returns the logged rows (step, mean loss or val_acc, seconds; then the selected step and the
    sparsities where its change gained; last, with ``val_zoo``, :func:`choose_strength`'s row)."""
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    prepared = [prepare(model, net.token_size) for model, _ in zoo]
    batches = [task.batches(batch_size, seed + i) for i, (_, task) in enumerate(zoo)]
    for model, _ in zoo:
        model.eval().requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    rows, running, count, start = [], 0.0, 0, time.perf_counter()
    best = floor = None

    def checkpoint(step):
        nonlocal best, floor
        accs = val_accuracies(net, val_zoo)
        per_s = [sum(col) / len(col) for col in zip(*accs)]
        mean = sum(per_s) / len(per_s)
        rows.append({"step": step, "val_acc": round(mean, 5), "val_acc_per_s": [round(a, 5) for a in per_s],
                     "seconds": round(time.perf_counter() - start, 1)})
        log(f"step {step}: validation accuracy {mean:.4f} " + " ".join(f"{a:.4f}" for a in per_s))
        if floor is None:
            floor = accs   # step 0: global magnitude pruning
        # a checkpoint's score: its mean gain over magnitude where it gains on average and loses on no run
        gains = [[a - b for a, b in zip(row, base)] for row, base in zip(accs, floor)]
        active = [sum(col) > 0 and min(col) >= 0 for col in zip(*gains)]
        score = sum(sum(col) / len(col) for col, on in zip(zip(*gains), active) if on)
        if best is None or score > best[0]:
            best = (score, step, copy.deepcopy(net.state_dict()), active)

    if val_zoo:
        checkpoint(0)
    for step in range(1, steps + 1):
        opt.zero_grad(set_to_none=True)
        loss = 0.0
        for _ in range(models_per_step):
            i = rng.randrange(len(zoo))
            if targets is not None:
                s = rng.choice(sorted(targets[i]))
                offsets = net.layer_offsets(prepared[i], s)
                draw = targets[i][s].loss(offsets) + 0.1 * F.mse_loss(offsets, targets[i][s].offsets)
                (draw / models_per_step).backward()
                loss += draw.detach() / models_per_step
                continue
            s = sparsity_range[0] + (sparsity_range[1] - sparsity_range[0]) * float(torch.rand((), generator=gen))
            x, y = next(batches[i])
            mask = straight_through_mask(net.flat_scores(prepared[i], s), s, temperature)
            with torch.no_grad():   # global magnitude's loss on the same batch: every s weighs the same
                reference = F.cross_entropy(masked_forward(zoo[i][0], prepared[i], magnitude_mask(prepared[i], s),
                                                           x), y)
            draw = F.cross_entropy(masked_forward(zoo[i][0], prepared[i], mask, x), y) / reference.clamp(min=1e-3)
            (draw / models_per_step).backward()
            loss += draw.detach() / models_per_step
        loss = torch.as_tensor(loss)
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        running, count = running + loss.item(), count + 1
        if step % log_every == 0 or step == steps:
            rows.append({"step": step, "loss": running / count, "seconds": round(time.perf_counter() - start, 1)})
            running, count = 0.0, 0
            log(f"step {step}: loss {rows[-1]['loss']:.4f} ({rows[-1]['seconds']} s)")
        if val_zoo and (step % val_every == 0 or step == steps):
            checkpoint(step)
    if best is not None:
        net.load_state_dict(best[2])
        rows.append({"selected_step": best[1], "val_gain_sum": round(best[0], 5), "active": best[3]})
        log(f"kept the weights of step {best[1]}, which gained at s = "
            f"{[s for s, a in zip(VAL_SPARSITIES, best[3]) if a]} (validation gain summed over s {best[0]:.4f})")
        rows.append(choose_strength(net, val_zoo, shrinks, log, floor))
    return rows


def choose_strength(net: MaskHypernetwork, val_zoo: list[tuple[nn.Module, object]],
                    shrinks: tuple[float, ...] = SHRINKS, log=print,
                    floor: list[list[float]] | None = None) -> dict:
    """Set ``net.active`` and ``net.shrink``, the gate of the learned change: at each s of
    :data:`VAL_SPARSITIES`, of the fractions of the learned change (1, the network as it is, and each of
    ``shrinks``) that pass :func:`margin_gate` against global magnitude on the validation runs ``val_zoo``
    (their accuracy gains over magnitude's, ``floor``, against the standard errors of magnitude's
    accuracies), the one of largest mean gain; none: magnitude pruning there. Judged on the scores alone: any
    WoodFisher on the input priors (``net.calibrated``) is set aside while judging and restored after -- its own
    gate, :func:`choose_calibration`, is judged against the scores chosen here, so choose it again after this.
    ``floor``: magnitude's validation accuracies (rows: runs, columns: sparsities) if already measured.
    Returns the log row: the fractions and flags, the mean gain of each fraction per sparsity, and the per-run
    accuracies and validation examples it decided from."""
    calibrated, net.calibrated = net.calibrated, {}
    try:
        if floor is None:
            net.active.fill_(False)
            floor = val_accuracies(net, val_zoo)
        accs = {}
        for alpha in (1.0, *shrinks):
            net.active.fill_(True)
            net.shrink.fill_(alpha)
            accs[alpha] = val_accuracies(net, val_zoo)
    finally:
        net.calibrated = calibrated
    examples = val_examples(val_zoo)
    active, shrink = [], []
    for j in range(len(VAL_SPARSITIES)):
        errors = [accuracy_error(row[j], n) for row, n in zip(floor, examples)]
        best_alpha, best_gain = None, -math.inf
        for alpha, rows in accs.items():
            gains = [row[j] - base[j] for row, base in zip(rows, floor)]
            if margin_gate(gains, errors) and sum(gains) / len(gains) > best_gain:
                best_alpha, best_gain = alpha, sum(gains) / len(gains)
        active.append(best_alpha is not None)
        shrink.append(best_alpha or 1.0)
    net.active.copy_(torch.tensor(active))
    net.shrink.copy_(torch.tensor(shrink))
    log(f"shrink per s {dict(zip(VAL_SPARSITIES, shrink))}, used at s = "
        f"{[s for s, a in zip(VAL_SPARSITIES, active) if a]}")
    return {"shrink": shrink, "active": active,
            "val_gain_by_shrink": {str(a): [round(sum(r[j] - b[j] for r, b in zip(rows, floor)) / len(floor), 5)
                                            for j in range(len(VAL_SPARSITIES))] for a, rows in accs.items()},
            "val_examples": examples, "val_acc_magnitude": floor,
            "val_acc_by_shrink": {str(a): rows for a, rows in accs.items()}}


def val_examples(zoo: list[tuple[nn.Module, object]]) -> list[int]:
    """The number of validation examples each of ``zoo``'s runs is judged on (its task's validation split)."""
    return [len(task.eval_tensors("val", task.eval_size)[1]) for _, task in zoo]


@torch.no_grad()
def val_accuracies(net: MaskHypernetwork, zoo: list[tuple[nn.Module, object]],
                   sparsities: tuple[float, ...] = VAL_SPARSITIES, limit: int | None = None,
                   progress: str | None = None) -> list[list[float]]:
    """Accuracy of each of ``zoo``'s models (rows) at each sparsity of ``sparsities`` (columns) pruned by the
    hypernetwork (:meth:`MaskHypernetwork.prune`, global), on the first ``limit`` validation examples of the
    model's task (default: its whole validation split, so that checkpoints differing by noise are not taken for
    better). ``progress``: the label of a tqdm bar over the (model, sparsity) pairs; None: no bar."""
    from .api import apply_masks

    out = []
    with tqdm(total=len(zoo) * len(sparsities), desc=progress, disable=progress is None) as bar:
        for model, task in zoo:
            row = []
            for s in sparsities:
                pruned = copy.deepcopy(model)
                apply_masks(pruned, *net.prune(pruned, s))
                row.append(task.evaluate(pruned, limit=limit)["acc"])
                bar.update()
            out.append(row)
    return out


def fit_priors(net: MaskHypernetwork, tasks: dict[str, object]) -> None:
    """Fit ``net.priors[name]`` (:meth:`.prior.InputPrior.fit`) on the whole training split of every task of
    ``tasks`` (name -> :class:`weightcast.data.Task` with ``train_x``/``train_y``)."""
    for name, task in sorted(tasks.items()):
        net.priors[name] = InputPrior.fit(task.train_x.cpu(), task.train_y.cpu())


def margin_gate(gains: list[float], errors: list[float]) -> bool:
    """Both gates' rule (:func:`choose_strength`: the learned change against magnitude; :func:`choose_calibration`:
    WoodFisher on a prior against the hypernetwork's scores): whether a method is used at one sparsity, from its
    accuracy gains over the baseline on the validation runs (fractions) and the standard errors of the
    baseline's accuracies there (:func:`accuracy_error`): where the mean gain exceeds the mean standard error
    and no run loses more than its own -- a heuristic margin of one binomial standard error of a single accuracy
    (not a paired test of the difference). False without runs."""
    return bool(gains) and sum(gains) > sum(errors) and all(g >= -e for g, e in zip(gains, errors))


def accuracy_error(accuracy: float, examples: int) -> float:
    """The binomial standard error sqrt(a (1 - a) / n) of an accuracy ``a`` measured on ``n`` examples."""
    return math.sqrt(accuracy * (1 - accuracy) / examples)


def choose_calibration(net: MaskHypernetwork, val_zoo: list[tuple[nn.Module, object]], log=print,
                       progress: bool = False) -> dict:
    """Set ``net.calibrated``: for each input prior and each s of :data:`VAL_SPARSITIES`, whether WoodFisher on
    the prior's samples (:meth:`MaskHypernetwork.prune`, as ``net.calibration`` says) beats the hypernetwork's
    scores there on the validation runs of ``val_zoo`` of the prior's task by a margin of the size of their
    validation splits' noise (:func:`margin_gate`, the standard errors of the scores' accuracies); a prior without
    validation runs is never used. Returns the log row: the flags, each run's prior and validation examples,
    and both validation accuracies per run and sparsity. ``progress``: tqdm bars over the two passes (the second,
    WoodFisher on every run and sparsity, is most of the time)."""
    grid = len(VAL_SPARSITIES)
    net.calibrated = {name: [False] * grid for name in net.priors}
    scored = val_accuracies(net, val_zoo, progress="scores" if progress else None)
    net.calibrated = {name: [True] * grid for name in net.priors}
    calibrated = val_accuracies(net, val_zoo, progress="WoodFisher on the priors" if progress else None)
    owners = [net.prior_for(model) for model, _ in val_zoo]
    examples = val_examples(val_zoo)
    row = {"prior_of_run": owners, "val_examples": examples, "val_acc_scores": scored,
           "val_acc_calibrated": calibrated}
    net.calibrated = gate_flags(row, list(net.priors))
    for name, flags in net.calibrated.items():
        log(f"WoodFisher on the {name} prior used at s = {[s for s, on in zip(VAL_SPARSITIES, flags) if on]} "
            f"({owners.count(name)} validation runs)")
    return {"calibrated": net.calibrated, **row}


def gate_flags(row: dict, priors: list[str]) -> dict[str, list[bool]]:
    """Per prior of ``priors``, the :func:`margin_gate` at each s of :data:`VAL_SPARSITIES`, from a
    :func:`choose_calibration` row (``prior_of_run``, ``val_examples``, ``val_acc_scores``,
    ``val_acc_calibrated``)."""
    flags = {}
    for name in priors:
        runs = [i for i, owner in enumerate(row["prior_of_run"]) if owner == name]
        flags[name] = [margin_gate(
            [row["val_acc_calibrated"][i][j] - row["val_acc_scores"][i][j] for i in runs],
            [accuracy_error(row["val_acc_scores"][i][j], row["val_examples"][i]) for i in runs])
            for j in range(len(VAL_SPARSITIES))]
    return flags


def val_score(net: MaskHypernetwork, zoo: list[tuple[nn.Module, object]],
              sparsities: tuple[float, ...] = VAL_SPARSITIES, limit: int | None = None) -> list[float]:
    """Mean over ``zoo``'s models of :func:`val_accuracies`, one per sparsity."""
    rows = val_accuracies(net, zoo, sparsities, limit)
    return [sum(col) / len(col) for col in zip(*rows)]


def save(net: MaskHypernetwork, path: str | Path, card: dict) -> None:
    """Write the weights (safetensors, the config and the :class:`Calibration` in its metadata) and ``card`` (JSON,
    beside it: same name with .json) -- the card says how the weights were made."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.contiguous() for k, v in net.state_dict().items()}
    for name, prior in net.priors.items():
        tensors.update(prior.tensors(f"{PRIOR_PREFIX}{name}."))
        tensors[f"{PRIOR_PREFIX}{name}.calibrated"] = torch.tensor(net.calibrated.get(name, [False] * len(
            VAL_SPARSITIES)))
    save_file(tensors, str(path), metadata={"config": json.dumps(net.config()),
                                            "priors": json.dumps({n: p.shape for n, p in net.priors.items()}),
                                            "calibration": net.calibration.to_json()})
    path.with_suffix(".json").write_text(json.dumps({**card, "config": net.config()}, indent=2) + "\n")


def load(path: str | Path, priors: bool = True) -> MaskHypernetwork:
    """A saved hypernetwork (see :func:`save`; a file without a calibration setting was calibrated with
    :data:`UNRECORDED_CALIBRATION`). ``priors=False`` reads the network alone (no input priors, no gate, the
    default :class:`Calibration`), as ``weightcast prune prior`` does before replacing them, so a file whose
    priors or calibration setting are damaged can still be rewritten. Raises MissingInputError (a
    FileNotFoundError) saying how to train one, and :class:`weightcast.weights_io.WeightFileError` (an
    InputError, a ValueError) naming the file when it is not a mask hypernetwork's safetensors file, or (with
    ``priors``) its calibration setting or input priors are damaged, incomplete or inconsistent."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"no mask hypernetwork file at {path}; train one with `weightcast prune train "
                                "--zoo DIR --out FILE`")
    try:
        with safe_open(str(path), "pt") as f:
            metadata = f.metadata() or {}
        net = MaskHypernetwork(**json.loads(metadata["config"]))
        tensors = load_file(str(path))
    except (SafetensorError, OSError, KeyError, TypeError, ValueError) as exc:
        raise WeightFileError(f"{path} is not a mask hypernetwork file ({type(exc).__name__}: {exc}); pass one "
                              "written by `weightcast prune train` or `weightcast prune prior`") from None
    if priors:
        _read_priors(net, path, metadata, tensors)
    try:
        net.load_state_dict({k: v for k, v in tensors.items() if not k.startswith(PRIOR_PREFIX)})
    except RuntimeError as exc:
        raise WeightFileError(f"{path}: its tensors do not fit its config ({' '.join(str(exc).split())[:300]}); "
                              "train it again with `weightcast prune train`") from None
    return net.eval()


def _read_priors(net: MaskHypernetwork, path: Path, metadata: dict, tensors: dict) -> None:
    """Set ``net``'s calibration setting, input priors and gate from a weights file's metadata and tensors."""
    try:
        net.calibration = (Calibration.from_json(metadata["calibration"]) if "calibration" in metadata
                           else UNRECORDED_CALIBRATION)
    except ValueError as exc:
        raise WeightFileError(f"{path}: its calibration setting is damaged ({exc}); rewrite it with `weightcast "
                              "prune prior --hypernet FILE --out FILE`") from None
    try:
        shapes = json.loads(metadata.get("priors", "{}"))
        for name, shape in shapes.items():
            prefix = f"{PRIOR_PREFIX}{name}."
            net.priors[name] = InputPrior.from_tensors(tensors, prefix, tuple(shape))
            net.calibrated[name] = tensors[prefix + "calibrated"].tolist()
            if len(net.calibrated[name]) != len(VAL_SPARSITIES):
                raise ValueError(f"prior {name!r} has {len(net.calibrated[name])} calibration flags, not one per "
                                 f"sparsity of {VAL_SPARSITIES}")
        stray = {k.split(".")[1] for k in tensors if k.startswith(PRIOR_PREFIX)} - set(shapes)
        if stray:
            raise ValueError(f"tensors of priors {sorted(stray)} but no entry for them in the metadata")
    except (KeyError, ValueError) as exc:   # json.JSONDecodeError is a ValueError
        raise WeightFileError(f"{path}: its input priors are damaged ({exc}); rewrite them with `weightcast prune "
                              "prior --hypernet FILE --out FILE`") from exc


def load_default() -> MaskHypernetwork:
    """The shipped hypernetwork (weightcast/prune/weights/mask_hypernet.safetensors; card beside it)."""
    return load(DEFAULT_FILE)


@torch.no_grad()
def validate(net: MaskHypernetwork, zoo: list[tuple[nn.Module, object]],
             sparsities: tuple[float, ...] = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98)) -> dict:
    """Mean validation accuracy over ``zoo``'s models (on their tasks' validation split) pruned by the
    hypernetwork (:meth:`MaskHypernetwork.prune`, global) and by global magnitude, per sparsity:
    ``{"hypernet": {s: acc}, "magnitude": {...}}``."""
    from .api import apply_masks, keep_top

    out = {"hypernet": {}, "magnitude": {}}
    for s in sparsities:
        accs = {"hypernet": [], "magnitude": []}
        for model, task in zoo:
            for method in accs:
                pruned = copy.deepcopy(model)
                if method == "hypernet":
                    apply_masks(pruned, *net.prune(pruned, s))
                else:
                    apply_masks(pruned, keep_top({f"{n}.weight": weight_of(m).abs()
                                                  for n, m in prunable_layers(pruned).items()}, s))
                accs[method].append(task.evaluate(pruned)["acc"])
        for method, values in accs.items():
            out[method][str(s)] = round(sum(values) / len(values), 4)
    return out
