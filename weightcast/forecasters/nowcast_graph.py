"""The "nowcast-graph" forecaster: a multi-horizon neuron-graph nowcaster in the style of NiNo (Knyazev et al.,
ICLR 2025, "Accelerating Training with Neuron Interaction and Nowcasting Networks"), meta-trained on the
long-trajectory zoo like the per-element "nowcast" (:mod:`.nowcast`).

The model's parameters form a graph (:mod:`.neuron_graph`): neurons are nodes, weight elements edges, biases and
norm weights self-loops at their neuron. Each tensor's window of ``W`` states is z-scored with its own statistics
and every element gets the per-element nowcaster's features (:func:`.nowcast.features`: the W - 1 differences
divided by ``s``, ``z_{W-1}``, ``log s``) and the parameter-type embedding. Then, with ``h`` hidden units:

* edge encoder: ``e = relu(A [x, type])`` (E, h); node states ``n = 0`` (N, h);
* ``rounds`` rounds of message passing: ``n += relu(B_r [n, mean_in(e), mean_out(e)])`` (mean over the edges
  entering / leaving each neuron, ``torch.Tensor.index_add``), then ``e += relu(C_r [e, n_src, n_dst])``;
* edge decoder: ``m = D_2 relu(D_1 e) + skip x`` (E, K): one output per horizon k = 1..K record intervals.

The forecast ``k`` intervals ahead is ``mu + sigma (z_{W-1} + s m_k)``, the output convention of "nowcast". The
decoder and skip start at zero (no move). Nothing in it depends on the order of the neurons: permuting the hidden
neurons of a network permutes its forecast the same way.

Parameters the graph cannot place (embeddings, attention, tensors after a break in the chain) get the
per-element nowcaster's forecast (:func:`.nowcast.predict_tensor`) from the ``fallback.*`` tensors of the same
file, meta-trained beside the graph model on the same batches (:mod:`.nowcast_graph_train`). So does every
parameter of a bucket that holds no sequential network, in the optimizer engine (which sees shapes, not names:
every 2-D tensor is taken for a Linear weight there).
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import torch

from . import io
from .base import Forecaster
from .neuron_graph import NeuronGraph, build_graph
from .nowcast import (NUM_FEATURES_EXTRA, PARAM_TYPES, NowcastForecaster, features, init_nowcast, nowcast_shapes,
                      param_type, predict_tensor, whole_horizons, window_stats)

KIND = "nowcast-graph"
FALLBACK = "fallback."


def fallback_config(config: dict[str, Any]) -> dict[str, Any]:
    """The config of the per-element nowcaster inside a nowcast-graph file."""
    return {"window": config["window"], "hidden": config["fallback_hidden"], "k_max": config["k_max"],
            "embed": config["embed"]}


def graph_shapes(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of a nowcast-graph model with ``config`` (``window``, ``hidden``, ``k_max``,
    ``embed``, ``rounds``, ``fallback_hidden``), the per-element fallback's under ``fallback.``."""
    w, h, k, e, rounds = (int(config[key]) for key in ("window", "hidden", "k_max", "embed", "rounds"))
    f = w - 1 + NUM_FEATURES_EXTRA
    shapes = {"type_embed": (len(PARAM_TYPES), e), "enc_w": (h, f + e), "enc_b": (h,)}
    for r in range(rounds):
        shapes.update({f"node{r}_w": (h, 3 * h), f"node{r}_b": (h,), f"edge{r}_w": (h, 3 * h), f"edge{r}_b": (h,)})
    shapes.update({"dec_w": (h, h), "dec_b": (h,), "out_w": (k, h), "out_b": (k,), "skip": (k, f)})
    shapes.update({FALLBACK + name: s for name, s in nowcast_shapes(fallback_config(config)).items()})
    return shapes


def init_graph(config: dict[str, Any], seed: int = 0) -> dict[str, torch.Tensor]:
    """Fresh float32 weights: fan-in uniform hidden layers, zero decoder output and skip (the untrained model does
    not move the parameters), and a fresh per-element fallback (:func:`.nowcast.init_nowcast`)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in graph_shapes(config).items():
        if name.startswith(FALLBACK):
            continue
        if name == "type_embed":
            out[name] = torch.randn(shape, generator=g) * 0.1
        elif name.endswith("_w") and name != "out_w":
            out[name] = (torch.rand(shape, generator=g) * 2 - 1) / shape[-1] ** 0.5
        else:
            out[name] = torch.zeros(shape)
    fb = fallback_config(config)
    out.update({FALLBACK + n: t for n, t in init_nowcast(fb["window"], fb["hidden"], fb["k_max"], fb["embed"],
                                                         seed).items()})
    return out


def fallback_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The per-element nowcaster's tensors of a nowcast-graph model (names without the ``fallback.`` prefix)."""
    return {n[len(FALLBACK):]: t for n, t in tensors.items() if n.startswith(FALLBACK)}


def graph_forward(tensors: dict[str, torch.Tensor], feats: torch.Tensor, types: torch.Tensor, src: torch.Tensor,
                  dst: torch.Tensor, num_nodes: int, rounds: int) -> torch.Tensor:
    """m (E, K) float32 from edge features (E, F), parameter-type indices (E,) int64 and the graph (``src``,
    ``dst`` (E,) int64 node indices < ``num_nodes``); ``rounds`` message-passing rounds (module docstring)."""
    x = torch.cat([feats, tensors["type_embed"][types]], dim=1)
    e = torch.addmm(tensors["enc_b"], x, tensors["enc_w"].T).relu_()
    hidden = e.shape[1]
    n = e.new_zeros(num_nodes, hidden)
    ones = e.new_ones(len(src))
    deg_in = e.new_zeros(num_nodes).index_add(0, dst, ones).clamp_min(1)[:, None]
    deg_out = e.new_zeros(num_nodes).index_add(0, src, ones).clamp_min(1)[:, None]
    for r in range(rounds):
        mean_in = n.new_zeros(num_nodes, hidden).index_add(0, dst, e) / deg_in
        mean_out = n.new_zeros(num_nodes, hidden).index_add(0, src, e) / deg_out
        n = n + torch.relu(torch.cat([n, mean_in, mean_out], 1) @ tensors[f"node{r}_w"].T + tensors[f"node{r}_b"])
        # [e, n[src], n[dst]] @ W.T with W split by its three input blocks: the node terms are projected once per
        # node and gathered, not once per edge (the same sum; a third of the per-edge multiplications)
        w_edge, w_src, w_dst = tensors[f"edge{r}_w"].split(hidden, dim=1)
        update = torch.addmm(tensors[f"edge{r}_b"], e, w_edge.T)  # a fresh tensor: in-place below is autograd-safe
        e = e + update.add_((n @ w_src.T)[src]).add_((n @ w_dst.T)[dst]).relu_()
    decoded = torch.addmm(tensors["dec_b"], e, tensors["dec_w"].T).relu_()
    return torch.addmm(tensors["out_b"], decoded, tensors["out_w"].T) + feats @ tensors["skip"].T


def graph_inputs(windows: Sequence[torch.Tensor], graph: NeuronGraph, names: Sequence[str] | None):
    """Features (E, F), types (E,) and per placed parameter (z_last (n,), mu, sigma, s) of the graph's edges,
    from the chronological windows (W, *shape) of all parameters."""
    feats, types, stats = [], [], []
    for i in graph.placed:
        flat = windows[i].reshape(windows[i].shape[0], -1).float()
        z, mu, sigma, s = window_stats(flat)
        feats.append(features(z, s))
        ptype = param_type(windows[i].shape[1:], None if names is None else names[i])
        types.append(torch.full((flat.shape[1],), ptype, dtype=torch.int64, device=flat.device))
        stats.append((z[-1], mu, sigma, s))
    return torch.cat(feats), torch.cat(types), stats


@torch.no_grad()
def predict_network(tensors: dict[str, torch.Tensor], rounds: int, windows: Sequence[torch.Tensor],
                    ks: Sequence[int], names: Sequence[str] | None = None) -> list[list[torch.Tensor]]:
    """Forecasts ``ks[j]`` record intervals ahead (each k in 0..K; 0 = the last state) of every parameter of a
    network, from the chronological windows (W, *shape) of all its parameters in the model's order (and their
    ``names``, optional): per parameter, a list of tensors of its shape and dtype. Parameters the neuron graph
    places come from one forward of the graph model; the others from the per-element fallback."""
    if not windows:
        return []
    counts = {int(w.shape[0]) for w in windows}
    if len(counts) != 1:
        raise ValueError(f"every parameter's window must hold the same number of states, got {sorted(counts)}")
    graph = build_graph([w.shape[1:] for w in windows], names)
    out: list[list[torch.Tensor] | None] = [None] * len(windows)
    if graph.placed:
        feats, types, stats = graph_inputs(windows, graph, names)
        m = graph_forward(tensors, feats, types, graph.src.to(feats.device), graph.dst.to(feats.device),
                          graph.num_nodes, rounds)
        start = 0
        for i, (z_last, mu, sigma, s) in zip(graph.placed, stats):
            w = windows[i]
            rows = m[start:start + len(z_last)]
            start += len(z_last)
            out[i] = [w[-1].clone() if k == 0 else
                      (mu + sigma * (z_last + s * rows[:, k - 1])).reshape(w.shape[1:]).to(w.dtype) for k in ks]
    fallback = fallback_tensors(tensors)
    for i in graph.fallback:
        ptype = param_type(windows[i].shape[1:], None if names is None else names[i])
        out[i] = predict_tensor(fallback, windows[i], ptype, ks)
    return out


class NowcastGraphForecaster(NowcastForecaster):
    """Multi-horizon neuron-graph nowcaster (module docstring). ``path``: a nowcast-graph file (default: the
    shipped weights); ``tensors``/``config``: weights given directly (training, tests). Schedule checks, horizon
    unit and default spacing are those of :class:`.nowcast.NowcastForecaster` (the card's window, spacings and
    horizons 1..k_max)."""

    name = KIND

    def __init__(self, path: str | os.PathLike | None = None, *, tensors: dict[str, torch.Tensor] | None = None,
                 config: dict[str, Any] | None = None, history_dtype: torch.dtype | None = None):
        Forecaster.__init__(self, history_dtype)
        self.path, self.config, self.tensors = io.resolve(KIND, path, tensors, config, graph_shapes)
        self.window = int(self.config["window"])
        self.k_max = int(self.config["k_max"])
        self.rounds = int(self.config["rounds"])
        self.spacings = [int(s) for s in self.config.get("spacings", [])]

    def predict(self, windows: Sequence[torch.Tensor], ks: Sequence[int],
                names: Sequence[str] | None = None) -> list[list[torch.Tensor]]:
        """For the chronological windows (W, *shape) of ALL the parameters of a network, in the model's order
        (the graph needs the whole network; ``names``, optional, refine the parameter types): each parameter's
        forecasts at ``ks`` record intervals ahead (:func:`predict_network`). The signature of the study's
        predictors (:func:`weightcast.study.jumps.nowcast_predictor` wraps it)."""
        ks = whole_horizons(ks, self.k_max)
        if names is not None and len(names) != len(windows):
            raise ValueError(f"got {len(names)} names for {len(windows)} windows; give one name per parameter")
        return predict_network(self.tensors, self.rounds, windows, ks, names)

    def forecast(self, bucket, steps: list[int], target: int) -> list[torch.Tensor]:
        """The optimizer engine's path: the forecast of every parameter of ``bucket`` at step ``target`` (1-D, the
        bucket's dtype), ``target`` a whole number 1..k_max of record intervals past the newest snapshot. The
        bucket's parameters (in their order, by shape only) form the graph; those it cannot place, or every one
        when the bucket holds no sequential network, get the per-element fallback."""
        order = sorted(range(len(steps)), key=lambda i: steps[i])
        chrono = [steps[i] for i in order]
        spacing = (chrono[-1] - chrono[0]) / (len(chrono) - 1)
        k = (target - chrono[-1]) / spacing if spacing > 0 else float("nan")
        if not (k == round(k) and 1 <= k <= self.k_max):
            raise ValueError(f"nowcast-graph predicts 1..{self.k_max} whole record intervals ahead; the optimizer "
                             f"asked for {target - chrono[-1]} steps with records {spacing:g} steps apart")
        history = bucket.history.index_select(0, torch.tensor(order, device=bucket.device))
        windows = [history[:, bucket.segment(i)].reshape(len(order), *shape).to(bucket.dtype)
                   for i, shape in enumerate(bucket.shapes)]
        return [p[0].reshape(-1) for p in predict_network(self.tensors, self.rounds, windows, [int(k)])]
