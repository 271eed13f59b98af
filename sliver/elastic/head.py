"""Linear probes: fit a classifier head on frozen features (the start of a fine-tuning run, LP-FT)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def fit_linear_probe(features: torch.Tensor, labels: torch.Tensor, out_features: int,
                     l2: float = 1e-2) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Weight, bias and train accuracy (%) of a softmax classifier fitted by full-batch L-BFGS.

    ``l2`` keeps the head modest: large logits from an over-fitted probe give
    gradients that wreck the pre-trained body in the first fine-tuning steps.
    """
    if len(features) != len(labels) or len(features) == 0:
        raise ValueError(f"a linear probe needs as many labels as examples (got {len(features)} and {len(labels)})")
    features = features.detach()
    weight = torch.zeros(out_features, features.shape[1], dtype=features.dtype, requires_grad=True)
    bias = torch.zeros(out_features, dtype=features.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([weight, bias], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(F.linear(features, weight, bias), labels) + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        acc = float((F.linear(features, weight, bias).argmax(1) == labels).float().mean() * 100)
    return weight.detach(), bias.detach(), acc
