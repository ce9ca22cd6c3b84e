"""Checkpoint I/O: weights_only, atomic writes, refusal, load report, URLs, RNG states."""

import argparse
import logging
import os
import random

import numpy as np
import pytest
import torch
from torch import nn

from mmdet_like.engine import CheckpointError, load_checkpoint, load_state_dict, save_checkpoint
from mmdet_like.engine.checkpoint import get_rng_states, set_rng_states


def test_save_is_weights_only_loadable_and_strips_ddp_prefix(tmp_path):
    model = nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    save_checkpoint(
        str(tmp_path / "a.pth"),
        model,
        optimizer,
        meta={"epoch": 1, "CLASSES": ["a"], "rng": get_rng_states()},
    )
    ckpt = torch.load(tmp_path / "a.pth", weights_only=True)
    assert set(ckpt) == {"meta", "state_dict", "optimizer"}
    assert isinstance(ckpt["meta"]["torch_version"], str)
    wrapped = {f"module.{k}": v for k, v in ckpt["state_dict"].items()}
    torch.save({"state_dict": wrapped}, tmp_path / "ddp.pth")
    other = nn.Linear(3, 2)
    load_checkpoint(other, str(tmp_path / "ddp.pth"), strict=True)
    assert torch.equal(other.weight, model.weight)


def test_non_plain_meta_is_refused_at_save(tmp_path):
    with pytest.raises(CheckpointError, match=r"meta'\]\['arr'\] is a numpy.ndarray"):
        save_checkpoint(str(tmp_path / "x.pth"), nn.Linear(1, 1), meta={"arr": np.zeros(2)})
    assert not os.listdir(tmp_path)


def test_checkpoint_needing_arbitrary_objects_is_refused(tmp_path):
    torch.save({"state_dict": {}, "meta": argparse.Namespace(a=1)}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="other than tensors and plain types"):
        load_checkpoint(nn.Linear(1, 1), str(tmp_path / "bad.pth"))
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(nn.Linear(1, 1), str(tmp_path / "missing.pth"))


def test_write_is_atomic_when_a_save_dies(tmp_path, monkeypatch):
    path = str(tmp_path / "latest.pth")
    model = nn.Linear(2, 2)
    save_checkpoint(path, model, meta={"epoch": 1})

    def dying_save(obj, f):
        f.write(b"partial garbage")
        raise KeyboardInterrupt  # killed half way

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, nn.Linear(2, 2), meta={"epoch": 2})
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["meta"]["epoch"] == 1
    assert os.listdir(tmp_path) == ["latest.pth"]


def test_load_report_table_and_strict(tmp_path, caplog):
    source = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    state = dict(source.state_dict())
    state["extra.weight"] = torch.zeros(1)
    target = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 5), nn.Linear(5, 1))
    logger = logging.getLogger("test_report")
    with caplog.at_level(logging.WARNING, logger="test_report"):
        report = load_state_dict(target, state, logger=logger)
    assert report["unexpected"] == ["extra.weight"]
    assert report["missing"] == ["2.weight", "2.bias"]
    assert report["shape_mismatch"] == [("1.weight", (2, 4), (5, 4)), ("1.bias", (2,), (5,))]
    assert torch.equal(target[0].weight, source[0].weight)  # matching keys loaded
    table = caplog.text
    assert "| key" in table and "shape mismatch (not loaded) | (2, 4)" in table
    assert "missing in checkpoint" in table and "unexpected (not in model)" in table
    with pytest.raises(CheckpointError, match="extra.weight"):
        load_state_dict(target, state, strict=True)


def test_torchvision_weights_from_the_hub_cache(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    reference = torchvision.models.resnet18()
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    os.makedirs(tmp_path / "hub" / "checkpoints")
    torch.save(reference.state_dict(), tmp_path / "hub" / "checkpoints" / os.path.basename(url))
    model = torchvision.models.resnet18()
    load_checkpoint(model, "torchvision://resnet18", strict=True)
    assert torch.equal(model.conv1.weight, reference.conv1.weight)
    with pytest.raises(CheckpointError, match="no weights 'NOPE'"):
        load_checkpoint(model, "torchvision://resnet18.NOPE")


def test_offline_download_failure_says_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(nn.Linear(1, 1), "http://127.0.0.1:9/weights/model-1234.pth")
    expected = os.path.join(str(tmp_path), "hub", "checkpoints", "model-1234.pth")
    assert "could not download" in str(info.value) and expected in str(info.value)


def test_rng_states_round_trip():
    states = get_rng_states()
    first = (random.random(), np.random.rand(), torch.rand(1).item())  # noqa: NPY002 (the global RNG is what is seeded)
    set_rng_states(states)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first  # noqa: NPY002 (the global RNG is what is seeded)
