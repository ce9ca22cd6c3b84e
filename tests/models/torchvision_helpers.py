"""torchvision detection models as our torchvision-equivalence tests build them."""

import torch
from torchvision.ops import FrozenBatchNorm2d


def freeze_batch_norms(body, seed=1):
    """Replace every ``BatchNorm2d`` of ``body`` (a torchvision ResNet) in place by a
    ``FrozenBatchNorm2d`` with random statistics near unit scale, as torchvision's pretrained
    detection models run them (its ``weights=None`` builds have ``BatchNorm2d``)."""
    generator = torch.Generator().manual_seed(seed)
    for name, module in list(body.named_modules()):
        if not isinstance(module, torch.nn.BatchNorm2d):
            continue
        channels = module.num_features
        frozen = FrozenBatchNorm2d(channels, eps=module.eps)
        var = torch.rand(channels, generator=generator) + 0.5
        frozen.running_var.copy_(var)
        frozen.running_mean.copy_(torch.randn(channels, generator=generator) * 0.1)
        frozen.weight.copy_(var.sqrt() * (0.9 + 0.2 * torch.rand(channels, generator=generator)))
        frozen.bias.copy_(torch.randn(channels, generator=generator) * 0.1)
        parent_name, _, child = name.rpartition(".")
        setattr(body.get_submodule(parent_name) if parent_name else body, child, frozen)
    return body
