"""Zero-cost proxies: scores of an architecture at initialisation, and their combination with ratings.

NASWOT (Mellor et al. 2021, "Neural Architecture Search without Training") reads how differently a freshly
initialised network's activations partition a batch of real images; it costs one forward pass. It is a whole-network
score, so it cannot be split over blocks as DNA's ratings are; ``rank_mean`` combines it with a rating over a set of
candidates, and ``NaswotChoice`` picks a search's architecture among its finalists that way.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import rankdata
from torch import nn

from search_spaces import SearchSpace

ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish, nn.GELU, nn.Hardsigmoid, nn.Sigmoid)


def naswot(model: nn.Module, images: torch.Tensor) -> float:
    """NASWOT: log |det K| of the batch's activation-pattern kernel, K[i, j] the number of units whose activation
    input has the same sign for images i and j (the sign at the input of every activation layer: ReLU's on/off
    pattern, read the same way for smooth activations). Higher is better; the model is left in training mode
    (batch statistics, as at initialisation in training)."""
    codes: list[torch.Tensor] = []

    def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        codes.append((inputs[0].detach().flatten(1) > 0).float())

    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, ACTIVATIONS)]
    try:
        with torch.no_grad():
            model.float().train()(images)
    finally:
        for handle in handles:
            handle.remove()
    if not codes:
        raise ValueError("the network has no activation layer NASWOT can read")
    code = torch.cat(codes, dim=1)
    kernel = code @ code.t() + (1 - code) @ (1 - code).t()
    sign, logdet = torch.linalg.slogdet(kernel.double())
    return float(logdet) if sign != 0 else float("-inf")


def rank_mean(scores: Sequence[Sequence[float]]) -> list[float]:
    """The mean of each candidate's ranks under several scores (each oriented higher-is-better; ties share their mean
    rank): higher is better, and no score's scale outweighs another's."""
    if not scores or len({len(s) for s in scores}) != 1:
        raise ValueError("rank_mean needs one or more scores of equal length")
    ranks = [rankdata(np.nan_to_num(np.asarray(s, dtype=float), nan=-np.inf)) for s in scores]
    return [float(v) for v in np.mean(ranks, axis=0)]


NASWOT_IMAGES = 64  # training images NASWOT reads (the benchmarks' proxy batch)


def naswot_of(space: SearchSpace, archs: Sequence[Hashable], images: torch.Tensor, seed: int = 0) -> list[float]:
    """NASWOT of each architecture, built at initialisation with ``seed`` (the same start for every one)."""
    values = []
    for arch in archs:
        torch.manual_seed(seed)
        values.append(naswot(space.build(arch), images))
    return values


@dataclass(frozen=True)
class NaswotChoice:
    """Candidates ordered by the mean rank of their rating (lower is better) and their NASWOT: the pick (the highest
    mean rank; ties to the better rating) and each candidate's rating, NASWOT and mean rank."""

    pick: Hashable
    table: dict[str, dict[str, float]]

    @staticmethod
    def among(space: SearchSpace, candidates: Sequence[Hashable], rating_of: Callable[[Hashable], float],
              images: torch.Tensor) -> NaswotChoice:
        """Score ``candidates`` (one or more) and pick."""
        if not candidates:
            raise ValueError("NASWOT re-ranking needs at least one candidate")
        ratings = [rating_of(a) for a in candidates]
        values = naswot_of(space, candidates, images)
        means = rank_mean([[-r for r in ratings], values])
        best = max(range(len(candidates)), key=lambda i: (means[i], -ratings[i]))
        table = {str(a): {"rating": r, "naswot": v, "rank_mean": m}
                 for a, r, v, m in zip(candidates, ratings, values, means, strict=True)}
        return NaswotChoice(candidates[best], table)
