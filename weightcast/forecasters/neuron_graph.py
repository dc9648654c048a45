"""The neuron graph of a sequential network, from its parameters' shapes (and names) in order.

As in NiNo (Knyazev et al., ICLR 2025, "Accelerating Training with Neuron Interaction and Nowcasting Networks"),
neurons are nodes and weights are edges:

* a Linear weight (out, in) gives ``out * in`` edges from its input neurons to its output neurons;
* a Conv2d weight (out, in, kh, kw) gives ``kh * kw`` parallel edges per (input channel, output channel) pair
  (one node per channel);
* a 1-D parameter (bias, norm weight or bias) right after a placed layer, of that layer's output size, is a node
  feature of its output neurons: one self-loop edge per neuron (source = target = the neuron);
* consecutive layers share neurons: when a layer's input size equals the previous layer's output size, its input
  neurons are the previous layer's output neurons; a Linear after a Conv2d whose input size is a multiple of the
  channels (the flatten of LeNet-5) connects each flattened input to its channel's node (``in // channels``
  parallel edges per channel); any other layer starts new input neurons.

Only parameters typed conv or linear (:func:`weightcast.forecasters.nowcast.param_type`, by name when names are
given, else by dimension) are layers; embeddings, attention weights, stray 1-D parameters and tensors of other
ranks are left out (``fallback``) for the per-element nowcaster. Without names (the optimizer engine sees only
shapes) every 2-D tensor is taken for a Linear weight.

Every element of a placed parameter is one edge, in the parameter's flat (row-major) order, so the graph's edge
list is the concatenation of the placed parameters' flattened elements.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from .nowcast import PARAM_TYPES, param_type

LAYER_TYPES = ("conv", "linear")
NODE_FEATURE_TYPES = ("bias", "norm")


@dataclass
class NeuronGraph:
    """``placed``: indices of the parameters in the graph, in order; ``fallback``: the others. ``src``, ``dst``:
    (E,) int64 node indices of every element of the placed parameters (concatenated flat, in ``placed`` order);
    ``num_nodes``: number of neurons; ``num_weight_edges``: edges from layer weights (E minus the self-loops of
    node features)."""

    num_nodes: int
    placed: list[int]
    fallback: list[int]
    src: torch.Tensor
    dst: torch.Tensor
    num_weight_edges: int

    @property
    def num_edges(self) -> int:
        return int(self.src.numel())


def build_graph(shapes: Sequence[Sequence[int]], names: Sequence[str] | None = None) -> NeuronGraph:
    """The neuron graph of parameters of ``shapes`` (in the model's order) and optional ``names`` (module
    docstring). Raises ValueError when ``names`` is given with another length than ``shapes``."""
    if names is not None and len(names) != len(shapes):
        raise ValueError(f"got {len(names)} names for {len(shapes)} parameters; give one name per parameter")
    num_nodes, placed, fallback, srcs, dsts, weight_edges = 0, [], [], [], [], 0
    outputs: torch.Tensor | None = None  # node ids of the last placed layer's output neurons
    last_kind = None
    attachable = False  # the previous parameter was placed: a 1-D parameter may join its output neurons
    for i, shape in enumerate(shapes):
        shape = tuple(int(n) for n in shape)
        kind = PARAM_TYPES[param_type(shape, None if names is None else names[i])]
        if kind in LAYER_TYPES and len(shape) in (2, 4) and math.prod(shape) > 0:
            fan_out, fan_in, taps = shape[0], shape[1], math.prod(shape[2:])
            if outputs is not None and len(outputs) == fan_in:
                inputs = outputs
            elif outputs is not None and last_kind == "conv" and len(shape) == 2 and fan_in % len(outputs) == 0:
                inputs = outputs.repeat_interleave(fan_in // len(outputs))  # flatten: (C, H, W) channel-major
            else:
                inputs = torch.arange(num_nodes, num_nodes + fan_in)
                num_nodes += fan_in
            outputs = torch.arange(num_nodes, num_nodes + fan_out)
            num_nodes += fan_out
            srcs.append(inputs[None, :, None].expand(fan_out, fan_in, taps).reshape(-1))
            dsts.append(outputs[:, None, None].expand(fan_out, fan_in, taps).reshape(-1))
            weight_edges += fan_out * fan_in * taps
            placed.append(i)
            last_kind, attachable = kind, True
        elif (kind in NODE_FEATURE_TYPES and len(shape) == 1 and attachable and outputs is not None
              and shape[0] == len(outputs)):
            srcs.append(outputs)
            dsts.append(outputs)
            placed.append(i)
        else:
            fallback.append(i)
            attachable = False
    empty = torch.zeros(0, dtype=torch.int64)
    return NeuronGraph(num_nodes, placed, fallback, torch.cat(srcs) if srcs else empty,
                       torch.cat(dsts) if dsts else empty, weight_edges)
