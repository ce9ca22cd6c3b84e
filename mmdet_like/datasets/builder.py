"""Datasets from config and their data loaders."""

import random
from functools import partial

import numpy as np
import torch
import torch.distributed as torch_dist
from torch.utils.data import DataLoader, DistributedSampler

from mmdet_like.datasets.collate import STACK_KEYS, collate
from mmdet_like.datasets.samplers import DistributedGroupSampler, GroupSampler
from mmdet_like.registry import DATASETS, build_from_cfg


def _dist_info():
    if torch_dist.is_available() and torch_dist.is_initialized():
        return torch_dist.get_rank(), torch_dist.get_world_size()
    return 0, 1


def build_dataset(cfg, default_args=None):
    """``dict(type="CocoDataset", ...)`` -> a dataset from the ``DATASETS`` registry."""
    return build_from_cfg(cfg, DATASETS, default_args)


def worker_init_fn(worker_id, rank, num_workers):
    """Seed python, numpy and torch in a data-loader worker.

    The seed derives from the one torch gives the worker (drawn from the main process's
    seeded RNG, so it changes every epoch and is reproducible), offset by rank so that
    ranks draw different augmentations.
    """
    seed = (torch.initial_seed() + rank * num_workers) % 2**32
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 (the global RNG is what is seeded)
    torch.manual_seed(seed)


def build_dataloader(
    dataset,
    imgs_per_gpu,
    workers_per_gpu,
    dist=False,
    shuffle=True,
    seed=None,
    collate_fn=None,
    **kwargs,
):
    """A DataLoader of batches of ``imgs_per_gpu`` images for this process.

    Training (``shuffle=True``): ``GroupSampler`` (one process) or
    ``DistributedGroupSampler`` (each rank its share). Testing (``shuffle=False``): in
    order, or split across ranks by ``DistributedSampler`` (rank r gets r, r + world, ...).
    ``seed`` drives the shuffle (same on all ranks). Batches are made by :func:`collate`
    with the dataset's ``STACK_KEYS`` (default: the images only) unless ``collate_fn`` is
    given.
    """
    if collate_fn is None:
        collate_fn = partial(collate, stack_keys=getattr(dataset, "STACK_KEYS", STACK_KEYS))
    rank, world_size = _dist_info()
    if shuffle:
        if dist:
            sampler = DistributedGroupSampler(dataset, imgs_per_gpu, world_size, rank, seed)
        else:
            sampler = GroupSampler(dataset, imgs_per_gpu, seed)
    else:
        sampler = DistributedSampler(dataset, world_size, rank, shuffle=False) if dist else None
    return DataLoader(
        dataset,
        batch_size=imgs_per_gpu,
        sampler=sampler,
        num_workers=workers_per_gpu,
        collate_fn=collate_fn,
        worker_init_fn=partial(worker_init_fn, rank=rank, num_workers=workers_per_gpu),
        **kwargs,
    )
