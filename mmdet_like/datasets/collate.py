"""Batching of dataset samples (dicts) into the keyword arguments of a model."""

import numbers

import torch


def collate(samples):
    """A list of sample dicts -> one dict of batched values.

    Per key: tensors of one shape are stacked to ``(B, ...)``; tensors of different
    shapes (e.g. images of different sizes, per-image boxes ``(K_i, 4)``) stay a list;
    numbers become a tensor ``(B,)``; anything else (e.g. ``img_meta`` dicts) stays a list.
    """
    if not samples:
        raise ValueError("collate: empty batch")
    if not all(isinstance(s, dict) for s in samples):
        raise TypeError(f"collate: samples must be dicts, got {type(samples[0]).__name__}")
    keys = samples[0].keys()
    batch = {}
    for key in keys:
        values = [s[key] for s in samples]
        if all(isinstance(v, torch.Tensor) for v in values):
            same = all(v.shape == values[0].shape for v in values)
            batch[key] = torch.stack(values) if same else values
        elif all(isinstance(v, numbers.Number) and not isinstance(v, bool) for v in values):
            batch[key] = torch.tensor(values)
        else:
            batch[key] = values
    return batch
