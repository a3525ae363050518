"""Block supernets: every candidate of one block, weights shared along prefixes (and between twins).

Layer ``j`` of a candidate is the module keyed by ``(j, latency unit of that layer)``, built by the space's own
``build_unit`` (so it is the very timm module the child network uses). Two candidates that agree on their first
``j`` layers therefore share those layers' weights, their outputs and their BatchNorm statistics: a depth choice is
a prefix, and rating can walk a prefix tree. With ``share_twins`` a layer whose kernel is wider than its input
map can reach is the module of the narrowest kernel it equals (``SearchSpace.twin_unit``): twins get one module, all
of its training steps and one rating. With ``separate_depths`` each depth is its own cell, as DNA trains them:
a layer's module is keyed by the candidate's depth too, and each depth has its own output adapters, so a shallow
candidate's last layer is not also trained as a deeper one's inner layer (the prefix tree then forks at the root
by depth; the input adapter stays one per input width, shared by the block's candidates). Adapters map the
teacher's features to the student's input width and the student's output back to the teacher's width (1x1
convolutions for feature maps, linear maps for tokens).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Hashable
from functools import cache
from typing import Any

import torch
from torch import nn

from search_spaces import LatencyUnit, SearchSpace


def make_adapter(source: tuple[int, ...], target: tuple[int, ...]) -> nn.Module:
    """Identity when shapes agree, else a 1x1 convolution (C, H, W) or a linear map (tokens, dim)."""
    if tuple(source) == tuple(target):
        return nn.Identity()
    if len(source) == 3 and source[1:] == target[1:]:
        return nn.Conv2d(source[0], target[0], kernel_size=1)
    if len(source) == 2 and source[0] == target[0]:
        return nn.Linear(source[1], target[1])
    raise ValueError(f"cannot adapt features of shape {tuple(source)} to {tuple(target)}: spatial sizes (or token "
                     "counts) differ; the teacher's stages do not line up with the space's blocks")


def layer_key(position: int, unit: LatencyUnit, depth: int | None = None) -> str:
    """ModuleDict key of layer ``position`` built as ``unit``: shared by every depth, or, given ``depth``, the cell
    of that depth's own."""
    return _of_depth(f"l{position}_{hashlib.sha1(unit.key.encode()).hexdigest()[:16]}", depth)


def _of_depth(key: str, depth: int | None) -> str:
    """``key`` shared by every depth (``depth`` None), or the key of that depth's own cell."""
    return key if depth is None else f"d{depth}_{key}"


class BlockSupernet(nn.Module):
    """All candidates of block ``block`` of ``space``, trained to mimic the teacher's matching stage."""

    def __init__(self, space: SearchSpace, block: int, teacher_in: tuple[int, ...], teacher_out: tuple[int, ...],
                 share_twins: bool = False, separate_depths: bool = False):
        super().__init__()
        self.space, self.block, self.share_twins, self.separate_depths = space, block, share_twins, separate_depths
        self.candidates = space.block_candidates(block)
        self.states = space.block_input_states(block)
        self.teacher_in, self.teacher_out = tuple(teacher_in), tuple(teacher_out)
        self.layers = nn.ModuleDict()
        self.unit_keys: dict[str, str] = {}
        for state in self.states:
            for candidate in self.candidates:
                units = self.units(candidate, state)
                for position, unit in enumerate(units):
                    key = self.module_key(len(units), position, unit)
                    if key not in self.layers:
                        self.layers[key] = space.build_unit(unit).train()
                        self.unit_keys[key] = unit.key
        self.adapters_in = nn.ModuleDict({
            self._state_key(s): make_adapter(self.teacher_in, self.units(self.candidates[0], s)[0].input_shape)
            for s in self.states
        })
        self.adapters_out = nn.ModuleDict()
        for candidate in self.candidates:
            output = self._output_key(candidate)
            if output not in self.adapters_out:
                shape = self._student_output_shape(candidate)
                self.adapters_out[output] = make_adapter(shape, self.teacher_out)

    def depth(self, candidate: Any) -> int:
        """The candidate's number of layers."""
        return len(self.units(candidate, self.states[0]))

    def module_key(self, depth: int, position: int, unit: LatencyUnit) -> str:
        """Key of the module that computes layer ``position`` (built as ``unit``) of a candidate ``depth`` layers
        deep: shared by every depth, or the depth's own with ``separate_depths``."""
        return layer_key(position, unit, depth if self.separate_depths else None)

    def _output_key(self, candidate: Any) -> str:
        return _of_depth(self._state_key(self.space.block_output_state(self.block, candidate)),
                         self.depth(candidate) if self.separate_depths else None)

    def output_adapter(self, candidate: Any) -> nn.Module:
        """The map from the candidate's output to the teacher's width."""
        return self.adapters_out[self._output_key(candidate)]

    def candidate_layers(self, candidate: Any, state: Hashable) -> list[nn.Module]:
        """The layer modules the candidate runs on input state ``state``, in order (no adapters)."""
        units = self.units(candidate, state)
        return [self.layers[self.module_key(len(units), p, u)] for p, u in enumerate(units)]

    @staticmethod
    def _state_key(state: Hashable) -> str:
        return f"s{state}"

    def units(self, candidate: Any, state: Hashable) -> list[LatencyUnit]:
        """The modules of the candidate's layers, as latency units (cached): its own units, or with ``share_twins``
        each layer's ``space.twin_unit`` (a kernel wider than its map is trained as the narrow one it equals)."""
        return _units(self.space, self.block, candidate, state, self.share_twins)

    @torch.no_grad()
    def _student_output_shape(self, candidate: Any) -> tuple[int, ...]:
        state = self.states[0]
        probe = torch.zeros((1, *self.teacher_in))
        was_training = self.training
        self.eval()
        out = self.path_forward(probe, state, candidate, adapt_out=False)
        self.train(was_training)
        return tuple(out.shape[1:])

    def path_forward(self, x: torch.Tensor, state: Hashable, candidate: Any, adapt_out: bool = True) -> torch.Tensor:
        """The candidate's output (adapted to the teacher's width) for teacher features ``x``."""
        h = self.adapters_in[self._state_key(state)](x)
        for layer in self.candidate_layers(candidate, state):
            h = layer(h)
        return self.output_adapter(candidate)(h) if adapt_out else h

    def forward(self, x: torch.Tensor, state: Hashable, candidate: Any) -> torch.Tensor:
        return self.path_forward(x, state, candidate)

    def sample_path(self, rng: random.Random) -> tuple[Hashable, Any]:
        """A uniformly random input state and candidate (depth, width and every op uniform)."""
        state = rng.choice(self.states)
        return state, self.space.blocks_of(self.space.sample(rng))[self.block]


@cache
def _units(space: SearchSpace, block: int, candidate: Any, state: Hashable, twins: bool) -> list[LatencyUnit]:
    units = space.block_units(block, candidate, state)
    return [space.twin_unit(u) for u in units] if twins else units
