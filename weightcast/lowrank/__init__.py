"""Dynamical low-rank training (DLRT): low-rank layers W = U S Vᵀ whose ranks adapt during training.

    import weightcast as wc
    model = wc.lowrank.to_low_rank(model, layers=["fc1"])          # SVD initialisation
    opt = wc.lowrank.KLS(model, lr=0.05, theta=0.15)                # rank-adaptive KLS integrator, one backward
    loss_fn(model(x), y).backward(); opt.step(); opt.zero_grad()
    wc.lowrank.parameter_count(model, "reference"), wc.lowrank.parameter_count(model, "full")
    dense = wc.lowrank.to_dense(model)

Source: Schotthöfer, Zangrando, Kusch, Ceruti, Tudisco, NeurIPS 2022 (seed 001); see :mod:`.integrator`.
"""
from .convert import forward_flops, low_rank_layers, parameter_count, to_dense, to_low_rank
from .integrator import KLS, augment, truncation_rank
from .layers import LowRankConv2d, LowRankLayer, LowRankLinear
from .models import ReferenceLeNet5
from .reference import KLSThreePass

__all__ = ["KLS", "KLSThreePass", "LowRankConv2d", "LowRankLayer", "LowRankLinear", "ReferenceLeNet5", "augment",
           "forward_flops", "low_rank_layers", "parameter_count", "to_dense", "to_low_rank", "truncation_rank"]
