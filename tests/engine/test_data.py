"""Samplers (aspect-ratio groups, plain shuffle, draws with replacement, ranks, skipping),
collate and worker seeding."""

import random

import numpy as np
import pytest
import torch

from mmdet_like.datasets import (
    DistributedGroupSampler,
    GroupSampler,
    ReplacementSampler,
    ShuffleSampler,
    build_dataloader,
    collate,
)
from mmdet_like.datasets.samplers import SeededSamples, build_train_sampler
from tests.engine.toy import ToyRegressionDataset


def test_group_sampler_batches_one_group_and_is_seeded_per_epoch():
    dataset = ToyRegressionDataset(num_samples=21, groups=2)  # 11 even, 10 odd indices
    sampler = GroupSampler(dataset, samples_per_gpu=4, seed=3)
    indices = list(sampler)
    assert len(indices) == len(sampler) == 12 + 12
    assert set(indices) == set(range(21))
    for start in range(0, len(indices), 4):
        assert len({i % 2 for i in indices[start : start + 4]}) == 1
    assert list(sampler) == indices  # same epoch, same order
    sampler.set_epoch(1)
    assert list(sampler) != indices
    sampler.set_epoch(0)
    sampler.set_skip(8)
    assert list(sampler) == indices[8:]
    assert list(sampler) == indices  # the skip is one-shot


def test_distributed_group_sampler_shares():
    dataset = ToyRegressionDataset(num_samples=21, groups=2)
    shares = [
        list(DistributedGroupSampler(dataset, 2, num_replicas=3, rank=r, seed=0)) for r in range(3)
    ]
    assert len({len(s) for s in shares}) == 1 and len(shares[0]) == 8  # 24 padded / 3
    assert set().union(*shares) == set(range(21))
    for share in shares:
        for start in range(0, len(share), 2):
            assert len({i % 2 for i in share[start : start + 2]}) == 1


def test_shuffle_sampler_mixes_groups_and_covers_every_image_once():
    dataset = ToyRegressionDataset(num_samples=21, groups=2)
    sampler = ShuffleSampler(dataset, samples_per_gpu=4, seed=3)
    indices = list(sampler)
    assert len(indices) == len(sampler) == 24  # 21 rounded up to whole batches
    assert set(indices) == set(range(21)) and len(set(indices[:21])) == 21
    batches = [indices[i : i + 4] for i in range(0, 24, 4)]
    assert any(len({i % 2 for i in b}) == 2 for b in batches)  # groups mixed
    assert list(sampler) == indices
    sampler.set_epoch(1)
    assert list(sampler) != indices


def test_replacement_sampler_draws_with_replacement_seeded_per_epoch():
    dataset = ToyRegressionDataset(num_samples=40, groups=2)
    sampler = ReplacementSampler(dataset, samples_per_gpu=4, seed=5)
    epochs = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        epochs.append(list(sampler))
    assert all(len(e) == len(sampler) == 40 for e in epochs)
    # 40 draws out of 40 with replacement repeat an image (probability 1 - 40!/40**40)
    assert all(len(set(e)) < 40 for e in epochs)
    assert all(0 <= i < 40 for e in epochs for i in e)
    assert epochs[0] != epochs[1] != epochs[2]
    sampler.set_epoch(0)
    assert list(sampler) == epochs[0]
    sampler.set_skip(8)
    assert list(sampler) == epochs[0][8:]


@pytest.mark.parametrize("cls", [ShuffleSampler, ReplacementSampler])
def test_ungrouped_samplers_split_one_order_between_ranks(cls):
    dataset = ToyRegressionDataset(num_samples=21, groups=2)
    single = cls(dataset, 2, num_replicas=1, rank=0, seed=0)
    shares = [list(cls(dataset, 2, num_replicas=3, rank=r, seed=0)) for r in range(3)]
    assert [len(s) for s in shares] == [8, 8, 8]  # 21 rounded up to 24 = 3 ranks x 4 x 2
    order = list(single)
    assert sum(shares, [])[:21] == order[:21]
    with pytest.raises(ValueError, match="rank 3"):
        cls(dataset, 2, num_replicas=3, rank=3)


def test_build_train_sampler_from_the_config_and_its_errors():
    dataset = ToyRegressionDataset(num_samples=9, groups=2)
    assert type(build_train_sampler(None, dataset, 2, 0)) is GroupSampler
    assert type(build_train_sampler(None, dataset, 2, 0, dist=True, num_replicas=2)) is (
        DistributedGroupSampler
    )
    sampler = build_train_sampler({"type": "ReplacementSampler"}, dataset, 2, 0)
    assert type(sampler) is ReplacementSampler and sampler.seed_samples
    with pytest.raises(ValueError, match="'Random' is not a training sampler; use one of"):
        build_train_sampler({"type": "Random"}, dataset, 2, 0)
    with pytest.raises(ValueError, match="takes no options here"):
        build_train_sampler({"type": "ShuffleSampler", "shuffle": False}, dataset, 2, 0)
    loader = build_dataloader(dataset, 3, 0, seed=1, sampler_cfg={"type": "ShuffleSampler"})
    assert type(loader.sampler) is ShuffleSampler and isinstance(loader.dataset, SeededSamples)
    assert sorted(i for i, _ in loader.sampler) == list(range(9))


def test_config_check_names_a_bad_data_sampler():
    from mmdet_like.apis.config_check import check_config
    from mmdet_like.engine.config import Config, ConfigError

    cfg = Config.fromfile("configs/small_data/faster_rcnn_r18_fpn_small.py")
    cfg.data.sampler = {"type": "ReplacementSampler"}
    check_config(cfg)
    cfg.data.sampler = {"type": "AspectRatioBatchSampler"}
    with pytest.raises(
        ConfigError, match=r"data\.sampler: must be dict\(type=NAME\) with NAME one"
    ):
        check_config(cfg)


def test_collate_stacks_the_images_only_and_keeps_per_image_values_as_lists():
    """Boxes and labels are lists in every batch: before, they were stacked into a tensor
    whenever the images happened to have the same number of boxes."""
    samples = [
        {
            "img": torch.zeros(3, 4, 4),
            "boxes": torch.zeros(k, 4),
            "labels": torch.zeros(2, dtype=torch.long),  # same shape in both samples
            "idx": k,
            "img_meta": {"shape": (4, 4)},
        }
        for k in (1, 2)
    ]
    batch = collate(samples)
    assert batch["img"].shape == (2, 3, 4, 4)
    assert isinstance(batch["boxes"], list) and batch["boxes"][1].shape == (2, 4)
    assert isinstance(batch["labels"], list) and len(batch["labels"]) == 2
    assert batch["idx"] == [1, 2]
    assert batch["img_meta"] == [{"shape": (4, 4)}, {"shape": (4, 4)}]
    sizes = [{"img": torch.zeros(3, 4, 4)}, {"img": torch.zeros(3, 4, 6)}]
    assert isinstance(collate(sizes)["img"], list)  # the detector pads them
    stacked = collate(samples, stack_keys=("img", "labels", "idx"))
    assert stacked["labels"].shape == (2, 2) and torch.equal(stacked["idx"], torch.tensor([1, 2]))


class RandomDataset(torch.utils.data.Dataset):
    STACK_KEYS = ("r",)

    def __len__(self):
        return 4

    def __getitem__(self, index):
        return {"r": torch.tensor([random.random(), np.random.rand(), torch.rand(1).item()])}  # noqa: NPY002 (the global RNG is what is seeded)


def _draws():
    torch.manual_seed(0)
    loader = build_dataloader(RandomDataset(), 1, 2, shuffle=False)
    return torch.cat([b["r"] for b in loader])


def test_workers_are_seeded_reproducibly_and_differently():
    first, second = _draws(), _draws()
    assert torch.equal(first, second)
    assert len(set(first[:, 1].tolist())) == 4  # numpy draws differ between workers/samples


def test_per_sample_seeds_follow_the_epoch_order_and_survive_a_skip():
    """With ``seed_samples`` the sampler yields (index, seed) pairs; a seed depends on the
    run's seed, the epoch and the position only, so skipping (a mid-epoch resume) keeps the
    seeds of the samples that remain, and ``SeededSamples`` draws the same for a sample
    whatever was drawn before, leaving the process's own random stream as it was."""
    import random

    from mmdet_like.datasets.samplers import GroupSampler, SeededSamples, sample_seed
    from tests.engine.toy import ToyRegressionDataset

    dataset = ToyRegressionDataset(num_samples=12, augment=0.5)
    sampler = GroupSampler(dataset, samples_per_gpu=4, seed=3, seed_samples=True)
    sampler.set_epoch(2)
    whole = list(sampler)
    plain = GroupSampler(dataset, 4, seed=3)
    plain.set_epoch(2)
    assert [i for i, _ in whole] == list(plain)
    assert [s for _, s in whole] == [sample_seed(3, 2, p) for p in range(12)]
    sampler.set_skip(5)
    assert list(sampler) == whole[5:]
    sampler.set_epoch(3)
    assert [s for _, s in sampler] != [s for _, s in whole]

    seeded = SeededSamples(dataset)
    assert len(seeded) == 12 and seeded.CLASSES == dataset.CLASSES
    random.seed(0)
    first = seeded[whole[4]]["x"]
    state = random.getstate()
    random.random()  # other draws in between change nothing for the sample
    again = seeded[whole[4]]["x"]
    assert torch.equal(first, again)
    assert not torch.equal(first, seeded[whole[5]]["x"]) and not torch.equal(
        first, dataset.x[whole[4][0]]
    )
    random.seed(0)
    seeded[whole[4]]
    assert random.getstate() == state  # the caller's stream is untouched
