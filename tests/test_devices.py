"""Training devices: ``--device`` resolves or says what is wrong; on a CUDA machine every training stage runs on the GPU
and its checkpoints resume on the CPU (those tests skip where PyTorch sees no GPU)."""

from pathlib import Path

import pytest
import torch

from hwnas.cli import main
from hwnas.devices import load_checkpoint, resolve_device

HAS_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU (PyTorch sees none here)")


def test_cpu_and_auto_resolve():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if HAS_CUDA else "cpu")


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "tpu:0", ""])
def test_unknown_device_names_are_refused(name):
    with pytest.raises(ValueError, match="'auto', 'cpu', 'cuda' or 'cuda:N'"):
        resolve_device(name)


@pytest.mark.skipif(HAS_CUDA, reason="checks the error on a machine without a GPU")
def test_cuda_without_a_gpu_says_what_to_do(tiny_run, capsys):
    with pytest.raises(RuntimeError, match="no CUDA GPU.*--device cpu"):
        resolve_device("cuda")
    before = sorted(p.relative_to(tiny_run) for p in tiny_run.rglob("*"))
    ratings = (tiny_run / "ratings.json").read_bytes()
    assert main(["rate", "--run", str(tiny_run), "--device", "cuda"]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err
    assert sorted(p.relative_to(tiny_run) for p in tiny_run.rglob("*")) == before
    assert (tiny_run / "ratings.json").read_bytes() == ratings


@needs_cuda
def test_missing_gpu_index_is_refused():
    with pytest.raises(RuntimeError, match="CUDA GPU"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


@needs_cuda
def test_training_on_cuda_resumes_on_cpu(tmp_path: Path):
    from hwnas.data import load_data
    from hwnas.training import TrainConfig, train_classifier
    from search_spaces import get_space

    space = get_space("mbconv-tiny")
    bundle = load_data("digits", space.resolution)
    model = space.build(space.parse("24:e3k3|40:e3k3|80:e3k3|96:e3k3|160:e3k3|320:e3k3"))
    checkpoint = tmp_path / "train.pt"
    first = train_classifier(model, bundle, TrainConfig(epochs=2), checkpoint, show_progress=False, device="cuda")
    assert next(model.parameters()).device.type == "cpu"
    assert first["test_accuracy"] > 0.3
    saved = load_checkpoint(checkpoint)
    assert saved["epoch"] == 2 and all(t.device.type == "cpu" for t in saved["model"].values())
    # the GPU's checkpoint (model, optimizer, schedule) loads on the CPU: the finished run is found, not retrained
    fresh = space.build(space.parse("24:e3k3|40:e3k3|80:e3k3|96:e3k3|160:e3k3|320:e3k3"))
    again = train_classifier(fresh, bundle, TrainConfig(epochs=2), checkpoint, show_progress=False, device="cpu")
    assert again["history"] == first["history"]
    assert abs(again["test_accuracy"] - first["test_accuracy"]) < 0.01


@needs_cuda
def test_distill_rate_and_spos_on_cuda(tmp_path: Path):
    from spos import SPOSConfig, SPOSSupernet, spos_accuracy, train_spos

    from hwnas.data import load_data
    from hwnas.run import create_or_open_run
    from hwnas.supernet.distill import DistillConfig, distill
    from hwnas.supernet.ratings import load_ratings, rate
    from hwnas.supernet.teacher import train_teacher
    from hwnas.training import TrainConfig
    from search_spaces import get_space

    run = create_or_open_run(tmp_path / "gpu", "mbconv-tiny", "digits")
    teacher = train_teacher(run, config=TrainConfig(epochs=2), show_progress=False, device="cuda")
    assert teacher["test_accuracy"] > 0.3
    distill(run, config=DistillConfig(epochs=1), show_progress=False, device="cuda")
    rate(run, show_progress=False, device="cuda")
    ratings = load_ratings(run)
    assert len(ratings) == run.space.num_blocks and all(v > 0 for block in ratings for v in block.values())

    space = get_space("mbconv-tiny")
    bundle = load_data("digits", space.resolution)
    supernet = SPOSSupernet(space)
    history = train_spos(supernet, bundle, SPOSConfig(epochs=2, warmup_epochs=1), tmp_path / "spos.pt",
                         show_progress=False, device="cuda")
    assert len(history) == 2 and next(supernet.parameters()).device.type == "cpu"
    assert 0 <= spos_accuracy(supernet.cuda(), supernet.largest_arch(), bundle) <= 1
