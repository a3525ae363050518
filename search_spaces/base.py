"""The contract every search space fulfils, and the latency unit it is profiled by."""

from __future__ import annotations

import hashlib
import json
import random
from abc import ABC, abstractmethod
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch
from torch import nn

Scalar = int | float | str


@dataclass(frozen=True)
class LatencyUnit:
    """One separately measurable piece of a network: a layer with its exact input shape and settings.

    ``kind`` names what is built (``mbconv_ir``, ``vit_layer``...), ``input_shape`` is the input without the batch
    dimension and ``params`` are the sorted settings that, with the shape, fully determine the module. ``key`` is the
    one canonical name latency tables use; it is built here and nowhere else.
    """

    kind: str
    input_shape: tuple[int, ...]
    params: tuple[tuple[str, Scalar], ...]

    @staticmethod
    def of(kind: str, input_shape: Sequence[int], **params: Scalar) -> LatencyUnit:
        """Build a unit with its params in canonical (sorted) order."""
        return LatencyUnit(kind, tuple(int(d) for d in input_shape), tuple(sorted(params.items())))

    @cached_property
    def key(self) -> str:
        """Canonical string, e.g. ``mbconv_ir[24x56x56](cout=40,e=6,k=5,s=2)`` (computed once per unit)."""
        shape = "x".join(str(d) for d in self.input_shape)
        settings = ",".join(f"{name}={value}" for name, value in self.params)
        return f"{self.kind}[{shape}]({settings})"

    def param(self, name: str) -> Scalar:
        """The value of one setting; KeyError names the unit when it has no such setting."""
        for key, value in self.params:
            if key == name:
                return value
        raise KeyError(f"latency unit {self.key} has no setting {name!r}")


class SearchSpace(ABC):
    """A finite set of buildable architectures, cut into blocks (the units of block-wise distillation).

    Contract:
    - an architecture is a frozen, hashable value; ``str(arch)`` is canonical and ``parse(str(a)) == a``;
    - ``parse`` raises ValueError naming the position and the allowed choices for anything outside the space;
    - ``count()`` is exact and equals the number of architectures ``enumerate()`` yields;
    - ``build(arch)`` returns a ``torch.nn.Module`` taking ``(B, *input_shape)`` and returning logits;
    - ``units(arch)`` lists the latency units the architecture is made of, in execution order; each is a member of
      ``all_units()``, which is finite and small, and ``build_unit(u)`` builds the very module the network uses.
    """

    name: str
    resolution: int
    num_classes: int

    # -- architectures -------------------------------------------------------------------------------------------
    @abstractmethod
    def parse(self, text: str) -> Hashable:
        """Decode an architecture string; ValueError names what is wrong and what is allowed."""

    @abstractmethod
    def sample(self, rng: random.Random) -> Hashable:
        """A uniformly random choice at every decision (depth, width, op)."""

    @abstractmethod
    def enumerate(self) -> Iterator[Hashable]:
        """Every architecture of the space, in a deterministic order (use on reduced spaces)."""

    @abstractmethod
    def count(self) -> int:
        """The exact number of architectures in the space (closed form)."""

    @abstractmethod
    def mutate(self, arch: Hashable, rng: random.Random) -> Hashable:
        """A neighbour: one decision of ``arch`` changed to another allowed value."""

    @abstractmethod
    def block_candidates(self, block: int) -> list[Any]:
        """Every candidate of one block (the choices a block-wise supernet rates)."""

    @abstractmethod
    def blocks_of(self, arch: Hashable) -> tuple[Any, ...]:
        """The candidate chosen in each block of ``arch``."""

    @abstractmethod
    def assemble(self, candidates: Sequence[Any]) -> Hashable:
        """The architecture made of one candidate per block (validated)."""

    @abstractmethod
    def initial_state(self) -> Hashable:
        """What the first block receives (e.g. the stem's width)."""

    @abstractmethod
    def block_output_state(self, block: int, candidate: Any) -> Hashable:
        """What the next block receives from ``candidate`` (e.g. its width)."""

    @abstractmethod
    def block_units(self, block: int, candidate: Any, state: Hashable) -> list[LatencyUnit]:
        """The units of ``candidate`` in block ``block`` when the previous block hands over ``state``."""

    @abstractmethod
    def stem_units(self) -> list[LatencyUnit]:
        """Units before the first block."""

    @abstractmethod
    def head_units(self, state: Hashable) -> list[LatencyUnit]:
        """Units after the last block, given its output state."""

    def function_key(self, block: int, candidate: Any) -> Hashable:
        """Candidates of one block with equal keys compute the same family of functions in this space (at its input
        resolution), so they deserve one rating. By default every candidate is its own family."""
        return candidate

    def twin_unit(self, unit: LatencyUnit) -> LatencyUnit:
        """The unit that computes the same family of functions as ``unit`` and is the smallest this space offers
        (a supernet may train one module for both). By default every unit is its own."""
        return unit

    def block_input_states(self, block: int) -> list[Hashable]:
        """Every state block ``block`` can receive."""
        if block == 0:
            return [self.initial_state()]
        return list(dict.fromkeys(self.block_output_state(block - 1, c) for c in self.block_candidates(block - 1)))

    @property
    @abstractmethod
    def num_blocks(self) -> int:
        """Number of searchable blocks (distillation units)."""

    # -- models --------------------------------------------------------------------------------------------------
    @property
    @abstractmethod
    def input_shape(self) -> tuple[int, ...]:
        """Input shape without the batch dimension."""

    @abstractmethod
    def build(self, arch: Hashable) -> nn.Module:
        """The child network of ``arch`` built from timm's blocks (random init, eval-ready)."""

    @abstractmethod
    def units(self, arch: Hashable) -> list[LatencyUnit]:
        """The latency units ``arch`` is made of, in execution order."""

    @abstractmethod
    def all_units(self) -> list[LatencyUnit]:
        """Every distinct latency unit any architecture of the space can contain (sorted by key)."""

    @abstractmethod
    def build_unit(self, unit: LatencyUnit) -> nn.Module:
        """The module measured for ``unit``; identical in structure to the one inside the networks."""

    @abstractmethod
    def definition(self) -> dict[str, Any]:
        """A JSON-able description of everything that defines the space (its hash keys latency tables)."""

    @abstractmethod
    def describe_blocks(self, arch: Hashable) -> list[dict[str, Any]]:
        """Per block: what it contains and where it begins and ends (input/output shapes)."""

    def definition_hash(self) -> str:
        """Short stable hash of ``definition()``: two spaces with equal hashes build identical networks."""
        blob = json.dumps(self.definition(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def unit_input(self, unit: LatencyUnit, batch: int = 1) -> torch.Tensor:
        """A deterministic example input for ``unit``."""
        generator = torch.Generator().manual_seed(0)
        return torch.randn((batch, *unit.input_shape), generator=generator)

    def example_input(self, batch: int = 1) -> torch.Tensor:
        """A deterministic example input for a whole network."""
        generator = torch.Generator().manual_seed(0)
        return torch.randn((batch, *self.input_shape), generator=generator)

    # -- hooks the engine calls instead of checking model classes ---------------------------------------------------
    def to_timm_arch_def(self, arch: Hashable) -> list[list[str]] | None:
        """timm's arch-def strings that build ``arch`` with timm's builder; None for spaces without one."""
        return None

    def searchable_layers(self, model: nn.Module) -> list[nn.Module]:
        """The searched layers of a network ``build`` made, in execution order (what a child takes from the block
        supernets)."""
        return list(model.blocks)

    def cut_into_blocks(
        self, model: nn.Module, description: dict[str, Any],
    ) -> tuple[nn.Module, list[nn.Module], nn.Module, dict[str, Any]]:
        """Cut a network of this space's family (a member, or a timm model used as teacher, described by
        ``description``: its ``name``, and what an earlier cut recorded) into stem, one stage per block and head,
        with what the cut needs recorded; ValueError when it cannot be cut."""
        raise ValueError(f"space {self.name} cannot cut {description.get('name')} ({type(model).__name__}) into its "
                         "blocks")

    def info(self, arch: Hashable) -> dict[str, Any]:
        """Params, MACs at the space's resolution, block boundaries and the size of the space."""
        model = self.build(arch).eval()
        return {
            "space": self.name,
            "arch": str(arch),
            "resolution": self.resolution,
            "params": sum(p.numel() for p in model.parameters()),
            "macs": count_macs(model, self.example_input()),
            "blocks": self.describe_blocks(arch),
            "space_size": self.count(),
            "units": [u.key for u in self.units(arch)],
        }


def count_macs(model: nn.Module, example: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass, counted by torch's FlopCounterMode (FLOPs / 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(example)
    return counter.get_total_flops() // 2


def choice_error(what: str, got: object, allowed: Sequence[object]) -> ValueError:
    """The one wording of 'this choice is not in the space'."""
    options = ", ".join(str(a) for a in allowed)
    return ValueError(f"{what}: {got!r} is not allowed; choose one of: {options}")
