"""One rating per family of candidates that compute the same functions.

Some spaces offer, at their input resolution, candidates that differ in name but not in what they can compute: in
``mbconv-tiny`` at 32 px a depthwise kernel wider than the map only adds taps that read padding, so ``e6k7`` and
``e6k3`` on a 2x2 map are one layer (``SearchSpace.function_key`` says which). Their distilled ratings then differ
only by the training seed, and the combiner pays the wider kernel's latency whenever the seed favours it.
``pool_equivalent`` gives every member of a family the family's mean rating (the mean of several noisy estimates of
one quantity), so the search picks the cheapest member and the rating's seed noise shrinks.
"""

from __future__ import annotations

import statistics
from collections.abc import Hashable, Mapping, Sequence

from search_spaces import SearchSpace

Ratings = list[dict[str, float]]


def equivalence_classes(space: SearchSpace, block: int) -> list[list[str]]:
    """The block's candidate strings grouped by ``space.function_key``, in the block's candidate order; a class of
    one is a candidate with no twin."""
    classes: dict[Hashable, list[str]] = {}
    for candidate in space.block_candidates(block):
        classes.setdefault(space.function_key(block, candidate), []).append(str(candidate))
    return list(classes.values())


def _rated_classes(space: SearchSpace, block: int, rated: Mapping[str, float]) -> list[list[str]]:
    """The block's classes cut to its rated candidates (empty classes dropped); ValueError on a name the block does
    not offer."""
    classes = equivalence_classes(space, block)
    unknown = sorted(set(rated).difference(*classes))
    if unknown:
        raise ValueError(f"block {block} rates {unknown[:3]}, not candidates of {space.name}; rate this space's "
                         "supernets again ('hwnas rate')")
    return [present for members in classes if (present := [m for m in members if m in rated])]


def _check_blocks(space: SearchSpace, ratings: Sequence[Mapping[str, float]]) -> None:
    if len(ratings) != space.num_blocks:
        raise ValueError(f"{len(ratings)} blocks of ratings for {space.name}, which has {space.num_blocks}; rate "
                         "every block of this space ('hwnas rate')")


def pool_equivalent(space: SearchSpace, ratings: Sequence[Mapping[str, float]]) -> Ratings:
    """Per block, every rated candidate's rating replaced by the mean over the rated members of its family."""
    _check_blocks(space, ratings)
    pooled: Ratings = []
    for block, rated in enumerate(ratings):
        means = {}
        for members in _rated_classes(space, block, rated):
            means.update(dict.fromkeys(members, statistics.fmean(rated[name] for name in members)))
        pooled.append({name: means[name] for name in rated})
    return pooled


def pooled_counts(space: SearchSpace, ratings: Sequence[Mapping[str, float]]) -> list[dict[str, int]]:
    """Per block, how many candidates were rated and how many different functions they compute."""
    _check_blocks(space, ratings)
    return [{"rated": len(rated), "functions": len(_rated_classes(space, block, rated))}
            for block, rated in enumerate(ratings)]
