"""Dynamic width from pretrained weights (seed 003): slimmable layers, slimmable fine-tuning and residual
weight generation.

* :func:`make_slimmable`, :func:`set_width`, :func:`recalibrate_bn`, :func:`export`: run a pretrained MLP,
  LeNet-5, ResNet-18 or the GPT's MLP blocks at several widths (channels in importance order, switchable BN).
* :func:`slimmable_finetune`: the sandwich rule with in-place distillation (Yu et al., Slimmable Neural Networks,
  ICLR 2019; Yu & Huang, US-Nets, ICCV 2019), from the pretrained weights.
* :class:`WeightINR`: an implicit neural representation that generates each width's weights (Neural
  Metamorphosis, Yang & Wang, ECCV 2024), in residual form (a zero-initialised change to the sliced pretrained
  weights) or in full; :func:`train_generator`, :func:`materialize` (the fused generate-and-write op).
"""
from .convert import DEFAULT_WIDTHS, export, get_width, make_slimmable, recalibrate_bn, set_width
from .layers import SlimBatchNorm2d, SlimConv2d, SlimLinear

__all__ = ["DEFAULT_WIDTHS", "SlimBatchNorm2d", "SlimConv2d", "SlimLinear", "export", "get_width",
           "make_slimmable", "recalibrate_bn", "set_width"]
