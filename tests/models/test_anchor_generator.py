"""AnchorGenerator: base anchors by hand, grid layout, caching and valid flags."""

import pytest
import torch

from mmdet_like.models import build_anchor_generator
from mmdet_like.models.task_modules import AnchorGenerator
from mmdet_like.registry import BuildError


def test_base_anchors_by_hand():
    gen = AnchorGenerator(strides=[16], ratios=[0.5, 1.0, 2.0], scales=[8], center_offset=0.5)
    # base size 16, scale 8 -> area 128^2; centre (8, 8)
    expected = torch.tensor(
        [
            [8 - 90.50967, 8 - 45.254834, 8 + 90.50967, 8 + 45.254834],  # h/w = 0.5
            [8 - 64.0, 8 - 64.0, 8 + 64.0, 8 + 64.0],
            [8 - 45.254834, 8 - 90.50967, 8 + 45.254834, 8 + 90.50967],  # h/w = 2
        ]
    )
    torch.testing.assert_close(gen.base_anchors[0], expected)
    assert gen.num_base_anchors == [3]


def test_scale_major_ordering():
    kwargs = dict(strides=[8], ratios=[0.5, 2.0], scales=[1, 2])
    major = AnchorGenerator(scale_major=True, **kwargs).base_anchors[0]
    minor = AnchorGenerator(scale_major=False, **kwargs).base_anchors[0]
    widths = lambda a: (a[:, 2] - a[:, 0]).tolist()  # noqa: E731
    # scale-major: the scales vary fastest within a ratio
    assert widths(major) == pytest.approx([8 * 2**0.5, 16 * 2**0.5, 8 / 2**0.5, 16 / 2**0.5])
    assert widths(minor) == pytest.approx([8 * 2**0.5, 8 / 2**0.5, 16 * 2**0.5, 16 / 2**0.5])


def test_octave_scales():
    gen = AnchorGenerator(strides=[8], ratios=[1.0], octave_base_scale=4, scales_per_octave=3)
    for scales in gen.level_scales:
        torch.testing.assert_close(scales, torch.tensor([4.0, 4 * 2 ** (1 / 3), 4 * 2 ** (2 / 3)]))
    with pytest.raises(ValueError):
        AnchorGenerator(strides=[8], ratios=[1.0])


def test_grid_layout():
    gen = build_anchor_generator(
        dict(type="AnchorGenerator", strides=[4, 8], ratios=[0.5, 1.0, 2.0], scales=[2])
    )
    anchors = gen.grid_priors([(3, 5), (2, 3)])
    assert [a.shape for a in anchors] == [(3 * 5 * 3, 4), (2 * 3 * 3, 4)]
    level0 = anchors[0].view(3, 5, 3, 4)
    # each cell = base anchors shifted by (x * stride, y * stride)
    for y, x in [(0, 0), (1, 4), (2, 2)]:
        shift = torch.tensor([x * 4.0, y * 4.0, x * 4.0, y * 4.0])
        torch.testing.assert_close(level0[y, x], gen.base_anchors[0] + shift)


def test_cache_per_size_level_dtype():
    gen = AnchorGenerator(strides=[4, 8], ratios=[1.0], scales=[8])
    first = gen.single_level_grid_priors((4, 4), 0)
    assert gen.single_level_grid_priors((4, 4), 0) is first
    assert gen.single_level_grid_priors((4, 4), 1) is not first
    assert gen.single_level_grid_priors((4, 5), 0) is not first
    double = gen.single_level_grid_priors((4, 4), 0, dtype=torch.float64)
    assert double.dtype == torch.float64
    torch.testing.assert_close(double.float(), first)
    assert len(gen._cache) == 4


def test_valid_flags():
    gen = AnchorGenerator(strides=[4], ratios=[1.0, 2.0], scales=[8])
    # image of 10 x 6 inside a padded 16 x 16 batch: ceil(10/4)=3 rows, ceil(6/4)=2 cols valid
    flags = gen.valid_flags([(4, 4)], pad_shape=(10, 6))[0]
    grid = flags.view(4, 4, 2)
    assert grid[:3, :2].all() and not grid[3].any() and not grid[:, 2:].any()


def test_build_errors():
    with pytest.raises(BuildError, match="base_sizes"):
        build_anchor_generator(
            dict(type="AnchorGenerator", strides=[4, 8], ratios=[1.0], scales=[8], base_sizes=[4])
        )


def test_cache_is_bounded_least_recently_used_first():
    gen = AnchorGenerator(strides=[4], ratios=[1.0], scales=[8], cache_size=2)
    a = gen.single_level_grid_priors((2, 2), 0)
    gen.single_level_grid_priors((3, 3), 0)
    assert gen.single_level_grid_priors((2, 2), 0) is a  # now most recently used
    gen.single_level_grid_priors((4, 4), 0)  # evicts (3, 3)
    assert [key[0] for key in gen._cache] == [(2, 2), (4, 4)]


def test_per_level_scales_give_torchvisions_retinanet_anchors():
    """torchvision's RetinaNet anchors: sizes (x, int(x * 2^(1/3)), int(x * 2^(2/3))) per level
    (truncated, so each level has its own scales), ratios 0.5, 1, 2, rounded base anchors."""
    anchor_utils = pytest.importorskip("torchvision.models.detection.anchor_utils")
    image_list = pytest.importorskip("torchvision.models.detection.image_list")
    bases = [32, 64, 128, 256, 512]
    sizes = [(x, int(x * 2 ** (1 / 3)), int(x * 2 ** (2 / 3))) for x in bases]
    reference = anchor_utils.AnchorGenerator(tuple(sizes), ((0.5, 1.0, 2.0),) * 5)
    ours = AnchorGenerator(
        strides=[8, 16, 32, 64, 128], ratios=[0.5, 1.0, 2.0], base_sizes=bases,
        scales=[[s / base for s in level] for base, level in zip(bases, sizes)],
        round_base_anchors=True,
    )  # fmt: skip
    shapes = [(32, 48), (16, 24), (8, 12), (4, 6), (2, 3)]
    images = image_list.ImageList(torch.zeros(1, 3, 256, 384), [(256, 384)])
    feats = [torch.zeros(1, 1, h, w) for h, w in shapes]
    (expected,) = reference(images, feats)
    torch.testing.assert_close(torch.cat(ours.grid_priors(shapes)), expected)
    with pytest.raises(ValueError, match="2 lists of scales for 5 levels"):
        AnchorGenerator(strides=[8, 16, 32, 64, 128], ratios=[1.0], scales=[[1.0], [2.0]])


FPN_STRIDES = [4, 8, 16, 32, 64]
FEATMAP_SIZES = [(10, 12), (5, 6), (3, 3), (2, 2), (1, 1)]


@pytest.mark.parametrize("center_offset", [0.0, 0.5])
def test_sizes_equal_the_base_sizes_and_scales_form(center_offset):
    ratios = [0.5, 1.0, 2.0]
    by_sizes = AnchorGenerator(
        FPN_STRIDES, ratios, sizes=[[32], [64], [128], [256], [512]], center_offset=center_offset
    )
    by_scales = AnchorGenerator(FPN_STRIDES, ratios, scales=[8], center_offset=center_offset)
    assert by_sizes.num_base_anchors == [3] * 5
    for ours, expected in zip(
        by_sizes.grid_priors(FEATMAP_SIZES), by_scales.grid_priors(FEATMAP_SIZES)
    ):
        torch.testing.assert_close(ours, expected)


def test_sizes_give_anchor_areas_of_size_squared_at_every_ratio():
    sizes = [[32, 40], [64, 80], [128, 160], [256, 320], [512, 640]]
    ratios = [0.25, 0.5, 1.0, 2.0]
    generator = build_anchor_generator(
        dict(type="AnchorGenerator", strides=FPN_STRIDES, ratios=ratios, sizes=sizes)
    )
    for level, base in enumerate(generator.base_anchors):
        widths, heights = base[:, 2] - base[:, 0], base[:, 3] - base[:, 1]
        # scale-major: the ratios of size 0, then those of size 1
        expected_area = torch.tensor(sizes[level], dtype=torch.float32).repeat(len(ratios)) ** 2
        order = torch.arange(len(ratios))[:, None] * 2 + torch.arange(2)[None, :]
        torch.testing.assert_close(widths * heights, expected_area[order.reshape(-1)])
        ratio_of_anchor = torch.tensor(ratios).repeat_interleave(2)
        torch.testing.assert_close(heights / widths, ratio_of_anchor)


def test_sizes_for_every_level_and_levels_with_different_anchor_counts():
    shared = AnchorGenerator([8, 16], [1.0, 2.0], sizes=[32, 64])
    assert shared.num_base_anchors == [4, 4]
    torch.testing.assert_close(shared.base_anchors[0], shared.base_anchors[1])

    uneven = AnchorGenerator([8, 16], [1.0], sizes=[[32], [64, 96, 128]])
    assert uneven.num_base_anchors == [1, 3]
    anchors = uneven.grid_priors([(4, 5), (2, 3)])
    assert [tuple(a.shape) for a in anchors] == [(20, 4), (18, 4)]
    flags = uneven.valid_flags([(4, 5), (2, 3)], (32, 40))
    assert [f.numel() for f in flags] == [20, 18]
    sides = anchors[1][:3, 2] - anchors[1][:3, 0]
    torch.testing.assert_close(sides, torch.tensor([64.0, 96.0, 128.0]))


@pytest.mark.parametrize(
    "extra, message",
    [
        (dict(scales=[8]), "cannot be combined with scales"),
        (dict(octave_base_scale=4, scales_per_octave=3), "octave_base_scale"),
        (dict(base_sizes=[4, 8]), "base_sizes"),
    ],
)
def test_sizes_refuse_the_relative_form(extra, message):
    with pytest.raises(ValueError, match=f"AnchorGenerator: sizes.*{message}"):
        AnchorGenerator([4, 8], [1.0], sizes=[[32], [64]], **extra)


def test_sizes_errors():
    with pytest.raises(BuildError, match="3 lists of sizes for 2 levels"):
        build_anchor_generator(
            dict(type="AnchorGenerator", strides=[4, 8], ratios=[1.0], sizes=[[8], [16], [32]])
        )
    with pytest.raises(ValueError, match="sizes must be positive"):
        AnchorGenerator([4, 8], [1.0], sizes=[[8], [0]])
    with pytest.raises(ValueError, match="at least one size"):
        AnchorGenerator([4, 8], [1.0], sizes=[[8], []])
    with pytest.raises(ValueError, match="give one of sizes, scales"):
        AnchorGenerator([4, 8], [1.0])
