"""A learnable scalar factor (the per-level scale of FCOS, ATSS and GFL box branches)."""

import torch
from torch import nn


class Scale(nn.Module):
    """A learnable scalar factor: x -> x * scale."""

    def __init__(self, scale=1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(scale)))

    def forward(self, x):
        return x * self.scale
