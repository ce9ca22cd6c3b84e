"""Batching of dataset samples (dicts) into the keyword arguments of a model."""

import numbers

import torch

# What a detection batch stacks: the images. Boxes, labels, masks and metas are per image and
# stay lists of B entries in every batch, whatever their shapes.
STACK_KEYS = ("img",)


def collate(samples, stack_keys=STACK_KEYS):
    """A list of sample dicts -> one dict of batched values.

    Per key in ``stack_keys``: tensors of one shape are stacked to ``(B, ...)`` (images of
    different sizes stay a list: the detector pads them into one batch), numbers become a
    ``(B,)`` tensor. Every other key is a list of the B samples' values, always: per-image
    boxes ``(K_i, 4)`` and labels are a list in every batch, not a tensor when the counts
    happen to agree. A dataset whose model wants other keys stacked names them in its
    ``STACK_KEYS`` attribute (:func:`mmdet_like.datasets.build_dataloader` reads it).
    """
    if not samples:
        raise ValueError("collate: empty batch")
    if not all(isinstance(s, dict) for s in samples):
        raise TypeError(f"collate: samples must be dicts, got {type(samples[0]).__name__}")
    batch = {}
    for key in samples[0].keys():
        values = [s[key] for s in samples]
        if key not in stack_keys:
            batch[key] = values
        elif all(isinstance(v, torch.Tensor) for v in values):
            same = all(v.shape == values[0].shape for v in values)
            batch[key] = torch.stack(values) if same else values
        elif all(isinstance(v, numbers.Number) and not isinstance(v, bool) for v in values):
            batch[key] = torch.tensor(values)
        else:
            batch[key] = values
    return batch
