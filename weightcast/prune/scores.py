"""Data-free importance scores of every weight, from the weights alone: path (SynFlow-like) and LAMP scores.

The mask hypernetwork (:mod:`.hypernet`) reads both as per-weight features, and the layer-wise sparsity
allocations that global pruning by each of them makes as per-layer features.
"""
from __future__ import annotations

import torch


def path_scores(weights: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per layer, float64 scores of the weight's shape, each layer summing to 1: |w| times the flow of |W|-paths
    into its input unit and out of its output unit, computed from the weights alone -- SynFlow's score
    |w * dR/dw| with R = 1ᵀ|W_L|...|W_1|1 (Tanaka et al. 2020, "Pruning neural networks without any data by
    iteratively conserving synaptic flow"), in one shot, with a Conv's kernel positions summed and a flatten
    between Conv and Linear taken as each channel feeding its positions' inputs. Layers whose sizes do not
    chain (not a multiple of the previous layer's outputs) are taken as fed by, and feeding, a flow of ones."""
    a = [w.detach().double().abs().reshape(w.shape[0], w.shape[1], -1) for w in weights]
    mats = [x.sum(2) for x in a]   # (out, in): the kernel positions summed

    def chained(li: int) -> int:   # inputs of layer li per output unit of layer li - 1 (0: not chained)
        if li == 0 or mats[li].shape[1] % mats[li - 1].shape[0]:
            return 0
        return mats[li].shape[1] // mats[li - 1].shape[0]

    inflow = [torch.ones(mats[0].shape[1], dtype=torch.float64)]
    for li in range(1, len(mats)):
        m = chained(li)
        out = mats[li - 1] @ inflow[-1]
        inflow.append((out / out.mean().clamp(min=1e-300)).repeat_interleave(m) if m else
                      torch.ones(mats[li].shape[1], dtype=torch.float64))
    outflow = [torch.ones(mats[-1].shape[0], dtype=torch.float64)]
    for li in range(len(mats) - 1, 0, -1):
        m = chained(li)
        back = mats[li].t() @ outflow[0]
        back = back.reshape(-1, m).sum(1) if m else torch.ones(mats[li - 1].shape[0], dtype=torch.float64)
        outflow.insert(0, back / back.mean().clamp(min=1e-300))
    out = []
    for w, f, g in zip(a, inflow, outflow):
        score = w * g[:, None, None] * f[None, :, None]
        out.append((score / score.sum().clamp(min=1e-300)).reshape(weights[len(out)].shape))
    return out


def lamp_scores(weights: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per layer, float32 LAMP scores of the weight's shape (Lee et al. 2021, "Layer-adaptive sparsity for the
    magnitude-based pruning"): w_u² over the sum of w_v² of the layer's weights at least as large as w_u."""
    out = []
    for w in weights:
        sq = w.detach().double().flatten().pow(2)
        srt, idx = torch.sort(sq)
        tail = srt.flip(0).cumsum(0).flip(0).clamp(min=1e-300)
        score = torch.empty_like(sq)
        score[idx] = srt / tail
        out.append(score.float().reshape(w.shape))
    return out
