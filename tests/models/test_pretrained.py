"""Loading torchvision weights into ResNet/ResNeXt, offline, through the torch hub cache."""

import os
import time

import pytest
import torch
import torch.hub
import torchvision

from mmdet_like.models.backbones import ResNet, ResNeXt
from mmdet_like.models.utils import (
    PretrainedWeightsError,
    load_pretrained,
    read_checkpoint_state_dict,
    torchvision_cache_path,
)


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty, private TORCH_HOME; downloading raises as it would with no network."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)

    def no_network(url, *args, **kwargs):
        raise OSError(f"<urlopen error [Errno -3] Temporary failure in name resolution> ({url})")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return tmp_path


def torchvision_trunk(model, x):
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    outs = []
    for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
        x = layer(x)
        outs.append(x)
    return outs


def test_cache_path_follows_torch_home(torch_home):
    path = torchvision_cache_path("resnet50")
    assert path == os.path.join(str(torch_home), "hub", "checkpoints", "resnet50-0676ba61.pth")
    assert torchvision_cache_path("resnet50.IMAGENET1K_V2").endswith("resnet50-11ad3fa6.pth")


def test_resnet18_loads_torchvision_weights_from_hub_cache(torch_home):
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None)
    for m in reference.modules():  # non-trivial batch-norm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
    path = torchvision_cache_path("resnet18")
    os.makedirs(os.path.dirname(path))
    torch.save(reference.state_dict(), path)

    # fold_norm=False: the norms run after the convolutions, as torchvision's do, so the
    # outputs agree to float rounding (folding is tested in test_conv_norm.py)
    model = ResNet(18, pretrained="torchvision://resnet18", fold_norm=False)
    model.init_weights()
    reference.eval()
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ours, theirs = model(x), torchvision_trunk(reference, x)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_missing_weights_fail_fast_with_the_path(torch_home):
    model = ResNet(18, pretrained="torchvision://resnet18")
    start = time.monotonic()
    with pytest.raises(PretrainedWeightsError) as info:
        model.init_weights()
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert torchvision_cache_path("resnet18") in message
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in message


def test_unknown_torchvision_names():
    with pytest.raises(PretrainedWeightsError, match="no model"):
        torchvision_cache_path("resnet51")
    with pytest.raises(PretrainedWeightsError, match="IMAGENET1K_V9"):
        torchvision_cache_path("resnet50.IMAGENET1K_V9")


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (lambda: ResNet(50), torchvision.models.resnet50),
        (lambda: ResNet(34), torchvision.models.resnet34),
        (lambda: ResNeXt(50, groups=32, base_width=4), torchvision.models.resnext50_32x4d),
    ],
)
def test_key_mapping_covers_every_parameter(ours, theirs):
    ours, theirs = ours(), theirs(weights=None)
    source = {k: v for k, v in theirs.state_dict().items() if not k.startswith("fc.")}
    result = ours.load_state_dict(source, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    for key, value in ours.state_dict().items():
        assert torch.equal(value, source[key]), key


def test_frozen_bn_model_loads_torchvision_weights(tmp_path):
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "caffe_style.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}}, path)
    model = ResNet(18, norm_cfg=dict(type="FrozenBN"))
    with_fc = read_checkpoint_state_dict(str(path))
    assert "fc.weight" in with_fc and "conv1.weight" in with_fc
    missing, unexpected = load_pretrained(model, str(path))
    assert missing == [] and unexpected == []
    torch.testing.assert_close(model.bn1.running_var, reference.bn1.running_var)
    torch.testing.assert_close(model.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)


def test_local_file_mismatch_is_reported(tmp_path):
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "r18.pth"
    torch.save(reference.state_dict(), path)
    with pytest.warns(UserWarning, match="layer1.0.conv3.weight"):
        missing, _ = load_pretrained(ResNet(50, num_stages=1, out_indices=(0,)), str(path))
    assert "layer1.0.conv3.weight" in missing
    with pytest.raises(PretrainedWeightsError, match="not found"):
        load_pretrained(ResNet(18), str(tmp_path / "absent.pth"))
