"""DNA's MBConv search space, built through timm's EfficientNet builder.

An architecture is written ``W:op,op,...|W:op,...`` with one group per searchable stage, ``W`` the stage's base
width (before the space's width multiplier) and each op ``e{expansion}k{kernel}``, e.g. EfficientNet-B0 is
``24:e6k3,e6k3|40:e6k5,e6k5|80:e6k3,e6k3,e6k3|112:e6k5,e6k5,e6k5|192:e6k5,e6k5,e6k5,e6k5|320:e6k3``.
A multi-branch op ``e6k3.5.7`` (MixNet's mixed depthwise convolution: the expanded channels split into equal groups,
one kernel each, run in parallel) is written as timm writes its kernel lists; timm's builder makes it a
``MixedConv2d``. Spaces offer it only where their ``ops`` include it (``mbconv-tiny-64-mix``).
"""

from __future__ import annotations

import itertools
import math
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from timm.layers import get_act_layer
from timm.models._efficientnet_blocks import SqueezeExcite
from timm.models._efficientnet_builder import (
    EfficientNetBuilder,
    decode_arch_def,
    efficientnet_init_weights,
    round_channels,
)
from timm.models.efficientnet import EfficientNet
from torch import nn

from search_spaces.base import LatencyUnit, SearchSpace, choice_error

_OP_PATTERN = re.compile(r"e(\d+)k(\d+(?:\.\d+)*)")


@dataclass(frozen=True, order=True)
class MBConvOp:
    """One inverted-residual layer choice: expansion ratio and depthwise kernel size; with ``mixed`` kernels (two or
    more, ascending) a multi-branch layer whose depthwise convolution runs each kernel on its own channel group
    (``kernel`` is then the widest)."""

    expansion: int
    kernel: int
    mixed: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.mixed and (len(self.mixed) < 2 or list(self.mixed) != sorted(set(self.mixed))
                           or self.kernel != self.mixed[-1]):
            raise ValueError(f"a mixed-kernel op needs two or more distinct ascending kernels, the widest as its "
                             f"kernel; got kernel {self.kernel}, mixed {self.mixed}")

    @classmethod
    def of(cls, expansion: int, kernels: Sequence[int]) -> MBConvOp:
        """The op of one kernel, or the mixed-kernel op of several (in any order)."""
        ordered = tuple(sorted(set(int(k) for k in kernels)))
        return cls(expansion, ordered[-1], ordered if len(ordered) > 1 else ())

    @property
    def kernels(self) -> tuple[int, ...]:
        """Every depthwise kernel of the layer (one for a plain op)."""
        return self.mixed or (self.kernel,)

    @property
    def kernel_text(self) -> str:
        """The kernel as timm's arch-def strings write it: ``5``, or ``3.5.7`` for mixed kernels."""
        return ".".join(str(k) for k in self.kernels)

    def __str__(self) -> str:
        return f"e{self.expansion}k{self.kernel_text}"


@dataclass(frozen=True)
class MBConvStage:
    """The choice made for one searchable stage: its base width and one op per layer."""

    width: int
    ops: tuple[MBConvOp, ...]

    @property
    def depth(self) -> int:
        """Number of layers."""
        return len(self.ops)

    def __str__(self) -> str:
        return f"{self.width}:" + ",".join(str(op) for op in self.ops)


@dataclass(frozen=True)
class MBConvArch:
    """A member of an MBConv space: one ``MBConvStage`` per searchable stage."""

    stages: tuple[MBConvStage, ...]

    def __str__(self) -> str:
        return "|".join(str(stage) for stage in self.stages)


@dataclass(frozen=True)
class StageSpec:
    """What a searchable stage may be: allowed base widths, its stride and allowed depths."""

    widths: tuple[int, ...]
    stride: int
    depths: tuple[int, ...]


def _parse_op(text: str) -> MBConvOp | None:
    """``e6k5`` or ``e6k3.5.7`` as an op, or None when it is not one."""
    match = _OP_PATTERN.fullmatch(text.strip())
    if not match:
        return None
    kernels = [int(k) for k in match.group(2).split(".")]
    op = MBConvOp.of(int(match.group(1)), kernels)
    return op if op.kernel_text == match.group(2) else None  # one spelling per op: ascending, no repeats


DNA_OPS: tuple[MBConvOp, ...] = tuple(MBConvOp(e, k) for e in (3, 6) for k in (3, 5, 7))
MIXED_OPS: tuple[MBConvOp, ...] = tuple(MBConvOp.of(e, (3, 5, 7)) for e in (3, 6))

# EfficientNet-B0's stages, widened so that DNA's published models (96/112 and 160/192) and B0 are members.
DNA_STAGES: tuple[StageSpec, ...] = (
    StageSpec((24,), 2, (1, 2, 3, 4, 5)),
    StageSpec((40,), 2, (1, 2, 3, 4, 5)),
    StageSpec((80,), 2, (1, 2, 3, 4, 5)),
    StageSpec((96, 112), 1, (1, 2, 3, 4, 5)),
    StageSpec((160, 192), 2, (1, 2, 3, 4, 5)),
    StageSpec((320,), 1, (1,)),
)


class MBConvSpace(SearchSpace):
    """DNA's MBConv space: fixed stem and head, searchable stages of inverted-residual layers (SE, swish)."""

    def __init__(
        self,
        name: str,
        stages: Sequence[StageSpec] = DNA_STAGES,
        ops: Sequence[MBConvOp] = DNA_OPS,
        resolution: int = 224,
        num_classes: int = 1000,
        width_mult: float = 1.0,
        stem_size: int = 32,
        stem_out: int = 16,
        num_features: int = 1280,
        se_ratio: float = 0.25,
    ) -> None:
        """A space of timm EfficientNet-style networks (many parameters because each is one dimension of the space's
        definition, named as timm's EfficientNet builder names it)."""
        if not stages:
            raise ValueError("an MBConv space needs at least one stage")
        for index, spec in enumerate(stages):
            if not spec.widths or not spec.depths or min(spec.depths) < 1 or spec.stride not in (1, 2):
                raise ValueError(f"stage {index}: needs widths, depths >= 1 and stride 1 or 2, got {spec}")
        if not ops:
            raise ValueError("an MBConv space needs at least one op")
        if resolution < 8 or num_classes < 1 or width_mult <= 0:
            raise ValueError("resolution must be >= 8, num_classes >= 1 and width_mult > 0")
        self.name = name
        self.stages = tuple(stages)
        self.ops = tuple(ops)
        self.resolution = resolution
        self.num_classes = num_classes
        self.width_mult = width_mult
        self.stem_size = stem_size
        self.stem_out = stem_out
        self.num_features = num_features
        self.se_ratio = se_ratio
        self._round = partial(round_channels, multiplier=width_mult, divisor=8)

    # -- architectures -------------------------------------------------------------------------------------------
    @property
    def num_blocks(self) -> int:
        return len(self.stages)

    def parse(self, text: str) -> MBConvArch:
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"an {self.name} architecture string looks like {self._example()!r}, got {text!r}")
        groups = text.strip().split("|")
        if len(groups) != len(self.stages):
            raise ValueError(
                f"{self.name} has {len(self.stages)} searchable stages separated by '|', the string has "
                f"{len(groups)}; example: {self._example()!r}"
            )
        return MBConvArch(tuple(self._parse_stage(i, group) for i, group in enumerate(groups)))

    def _parse_stage(self, index: int, text: str) -> MBConvStage:
        spec = self.stages[index]
        width_text, sep, ops_text = text.partition(":")
        if not sep or not width_text.strip().isdigit():
            raise ValueError(f"stage {index}: expected 'WIDTH:op,op,...', got {text!r}")
        width = int(width_text)
        if width not in spec.widths:
            raise choice_error(f"stage {index} width", width, spec.widths)
        op_texts = ops_text.split(",")
        if len(op_texts) not in spec.depths:
            raise choice_error(f"stage {index} depth", len(op_texts), spec.depths)
        ops = []
        for layer, op_text in enumerate(op_texts):
            op = _parse_op(op_text)
            if op not in self.ops:
                raise choice_error(f"stage {index} layer {layer} op", op_text, self.ops)
            ops.append(op)
        return MBConvStage(width, tuple(ops))

    def _example(self) -> str:
        return str(MBConvArch(tuple(MBConvStage(s.widths[0], (self.ops[0],) * s.depths[0]) for s in self.stages)))

    def validate(self, arch: MBConvArch) -> MBConvArch:
        """Check that ``arch`` belongs to this space (round-trips through the string form)."""
        if not isinstance(arch, MBConvArch):
            raise ValueError(f"{self.name} takes MBConvArch values, got {type(arch).__name__}")
        return self.parse(str(arch))

    def block_candidates(self, block: int) -> list[MBConvStage]:
        spec = self.stages[block]
        return [
            MBConvStage(width, ops)
            for width in spec.widths
            for depth in spec.depths
            for ops in itertools.product(self.ops, repeat=depth)
        ]

    def sample(self, rng: random.Random) -> MBConvArch:
        stages = []
        for spec in self.stages:
            width = rng.choice(spec.widths)
            depth = rng.choice(spec.depths)
            stages.append(MBConvStage(width, tuple(rng.choice(self.ops) for _ in range(depth))))
        return MBConvArch(tuple(stages))

    def enumerate(self) -> Iterator[MBConvArch]:
        per_block = [self.block_candidates(i) for i in range(self.num_blocks)]
        for stages in itertools.product(*per_block):
            yield MBConvArch(tuple(stages))

    def count(self) -> int:
        n_ops = len(self.ops)
        return math.prod(len(s.widths) * sum(n_ops**d for d in s.depths) for s in self.stages)

    def mutate(self, arch: MBConvArch, rng: random.Random) -> MBConvArch:
        decisions = []
        for index, (spec, stage) in enumerate(zip(self.stages, arch.stages)):
            if len(spec.widths) > 1:
                decisions.append((index, "width", None))
            if len(spec.depths) > 1:
                decisions.append((index, "depth", None))
            if len(self.ops) > 1:
                decisions.extend((index, "op", layer) for layer in range(stage.depth))
        if not decisions:
            raise ValueError(f"{self.name} holds a single architecture; there is nothing to mutate")
        index, what, layer = rng.choice(decisions)
        spec, stage = self.stages[index], arch.stages[index]
        if what == "width":
            stage = MBConvStage(rng.choice([w for w in spec.widths if w != stage.width]), stage.ops)
        elif what == "depth":
            depth = rng.choice([d for d in spec.depths if d != stage.depth])
            extra = tuple(rng.choice(self.ops) for _ in range(max(0, depth - stage.depth)))
            stage = MBConvStage(stage.width, (stage.ops + extra)[:depth])
        else:
            op = rng.choice([o for o in self.ops if o != stage.ops[layer]])
            stage = MBConvStage(stage.width, stage.ops[:layer] + (op,) + stage.ops[layer + 1 :])
        stages = list(arch.stages)
        stages[index] = stage
        return MBConvArch(tuple(stages))

    # -- timm arch-def -------------------------------------------------------------------------------------------
    def _stem_block(self) -> str:
        return f"ds_r1_k3_s1_e1_c{self.stem_out}_se{self.se_ratio:g}"

    def searchable_layers(self, model: nn.Module) -> list[nn.Module]:
        """The layers after the stem's depthwise block (timm EfficientNet: ``blocks[1:]``)."""
        return [layer for stage in list(model.blocks)[1:] for layer in stage]

    def cut_into_blocks(
        self, model: nn.Module, description: dict[str, Any],
    ) -> tuple[nn.Module, list[nn.Module], nn.Module, dict[str, Any]]:
        """A timm EfficientNet: stem = conv, BN and ``blocks[0]``; one stage per block = ``blocks[1:]``; head."""
        name = description.get("name")
        if not isinstance(model, EfficientNet):
            raise ValueError(f"teacher {name} ({type(model).__name__}) is neither a timm EfficientNet nor a "
                             f"VisionTransformer; the {self.name} space cuts timm EfficientNets at their stages")
        stages = list(model.blocks)[1:]
        if len(stages) != self.num_blocks:
            raise ValueError(f"teacher {name} has {len(stages)} stages after its stem, the space has "
                             f"{self.num_blocks} blocks; choose a teacher of the same family (EfficientNet-B0..B7)")
        stem = nn.Sequential(model.conv_stem, model.bn1, model.blocks[0])
        head = nn.Sequential(model.conv_head, model.bn2, model.global_pool, model.classifier)
        return stem, stages, head, {}

    def to_timm_arch_def(self, arch: MBConvArch) -> list[list[str]]:
        """timm's arch-def strings, consecutive equal layers folded into repeats (as timm writes B0)."""
        arch_def = [[self._stem_block()]]
        for spec, stage in zip(self.stages, arch.stages):
            strings, start = [], 0
            for op, group in itertools.groupby(stage.ops):
                repeats = len(list(group))
                stride = spec.stride if start == 0 else 1
                strings.append(
                    f"ir_r{repeats}_k{op.kernel_text}_s{stride}_e{op.expansion}_c{stage.width}_se{self.se_ratio:g}"
                )
                start += repeats
            arch_def.append(strings)
        return arch_def

    def from_timm_arch_def(self, arch_def: Sequence[Sequence[str]]) -> MBConvArch:
        """Decode timm arch-def strings with timm's own decoder and check each layer belongs to this space."""
        if len(arch_def) != len(self.stages) + 1:
            raise ValueError(
                f"{self.name} arch-defs have {len(self.stages) + 1} stages (the fixed depthwise-separable stage, "
                f"then {len(self.stages)} searchable ones); got {len(arch_def)}"
            )
        try:
            decoded = decode_arch_def([list(stage) for stage in arch_def])
        except (AssertionError, KeyError, ValueError, IndexError) as error:
            raise ValueError(f"timm could not decode the arch-def {arch_def!r}: {error!r}") from error
        stem = decoded[0]
        if len(stem) != 1 or stem[0]["block_type"] != "ds" or stem[0]["out_chs"] != self.stem_out:
            raise ValueError(f"stage 0 must be {self._stem_block()!r}, got {list(arch_def[0])!r}")
        stages = []
        for index, (spec, layers) in enumerate(zip(self.stages, decoded[1:])):
            stages.append(self._stage_from_timm(index, spec, layers))
        return MBConvArch(tuple(stages))

    def _stage_from_timm(self, index: int, spec: StageSpec, layers: list[dict[str, Any]]) -> MBConvStage:
        where = f"arch-def stage {index + 1}"
        widths = {layer["out_chs"] for layer in layers}
        if len(widths) != 1:
            raise ValueError(f"{where}: all layers of a stage share one width, got {sorted(widths)}")
        width = widths.pop()
        if width not in spec.widths:
            raise choice_error(f"{where} width", width, spec.widths)
        if len(layers) not in spec.depths:
            raise choice_error(f"{where} depth", len(layers), spec.depths)
        if layers[0]["stride"] != spec.stride:
            raise choice_error(f"{where} stride", layers[0]["stride"], (spec.stride,))
        ops = []
        for layer_index, layer in enumerate(layers):
            label = f"{where} layer {layer_index}"
            if layer["block_type"] != "ir" or layer.get("act_layer") is not None or layer.get("noskip"):
                raise ValueError(f"{label}: only plain 'ir' blocks with the space's activation are allowed")
            if abs(layer.get("se_ratio", 0.0) - self.se_ratio) > 1e-9:
                raise choice_error(f"{label} se ratio", layer.get("se_ratio"), (self.se_ratio,))
            expansion, kernel = layer["exp_ratio"], layer["dw_kernel_size"]
            kernels = list(kernel) if isinstance(kernel, (list, tuple)) else [kernel]
            op = MBConvOp.of(int(expansion), kernels) if float(expansion).is_integer() else None
            if op not in self.ops:
                raise choice_error(f"{label} op", f"e{expansion:g}k{'.'.join(str(k) for k in kernels)}", self.ops)
            ops.append(op)
        return MBConvStage(width, tuple(ops))

    # -- models --------------------------------------------------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int, ...]:
        return (3, self.resolution, self.resolution)

    def _efficientnet(self, arch_def: list[list[str]], drop_path_rate: float = 0.0) -> EfficientNet:
        """timm's EfficientNet as ``timm.models.efficientnet._gen_efficientnet`` configures it."""
        return EfficientNet(
            block_args=decode_arch_def(arch_def),
            num_classes=self.num_classes,
            num_features=self._round(self.num_features),
            stem_size=self.stem_size,
            round_chs_fn=self._round,
            act_layer=get_act_layer("swish"),
            norm_layer=nn.BatchNorm2d,
            drop_path_rate=drop_path_rate,
        )

    def build(self, arch: MBConvArch, drop_path_rate: float = 0.0) -> EfficientNet:
        return self._efficientnet(self.to_timm_arch_def(self.validate(arch)), drop_path_rate).eval()

    def _stem_unit(self) -> LatencyUnit:
        return LatencyUnit.of("mbconv_stem", self.input_shape, stem=self._round(self.stem_size),
                              cout=self._round(self.stem_out), se=self.se_ratio, act="swish")

    def _head_unit(self, cin: int, res: int) -> LatencyUnit:
        return LatencyUnit.of("mbconv_head", (cin, res, res), features=self._round(self.num_features),
                              classes=self.num_classes, act="swish")

    def _stage_input_res(self, index: int) -> int:
        res = math.ceil(self.resolution / 2)
        for spec in self.stages[:index]:
            res = math.ceil(res / spec.stride)
        return res

    def _stage_units(self, index: int, stage: MBConvStage, cin: int, res: int) -> list[LatencyUnit]:
        """The units of one stage given its input channels and resolution (the one place layers are walked)."""
        spec, cout, units = self.stages[index], self._round(stage.width), []
        for layer, op in enumerate(stage.ops):
            stride = spec.stride if layer == 0 else 1
            kernel: int | str = op.kernel_text if op.mixed else op.kernel  # plain ops keep their unit keys
            units.append(LatencyUnit.of("mbconv_ir", (cin, res, res), cout=cout, e=op.expansion, k=kernel,
                                        s=stride, se=self.se_ratio, act="swish"))
            res, cin = math.ceil(res / stride), cout
        return units

    def _layers(self, arch: MBConvArch) -> Iterator[tuple[int, int, LatencyUnit]]:
        """The walk over an architecture: (stage index or -1 for stem/head, layer index, unit)."""
        yield -1, 0, self._stem_unit()
        cin, res = self._round(self.stem_out), math.ceil(self.resolution / 2)
        for index, stage in enumerate(arch.stages):
            for layer, unit in enumerate(self._stage_units(index, stage, cin, res)):
                yield index, layer, unit
            cin, res = self._round(stage.width), math.ceil(res / self.stages[index].stride)
        yield -1, 1, self._head_unit(cin, res)

    # -- block interface (what the combiner needs) ---------------------------------------------------------------
    def initial_state(self) -> int:
        """What the first block receives: the stem's base output width."""
        return self.stem_out

    def block_output_state(self, block: int, candidate: MBConvStage) -> int:
        """What the next block receives from ``candidate``: its base width."""
        return candidate.width

    def block_units(self, block: int, candidate: MBConvStage, state: int) -> list[LatencyUnit]:
        """The units of ``candidate`` in block ``block`` when the previous block outputs ``state``."""
        return self._stage_units(block, candidate, self._round(state), self._stage_input_res(block))

    def function_key(self, block: int, candidate: MBConvStage) -> tuple[Any, ...]:
        """The candidate with every depthwise kernel cut to what its input map can reach: on an ``r`` x ``r`` map
        (zero padding ``k // 2``, stride 1 or 2) a kernel wider than ``2r - 1`` only adds taps that always read
        padding, so ``e6k7`` on a 2x2 map computes what ``e6k3`` computes, and every kernel is a per-channel scale on
        1x1. DNA's space at 224 px has no such twins (its smallest map is 7x7); at 32 px most late candidates do."""
        first = self._stage_input_res(block)  # the first layer's input; it strides, the others see its output
        reach = (2 * first - 1, 2 * math.ceil(first / self.stages[block].stride) - 1)
        return (candidate.width, tuple((op.expansion, *(min(k, reach[layer > 0]) for k in op.kernels))
                                       if op.mixed else (op.expansion, min(op.kernel, reach[layer > 0]))
                                       for layer, op in enumerate(candidate.ops)))

    def twin_unit(self, unit: LatencyUnit) -> LatencyUnit:
        """For an inverted-residual layer, the same layer with the smallest offered kernel that reaches as far on its
        input map (``e6k7`` on 2x2 -> ``e6k3``); other units, mixed-kernel layers included, are their own."""
        if unit.kind != "mbconv_ir" or not isinstance(unit.param("k"), int):
            return unit
        reach = 2 * unit.input_shape[-1] - 1
        kernel = int(unit.param("k"))
        smallest = min(op.kernel for op in self.ops if not op.mixed and min(op.kernel, reach) == min(kernel, reach))
        if smallest == kernel:
            return unit
        return LatencyUnit.of(unit.kind, unit.input_shape, **(dict(unit.params) | {"k": smallest}))

    def stem_units(self) -> list[LatencyUnit]:
        """Units before the first block."""
        return [self._stem_unit()]

    def head_units(self, state: int) -> list[LatencyUnit]:
        """Units after the last block, given its output state."""
        last = len(self.stages) - 1
        return [self._head_unit(self._round(state), math.ceil(self._stage_input_res(last) / self.stages[last].stride))]

    def blocks_of(self, arch: MBConvArch) -> tuple[MBConvStage, ...]:
        """The candidate chosen in each block."""
        return arch.stages

    def assemble(self, candidates: Sequence[MBConvStage]) -> MBConvArch:
        """The architecture made of one candidate per block."""
        return self.validate(MBConvArch(tuple(candidates)))

    def units(self, arch: MBConvArch) -> list[LatencyUnit]:
        return [unit for _, _, unit in self._layers(self.validate(arch))]

    def all_units(self) -> list[LatencyUnit]:
        """Every unit, by walking each stage's widest set of choices (first layer: every input width)."""
        found: set[LatencyUnit] = set()
        previous_widths: tuple[int, ...] = (self.stem_out,)
        for index, spec in enumerate(self.stages):
            deepest = max(spec.depths)
            for width_in, width, op, later in itertools.product(
                previous_widths, spec.widths, self.ops, (self.ops[0], *self.ops)
            ):
                stages = [MBConvStage(s.widths[0], (self.ops[0],) * s.depths[0]) for s in self.stages]
                if index > 0:
                    prev = self.stages[index - 1]
                    stages[index - 1] = MBConvStage(width_in, (self.ops[0],) * prev.depths[0])
                ops = (op,) + (later,) * (deepest - 1)
                stages[index] = MBConvStage(width, ops)
                found.update(self._units_of_stage(MBConvArch(tuple(stages)), index))
            previous_widths = spec.widths
        first = MBConvArch(tuple(MBConvStage(s.widths[0], (self.ops[0],) * s.depths[0]) for s in self.stages))
        found.update(u for u in self.units(first) if u.kind == "mbconv_stem")
        for width in self.stages[-1].widths:
            last = MBConvArch(first.stages[:-1] + (MBConvStage(width, first.stages[-1].ops),))
            found.update(u for u in self.units(last) if u.kind == "mbconv_head")
        return sorted(found, key=lambda u: u.key)

    def _units_of_stage(self, arch: MBConvArch, stage_index: int) -> list[LatencyUnit]:
        return [unit for index, _, unit in self._layers(arch) if index == stage_index]

    def build_unit(self, unit: LatencyUnit) -> nn.Module:
        if unit.kind == "mbconv_ir":
            builder = EfficientNetBuilder(
                round_chs_fn=round_channels, act_layer=get_act_layer("swish"), norm_layer=nn.BatchNorm2d,
                se_layer=SqueezeExcite,
            )
            arch_def = [[
                f"ir_r1_k{unit.param('k')}_s{unit.param('s')}_e{unit.param('e')}_c{unit.param('cout')}"
                f"_se{unit.param('se'):g}"
            ]]
            layer = builder(unit.input_shape[0], decode_arch_def(arch_def))[0][0]
            efficientnet_init_weights(layer)  # as EfficientNet initialises its blocks (the builder alone does not)
            return layer.eval()
        if unit.kind == "mbconv_stem":
            net = self._efficientnet([[self._stem_block()]])
            return nn.Sequential(net.conv_stem, net.bn1, net.blocks[0]).eval()
        if unit.kind == "mbconv_head":
            width = unit.input_shape[0]
            net = EfficientNet(
                block_args=decode_arch_def([[f"ir_r1_k3_s1_e1_c{width}"]]),
                num_classes=self.num_classes, num_features=int(unit.param("features")), stem_size=8,
                round_chs_fn=round_channels, act_layer=get_act_layer("swish"), norm_layer=nn.BatchNorm2d,
            )
            return nn.Sequential(net.conv_head, net.bn2, net.global_pool, net.classifier).eval()
        raise ValueError(f"{self.name} cannot build latency unit {unit.key}: unknown kind {unit.kind!r}")

    def describe_blocks(self, arch: MBConvArch) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = []
        for index, layer, unit in self._layers(self.validate(arch)):
            if index < 0:
                continue
            if layer == 0:
                stage = arch.stages[index]
                blocks.append({
                    "block": index, "teacher_stage": index + 1, "choice": str(stage),
                    "width": self._round(stage.width), "depth": stage.depth, "input_shape": list(unit.input_shape),
                })
            res = math.ceil(unit.input_shape[1] / int(unit.param("s")))
            blocks[-1]["output_shape"] = [int(unit.param("cout")), res, res]
        return blocks

    def definition(self) -> dict[str, Any]:
        return {
            "family": "mbconv", "name": self.name, "resolution": self.resolution, "num_classes": self.num_classes,
            "width_mult": self.width_mult, "stem_size": self.stem_size, "stem_out": self.stem_out,
            "num_features": self.num_features, "se_ratio": self.se_ratio, "act": "swish",
            "ops": [str(op) for op in self.ops],
            "stages": [{"widths": list(s.widths), "stride": s.stride, "depths": list(s.depths)} for s in self.stages],
        }
