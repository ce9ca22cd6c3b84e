"""Training samplers: aspect-ratio groups (the default), one plain shuffle, or draws with
replacement; picked by the config's ``data.sampler`` (:func:`build_train_sampler`).

A dataset with a ``flag`` array (one group id per image, e.g. 1 for landscape and 0 for
portrait) is sampled so that every batch of ``samples_per_gpu`` images comes from one group;
without ``flag`` all images form one group. Shuffling depends only on ``seed`` and the
epoch (``set_epoch``), so a resumed run sees the same order.

With ``seed_samples=True`` every sample also gets a seed of its own, from ``seed``, the
epoch and its position in the epoch (:func:`sample_seed`): the sampler yields
``(index, seed)`` pairs and :class:`SeededSamples` runs the dataset's pipeline under that
seed. The random transforms then draw the same for a sample whatever process loads it and
wherever the run was resumed, so a resumed run is exact with data-loader workers too.
"""

import contextlib
import math
import random

import numpy as np
import torch
from torch.utils.data import Sampler

from mmdet_like.registry import SAMPLERS


def sample_seed(seed, epoch, position):
    """The seed of the sample at ``position`` of ``epoch``'s order (a 32-bit int)."""
    return ((int(seed) * 1_000_003 + int(epoch)) * 1_000_033 + int(position)) % 2**32


@contextlib.contextmanager
def seeded_random(seed, restore=True):
    """Python's, numpy's and torch's global (CPU) generators seeded with ``seed`` inside the
    block and, with ``restore``, given back their states after it (so the process's own
    random stream, which the model's samplers draw from, is untouched)."""
    states = None
    if restore:
        states = random.getstate(), np.random.get_state(), torch.get_rng_state()  # noqa: NPY002
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 (the global RNG is what transforms draw from)
    # the CPU generator only: torch.manual_seed also queues a seeding of every CUDA device,
    # recording the Python stack each time (slow, and pipelines run on the CPU)
    torch.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        if states is not None:
            random.setstate(states[0])
            np.random.set_state(states[1])  # noqa: NPY002
            torch.set_rng_state(states[2])


class SeededSamples(torch.utils.data.Dataset):
    """A dataset read with ``(index, seed)`` keys (a sampler with ``seed_samples=True``):
    ``dataset[index]`` under :func:`seeded_random` (``seed``). Plain int keys read as they
    are. Everything else (``len``, ``CLASSES``, ``flag``, ...) is the dataset's."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        if isinstance(key, tuple):
            index, seed = key
            # a data-loader worker's streams serve the pipeline only: nothing to give back
            in_worker = torch.utils.data.get_worker_info() is not None
            with seeded_random(seed, restore=not in_worker):
                return self.dataset[index]
        return self.dataset[key]

    def __getattr__(self, name):
        if name == "dataset":  # not set yet (unpickling)
            raise AttributeError(name)
        return getattr(self.dataset, name)


def _group_flags(dataset):
    flag = getattr(dataset, "flag", None)
    if flag is None:
        return np.zeros(len(dataset), dtype=np.int64)
    flag = np.asarray(flag, dtype=np.int64)
    if flag.shape != (len(dataset),):
        raise ValueError(f"dataset.flag has shape {flag.shape}, expected ({len(dataset)},)")
    return flag


def _grouped_chunks(flag, chunk, generator, pad_to):
    """Shuffled index chunks of ``chunk`` images, each from a single group.

    Each group is shuffled and padded (by repeating its images) to a multiple of ``pad_to``.
    Returns a list of index lists, in a shuffled order.
    """
    chunks = []
    for group in np.unique(flag):
        indices = np.flatnonzero(flag == group)
        indices = indices[torch.randperm(len(indices), generator=generator).numpy()]
        size = math.ceil(len(indices) / pad_to) * pad_to
        indices = np.resize(indices, size)  # repeats from the start to pad
        chunks += [indices[i : i + chunk].tolist() for i in range(0, size, chunk)]
    order = torch.randperm(len(chunks), generator=generator).tolist()
    return [chunks[i] for i in order]


class _SkippableSampler(Sampler):
    """``set_epoch`` picks the shuffle; ``set_skip(n)`` drops the first n samples of the
    next iteration only (used to resume in the middle of an epoch)."""

    def __init__(self, dataset, samples_per_gpu, seed, seed_samples=False):
        self.dataset = dataset
        self.samples_per_gpu = samples_per_gpu
        self.seed = 0 if seed is None else int(seed)
        self.seed_samples = seed_samples
        self.flag = _group_flags(dataset)
        self.epoch = 0
        self._skip = 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def set_skip(self, num_samples):
        self._skip = num_samples

    def _generator(self):
        return torch.Generator().manual_seed(self.seed + self.epoch)

    def _indices(self):
        raise NotImplementedError

    def _seed_offset(self):
        """Where this process's positions start in the epoch's order (rank r's share)."""
        return 0

    def __iter__(self):
        indices = self._indices()
        skip, self._skip = self._skip, 0
        if not self.seed_samples:
            return iter(indices[skip:])
        offset = self._seed_offset()
        return iter(
            [
                (int(index), sample_seed(self.seed, self.epoch, offset + position))
                for position, index in enumerate(indices)
                if position >= skip
            ]
        )


@SAMPLERS.register()
class GroupSampler(_SkippableSampler):
    """Shuffled indices for one process; each run of ``samples_per_gpu`` is one group."""

    def __init__(self, dataset, samples_per_gpu=1, seed=0, seed_samples=False):
        super().__init__(dataset, samples_per_gpu, seed, seed_samples)
        sizes = np.bincount(self.flag)
        self.num_samples = int(
            sum(math.ceil(s / samples_per_gpu) * samples_per_gpu for s in sizes if s)
        )

    def _indices(self):
        chunks = _grouped_chunks(
            self.flag, self.samples_per_gpu, self._generator(), self.samples_per_gpu
        )
        return [i for chunk in chunks for i in chunk]

    def __len__(self):
        return self.num_samples


class _ShardedSampler(_SkippableSampler):
    """Rank ``rank`` of ``num_replicas`` takes the ``rank``-th contiguous share of
    ``num_samples`` (set by the subclass) of one order that every rank draws alike (same
    seed and epoch)."""

    def __init__(
        self, dataset, samples_per_gpu=1, num_replicas=1, rank=0, seed=0, seed_samples=False
    ):
        super().__init__(dataset, samples_per_gpu, seed, seed_samples)
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, {num_replicas})")
        self.num_replicas = num_replicas
        self.rank = rank

    def _share(self, indices):
        start = self.rank * self.num_samples
        return indices[start : start + self.num_samples]

    def _seed_offset(self):
        return self.rank * self.num_samples

    def __len__(self):
        return self.num_samples


@SAMPLERS.register()
class DistributedGroupSampler(_ShardedSampler):
    """This rank's share of a grouped shuffle; all ranks get the same number of samples.

    Every group is padded to a multiple of ``samples_per_gpu * num_replicas`` so no rank
    gets a mixed batch; rank ``r`` takes the ``r``-th contiguous slice of the chunks.
    """

    def __init__(
        self, dataset, samples_per_gpu=1, num_replicas=1, rank=0, seed=0, seed_samples=False
    ):
        super().__init__(dataset, samples_per_gpu, num_replicas, rank, seed, seed_samples)
        per_step = samples_per_gpu * num_replicas
        sizes = np.bincount(self.flag)
        total = sum(math.ceil(s / per_step) * per_step for s in sizes if s)
        self.num_samples = int(total // num_replicas)

    def _indices(self):
        chunks = _grouped_chunks(
            self.flag,
            self.samples_per_gpu,
            self._generator(),
            self.samples_per_gpu * self.num_replicas,
        )
        return self._share([i for chunk in chunks for i in chunk])


class _UngroupedSampler(_ShardedSampler):
    """An epoch of ``len(dataset)`` indices (rounded up to whole batches on every rank),
    each rank taking its share (:class:`_ShardedSampler`). Batches mix landscape and
    portrait images (the collate pads them to the batch's largest size)."""

    def __init__(
        self, dataset, samples_per_gpu=1, num_replicas=1, rank=0, seed=0, seed_samples=False
    ):
        super().__init__(dataset, samples_per_gpu, num_replicas, rank, seed, seed_samples)
        per_step = samples_per_gpu * num_replicas
        self.num_samples = math.ceil(len(dataset) / per_step) * samples_per_gpu

    def _order(self, generator):
        """(len(dataset),) tensor: the epoch's order of image indices."""
        raise NotImplementedError

    def _indices(self):
        order = self._order(self._generator()).tolist()
        total = self.num_samples * self.num_replicas
        order = (order * math.ceil(total / max(len(order), 1)))[:total]  # pad by repeating
        return self._share(order)


@SAMPLERS.register()
class ShuffleSampler(_UngroupedSampler):
    """Every image once an epoch in a fresh random order, with no aspect-ratio grouping
    (torchvision's reference scripts without ``--aspect-ratio-group-factor``)."""

    def _order(self, generator):
        return torch.randperm(len(self.dataset), generator=generator)


@SAMPLERS.register()
class ReplacementSampler(_UngroupedSampler):
    """``len(dataset)`` images an epoch drawn uniformly at random with replacement (an image
    may come twice in an epoch, or not at all): a loop that draws each batch at random
    from all images, cut into epochs only for the runner's bookkeeping."""

    def _order(self, generator):
        n = len(self.dataset)
        return torch.randint(n, (n,), generator=generator)


TRAIN_SAMPLERS = ("GroupSampler", "ShuffleSampler", "ReplacementSampler")


def build_train_sampler(
    sampler_cfg, dataset, samples_per_gpu, seed, dist=False, num_replicas=1, rank=0
):
    """The training sampler of the config's ``data.sampler`` (``None``: ``GroupSampler``,
    ``DistributedGroupSampler`` when ``dist``), yielding ``(index, seed)`` pairs.

    ``sampler_cfg``: ``dict(type=NAME)`` with NAME one of :data:`TRAIN_SAMPLERS`.
    """
    cfg = dict(sampler_cfg or {"type": "GroupSampler"})
    kind = cfg.pop("type", None)
    if kind not in TRAIN_SAMPLERS:
        raise ValueError(
            f"data.sampler: type={kind!r} is not a training sampler; use one of "
            f"{', '.join(TRAIN_SAMPLERS)} (or leave data.sampler out for GroupSampler)"
        )
    if cfg:
        raise ValueError(
            f"data.sampler: {kind} takes no options here, got {sorted(cfg)}; the batch size is "
            "data.imgs_per_gpu and the seed the run's"
        )
    if kind == "GroupSampler":
        if dist:
            return DistributedGroupSampler(
                dataset, samples_per_gpu, num_replicas, rank, seed, seed_samples=True
            )
        return GroupSampler(dataset, samples_per_gpu, seed, seed_samples=True)
    cls = ShuffleSampler if kind == "ShuffleSampler" else ReplacementSampler
    if not dist:
        num_replicas, rank = 1, 0
    return cls(dataset, samples_per_gpu, num_replicas, rank, seed, seed_samples=True)
