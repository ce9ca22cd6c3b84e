"""Datasets from config and their data loaders."""

import ctypes
import os
import random
import signal
import sys
from functools import partial

import numpy as np
import torch
import torch.distributed as torch_dist
from torch.utils.data import DataLoader, DistributedSampler

from mmdet_like.datasets.collate import STACK_KEYS, collate
from mmdet_like.datasets.samplers import SeededSamples, build_train_sampler
from mmdet_like.registry import DATASETS, BuildError, build_from_cfg


def _dist_info():
    if torch_dist.is_available() and torch_dist.is_initialized():
        return torch_dist.get_rank(), torch_dist.get_world_size()
    return 0, 1


def build_dataset(cfg, default_args=None, where=None):
    """``dict(type="CocoDataset", ...)`` -> a dataset from the ``DATASETS`` registry.

    ``where`` (e.g. ``"data.train"``) names the config key in the message of a
    :class:`BuildError` (an unknown type or argument, a pipeline step that cannot be built).
    """
    try:
        return build_from_cfg(cfg, DATASETS, default_args)
    except BuildError as exc:
        if where is None:
            raise
        raise BuildError(f"{where}: {exc}") from exc


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent_pid):
    """Have the kernel kill this process (SIGKILL) when its parent dies, on Linux; exit now
    if the parent is already gone. A data-loader worker whose training process was killed
    would otherwise live on, re-parented to PID 1, until it next polls its parent (or
    forever, blocked writing a batch nobody reads)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != parent_pid:  # the parent died before the prctl call
        os._exit(0)
    return True


def worker_init_fn(worker_id, rank, num_workers, parent_pid=None):
    """Seed python, numpy and torch in a data-loader worker, and tie its life to the
    process that started it (:func:`die_with_parent`); it ignores SIGINT and SIGTERM, which
    the training process handles (it stops the workers itself: see
    mmdet_like/engine/interrupts.py).

    The seed derives from the one torch gives the worker (drawn from the loader's generator,
    which the runner seeds from the run's seed and the epoch, so it changes every epoch and
    is reproducible, resumed runs included), offset by rank so that ranks draw different
    augmentations.
    """
    if parent_pid is not None:
        die_with_parent(parent_pid)
    for signum in (signal.SIGINT, signal.SIGTERM):  # the training process's to handle
        signal.signal(signum, signal.SIG_IGN)
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
    sampler_cfg=None,
    **kwargs,
):
    """A DataLoader of batches of ``imgs_per_gpu`` images for this process.

    Training (``shuffle=True``): the sampler of ``sampler_cfg`` (the config's
    ``data.sampler``; :func:`~mmdet_like.datasets.samplers.build_train_sampler`), by default
    ``GroupSampler`` (one process) or ``DistributedGroupSampler`` (each rank its share),
    each sample with a seed of its own
    from ``seed``, the epoch and its place in the epoch's order, under which the pipeline's
    random transforms draw (:class:`~mmdet_like.datasets.samplers.SeededSamples`): the same
    augmentations whatever the number of workers, and after a resume. Testing
    (``shuffle=False``): in order, or split across ranks by ``DistributedSampler`` (rank r
    gets r, r + world, ...). ``seed`` drives the shuffle (same on all ranks). Batches are
    made by :func:`collate` with the dataset's ``STACK_KEYS`` (default: the images only)
    unless ``collate_fn`` is given.

    The loader draws its workers' seeds from a generator of its own (``loader.generator``,
    reseeded from ``seed`` and the epoch by the runner), never from torch's global one: so
    starting an epoch, or resuming in its middle, leaves the global random state that the
    model's samplers draw from untouched.
    """
    if collate_fn is None:
        collate_fn = partial(collate, stack_keys=getattr(dataset, "STACK_KEYS", STACK_KEYS))
    rank, world_size = _dist_info()
    if shuffle:
        sampler = build_train_sampler(
            sampler_cfg, dataset, imgs_per_gpu, seed, dist, world_size, rank
        )
        dataset = SeededSamples(dataset)
    else:
        sampler = DistributedSampler(dataset, world_size, rank, shuffle=False) if dist else None
    kwargs.setdefault("generator", torch.Generator().manual_seed(int(seed or 0)))
    return DataLoader(
        dataset,
        batch_size=imgs_per_gpu,
        sampler=sampler,
        num_workers=workers_per_gpu,
        collate_fn=collate_fn,
        worker_init_fn=partial(
            worker_init_fn, rank=rank, num_workers=workers_per_gpu, parent_pid=os.getpid()
        ),
        **kwargs,
    )
