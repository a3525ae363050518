"""MBConv spaces derived from a registered one by choosing its op set (what ``hwnas evolve`` makes).

A derived space is named ``BASE[op,op,...]`` (ops in their canonical order), e.g. ``mbconv-tiny[e3k3,e6k5,e6k9]``:
the name alone rebuilds it, so a run, a latency table or a search result that records it needs no other file.
``get_space`` also takes the path of a JSON file whose ``"space"`` is such a name (``hwnas evolve`` writes
``RUN/evolve/space.json``). Ops are written as the space writes them: ``e{expansion}k{kernel}``, odd kernels, or
MixNet's mixed kernels ``e6k3.5.7``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

from search_spaces.base import SearchSpace
from search_spaces.mbconv import MBConvOp, MBConvSpace, _parse_op

_NAME = re.compile(r"^(?P<base>[^\[\]]+)\[(?P<ops>[^\[\]]*)\]$")


def parse_ops(texts: Sequence[str]) -> list[MBConvOp]:
    """Op strings as ops (sorted, without repeats); ValueError names the first that is not one a space can build."""
    ops = []
    for text in texts:
        op = _parse_op(text)
        if op is None or op.expansion < 1 or any(k < 1 or k % 2 == 0 for k in op.kernels):
            raise ValueError(f"{text!r} is not an MBConv op: write e{{expansion}}k{{kernel}} with an expansion >= 1 and "
                             "odd kernels (e6k9), or mixed kernels in ascending order (e6k3.5.7)")
        ops.append(op)
    return sorted(set(ops))


def derived_name(base: str, ops: Sequence[MBConvOp]) -> str:
    """The name of ``base`` restricted (or extended) to ``ops``."""
    return f"{base}[{','.join(str(op) for op in sorted(set(ops)))}]"


def derive_space(base: SearchSpace, ops: Sequence[MBConvOp]) -> MBConvSpace:
    """``base`` with its op set replaced by ``ops`` (stages, resolution, classes and widths kept)."""
    if not isinstance(base, MBConvSpace):
        raise ValueError(f"space {base.name} has no op set to evolve; derived spaces are made from MBConv spaces")
    if not ops:
        raise ValueError(f"a space derived from {base.name} needs at least one op")
    root = base_name(base.name)
    return MBConvSpace(derived_name(root, ops), stages=base.stages, ops=sorted(set(ops)), resolution=base.resolution,
                       num_classes=base.num_classes, width_mult=base.width_mult, stem_size=base.stem_size,
                       stem_out=base.stem_out, num_features=base.num_features, se_ratio=base.se_ratio)


def base_name(name: str) -> str:
    """The registered space a (possibly derived) space name starts from."""
    match = _NAME.match(name)
    return match.group("base") if match else name


def resolve_derived(name: str) -> SearchSpace | None:
    """The space a derived name or a space file names, or None when ``name`` is neither; ValueError says what is
    wrong with one that tries to be."""
    from search_spaces.registry import get_space

    if name.endswith(".json"):
        path = Path(name)
        if not path.is_file():
            raise ValueError(f"no space file {path}")
        try:
            recorded = json.loads(path.read_text())["space"]
            if not isinstance(recorded, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"{path} is not a space file: it should be JSON with a \"space\" name such as "
                             "\"mbconv-tiny[e3k3,e6k5]\" (hwnas evolve writes RUN/evolve/space.json)") from None
        space = resolve_derived(recorded)
        return space if space is not None else get_space(recorded)
    match = _NAME.match(name)
    if not match:
        return None
    try:
        ops = parse_ops([t for t in match.group("ops").split(",") if t.strip()])
    except ValueError as error:
        raise ValueError(f"space {name!r}: {error}") from None
    return derive_space(get_space(match.group("base")), ops)
