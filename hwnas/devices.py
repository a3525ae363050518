"""Where training runs: ``cpu``, ``cuda[:N]`` or ``auto`` (a CUDA GPU when PyTorch sees one, else the CPU).

Training (teacher, block supernets, rating, SPOS, children) runs on the device chosen here; latency is measured by
the profilers on their own targets, whatever device trained the networks. Checkpoints are always read onto the CPU
first (``load_checkpoint``), so a run trained on a GPU resumes, rates, searches and exports on a CPU-only machine.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

DEVICE_HELP = ("where to train: 'auto' (a CUDA GPU when PyTorch sees one, else the CPU), 'cpu', 'cuda' or 'cuda:N' "
               "(default: auto)")


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """The torch device ``name`` asks for; a clear error when it asks for a GPU PyTorch cannot use.

    Under ``torchrun`` (``LOCAL_RANK`` set), ``auto`` and a bare ``cuda`` mean this process's own GPU.
    """
    if isinstance(name, torch.device):
        name = str(name)
    text = name.strip().lower()
    local_rank = os.environ.get("LOCAL_RANK")
    if text == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        text = "cuda"
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" and local_rank is not None:
        text = f"cuda:{int(local_rank)}"
    if text == "cuda" or (text.startswith("cuda:") and text[5:].isdigit()):
        if not torch.cuda.is_available():
            raise RuntimeError(f"--device {name}: PyTorch sees no CUDA GPU (torch {torch.__version__}, "
                               f"torch.cuda.is_available() is False); install a CUDA build of torch on a machine with "
                               "an NVIDIA GPU, or use --device cpu")
        index = int(text[5:]) if ":" in text else 0
        if index >= torch.cuda.device_count():
            raise RuntimeError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s) "
                               f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
        return torch.device("cuda", index)
    raise ValueError(f"--device {name!r}: write 'auto', 'cpu', 'cuda' or 'cuda:N'")


def load_checkpoint(path: Path) -> Any:
    """A torch checkpoint read onto the CPU, whatever device wrote it.

    Read with ``weights_only=True``: only tensors and plain containers and numbers are unpickled, so a crafted file
    cannot run code. A file that needs anything else (a pickled class, a function) is refused with a ``ValueError``
    that names the file; so is a file that is not a torch checkpoint at all (truncated, another format).
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"{path}: refused to load: it holds more than tensors and plain values ({first}); hwnas "
                         "only reads weights files it could have written itself (state dicts of tensors)") from None
    except (RuntimeError, EOFError, OSError) as error:
        if isinstance(error, (FileNotFoundError, IsADirectoryError, PermissionError)):
            raise
        raise ValueError(f"{path}: not a readable torch checkpoint ({type(error).__name__}: "
                         f"{str(error).strip().splitlines()[0] if str(error).strip() else 'empty'}); it may be truncated "
                         "by a kill or written by another program: remove it to start that step again") from None


def rank_world() -> tuple[int, int]:
    """(this process's rank, number of processes) under torchrun; (0, 1) outside it."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1
