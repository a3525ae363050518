"""What this machine is, recorded with every latency number.

A CPU's marketing name can hide what decides its speed: a cloud VM reports "AMD EPYC" for a Zen 3 with AVX2 and for a
Zen 4 with AVX-512 VNNI, whose int8 kernels differ several-fold. So a device record also carries the processor's
identity (vendor, family, model, stepping; an ARM core's implementer and part) and the SIMD features that select
kernels, and ``same_processor`` compares two records by them.
"""

from __future__ import annotations

import os
import platform
import socket
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

# the instruction-set features runtimes choose kernels by (x86 /proc/cpuinfo "flags", ARM "Features")
KERNEL_FEATURES = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                   "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16",
                   "asimd", "asimdhp", "asimddp", "i8mm", "bf16", "sve", "sve2", "sme")
IDENTITY_FIELDS = (("vendor_id", "vendor"), ("cpu family", "family"), ("model", "model"), ("stepping", "stepping"),
                   ("CPU implementer", "implementer"), ("CPU part", "part"), ("CPU variant", "variant"))


def cpuinfo_fields(text: str) -> dict[str, str]:
    """Each field's first value in a /proc/cpuinfo text (keys as written, values stripped): the first processor's,
    and the fields some ARM kernels write once after all processors (``Hardware``)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, colon, value = line.partition(":")
        if colon:
            fields.setdefault(key.strip(), value.strip())
    return fields


def processor_record(text: str) -> dict[str, Any]:
    """CPU model name, identity and kernel features read from a /proc/cpuinfo text (empty identity and features
    where the text has none). The first processor's fields, but every distinct ARM core part (a phone's big and
    little cores differ)."""
    fields = cpuinfo_fields(text)
    parts = sorted({line.partition(":")[2].strip() for line in text.splitlines() if line.startswith("CPU part")})
    if len(parts) > 1:
        fields["CPU part"] = ",".join(parts)
    name = next((fields[k] for k in ("model name", "Hardware", "Processor") if fields.get(k)), "")
    identity = " ".join(f"{label} {fields[key]}" for key, label in IDENTITY_FIELDS if fields.get(key))
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    return {"cpu_model": name, "cpu_id": identity, "cpu_features": [f for f in KERNEL_FEATURES if f in flags]}


@cache
def _this_processor() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo")
    record = processor_record(cpuinfo.read_text(errors="replace")) if cpuinfo.exists() else {
        "cpu_model": "", "cpu_id": "", "cpu_features": []}
    record["cpu_model"] = record["cpu_model"] or platform.processor() or platform.machine()
    return record


def device_metadata(device_name: str | None = None) -> dict[str, object]:
    """Device name (default: the host name), CPU model, identity and kernel features, logical cores, OS,
    architecture, Python version."""
    return {
        "device_name": device_name or socket.gethostname(),
        **{key: list(value) if isinstance(value, list) else value for key, value in _this_processor().items()},
        "logical_cores": os.cpu_count(),
        "os": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
    }


def same_processor(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool | None:
    """Whether two device records name the same kind of processor (model name, identity and kernel features); None
    where either record lacks the identity (made elsewhere, e.g. by a phone, or before it was recorded)."""
    if not a.get("cpu_id") or not b.get("cpu_id"):
        return None
    return all(a.get(k) == b.get(k) for k in ("cpu_model", "cpu_id")) and \
        sorted(a.get("cpu_features") or []) == sorted(b.get("cpu_features") or [])


def describe_processor(record: Mapping[str, Any]) -> str:
    """``record``'s CPU in one phrase: model name, then identity and kernel features where recorded."""
    details = "; ".join(p for p in (str(record.get("cpu_id") or ""), " ".join(record.get("cpu_features") or [])) if p)
    return f"{record.get('cpu_model', '?')}" + (f" ({details})" if details else "")
