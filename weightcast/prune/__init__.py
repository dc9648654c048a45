"""One-shot pruning of pretrained classifiers and the sparsity-conditioned mask hypernetwork (seed 002).

    from weightcast.prune import prune
    masks = prune(model, 0.9, method="obs", data=(x, y))   # {"<layer>.weight": bool mask}, applied in place

Methods (:func:`prune`): random, magnitude (global / per layer), LAMP, hypernet (weights only), layer-wise OBS
(:mod:`.obs`, kernel :mod:`.obs_kernel`), WoodFisher and CHITA (:mod:`.fisher`). Masks are applied with
``torch.nn.utils.prune.custom_from_mask``; :func:`finetune` and :func:`recalibrate_bn` recover accuracy after.
"""
from .api import (DATA_BASED, DATA_FREE, METHODS, apply_masks, check_sparsity, finetune, keep_top, load_pruned,
                  make_permanent, prune, recalibrate_bn, sparsity_of)
from .calibration import Calibration
from .hypernet import MaskHypernetwork
from .models import BiasFreeMLP

__all__ = ["BiasFreeMLP", "Calibration", "DATA_BASED", "DATA_FREE", "METHODS", "MaskHypernetwork", "apply_masks",
           "check_sparsity", "finetune", "keep_top", "load_pruned", "make_permanent", "prune", "recalibrate_bn",
           "sparsity_of"]
