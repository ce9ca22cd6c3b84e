"""The detector benchmarks' shared parts (mmdet_like/benchmarking/): equal inputs, equal
weights on both sides, and the markdown section writer."""

from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _common():
    import mmdet_like.benchmarking

    return mmdet_like.benchmarking


def test_inputs_are_deterministic_with_tight_boxes():
    common = _common()
    first, second = common.make_inputs(seed=3), common.make_inputs(seed=3)
    assert len(first) == common.NUM_IMAGES
    for a, b in zip(first, second):
        assert a["image"].shape == (common.IMAGE_HEIGHT, common.IMAGE_WIDTH, 3)
        np.testing.assert_array_equal(a["image"], b["image"])
        assert a["masks"].shape == (common.NUM_BOXES, common.IMAGE_HEIGHT, common.IMAGE_WIDTH)
        for box, mask in zip(a["boxes"], a["masks"]):
            ys, xs = np.nonzero(mask)
            assert list(box) == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    ours = common.our_batch(first, torch.device("cpu"))
    images, targets = common.torchvision_batch(first, torch.device("cpu"))
    # the same pixels: our normalised batch undone equals torchvision's [0, 1] images * 255
    mean = torch.tensor(common.MEAN).view(3, 1, 1)
    std = torch.tensor(common.STD).view(3, 1, 1)
    torch.testing.assert_close(ours["img"][0] * std + mean, images[0] * 255, atol=1e-3, rtol=0)
    gt = ours["data_samples"][1].gt_instances
    assert torch.equal(targets[1]["labels"], gt.labels + 1)  # background is 0
    assert torch.equal(targets[1]["boxes"], gt.bboxes)


def test_both_models_start_from_the_same_weights():
    common = _common()
    tv_model = common.torchvision_model(seed=0).eval()
    ours, _ = common.our_model(common.DEFAULT_CONFIG, tv_model.state_dict())
    ours.eval()
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        theirs = list(tv_model.backbone(x).values())
        mine = ours.extract_feat(x)
        for a, b in zip(mine, theirs, strict=True):
            scale = b.abs().max()
            torch.testing.assert_close(a / scale, b / scale, atol=1e-4, rtol=0)
        cls_ours = ours.roi_head.bbox_head.fc_cls.weight
        cls_tv = tv_model.roi_heads.box_predictor.cls_score.weight
        torch.testing.assert_close(cls_ours[:-1], cls_tv[1:])  # background moved last


@pytest.mark.parametrize("model", ["retinanet", "fcos"])
def test_dense_models_start_from_the_same_weights_and_detect_the_same(model):
    """``--model retinanet`` / ``fcos``: the converted weights give our model torchvision's
    classification scores (its background channel switched off), and both return the same
    detections on a small input."""
    common = _common()
    tv_model = common.torchvision_model(seed=0, model=model).eval()
    ours, _ = common.our_model(common.MODELS[model]["config"], tv_model.state_dict())
    ours.eval()
    head = tv_model.head.classification_head.cls_logits
    num_classes = common.NUM_CLASSES + 1
    assert bool((head.bias.view(-1, num_classes)[:, 0] == -100).all())  # background: off
    classifier = ours.bbox_head.retina_cls if model == "retinanet" else ours.bbox_head.conv_cls
    torch.testing.assert_close(
        classifier.weight, head.weight.view(-1, num_classes, *head.weight.shape[1:])[:, 1:]
        .reshape(classifier.weight.shape)
    )  # fmt: skip
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        for a, b in zip(ours.extract_feat(x), tv_model.backbone(x).values(), strict=True):
            scale = b.abs().max()
            torch.testing.assert_close(a / scale, b / scale, atol=1e-4, rtol=0)
    samples = common.make_inputs()[:1]
    small = dict(samples[0], image=samples[0]["image"][:256, :384])
    tv_model.transform.min_size, tv_model.transform.max_size = (256,), 384  # keep the size
    images, _ = common.torchvision_batch([small], torch.device("cpu"), train=False)
    batch = common.our_batch([small], torch.device("cpu"), train=False, masks=False)
    shape = (256, 384, 3)
    for sample in batch["data_samples"]:
        sample.metainfo.update(ori_shape=shape, img_shape=shape, pad_shape=shape)
    with torch.no_grad():
        theirs = tv_model(images)[0]
        mine = ours(**batch, return_loss=False, rescale=True)[0].pred_instances
    assert len(theirs["boxes"]) > 0 and len(mine) == len(theirs["boxes"])
    top = theirs["scores"].argmax()
    torch.testing.assert_close(mine.scores.max(), theirs["scores"][top], atol=1e-4, rtol=0)


def test_keypoint_rcnn_pair_starts_equal_and_trains_on_the_same_keypoints():
    """``--model keypoint_rcnn``: converted weights (the keypoint head too), the same
    keypoint targets on both sides, and both models' keypoint losses on a small input."""
    common = _common()
    tv_model = common.torchvision_model(seed=0, model="keypoint_rcnn")
    ours, _ = common.our_model(common.MODELS["keypoint_rcnn"]["config"], tv_model.state_dict())
    torch.testing.assert_close(
        ours.roi_head.keypoint_head.deconv.weight,
        tv_model.roi_heads.keypoint_predictor.kps_score_lowres.weight,
    )
    samples = common.make_inputs()
    points = samples[0]["keypoints"]
    assert points.shape == (common.NUM_BOXES, 17, 3)
    boxes = samples[0]["boxes"]
    labelled = points[..., 2] > 0
    assert 0 < labelled.mean() < 1
    inside = (points[..., 0] >= boxes[:, None, 0]) & (points[..., 0] <= boxes[:, None, 2])
    assert inside[labelled].all()
    ours_batch = common.our_batch(samples, torch.device("cpu"), keypoints=True, masks=False)
    _, targets = common.torchvision_batch(samples, torch.device("cpu"), masks=False,
                                          keypoints=True)  # fmt: skip
    gt = ours_batch["data_samples"][0].gt_instances
    assert torch.equal(gt.keypoints, targets[0]["keypoints"])
    assert (gt.labels == 0).all() and (targets[0]["labels"] == 1).all()


def test_section_markers_keep_mask_rcnn_blocks_and_name_the_other_models():
    common = _common()
    args = type("Args", (), dict(device="cpu", amp=False, model="maskrcnn"))()
    assert common.section_marker("benchmark_train", args) == "benchmark_train cpu"
    args.model, args.amp = "retinanet", True
    assert common.section_marker("benchmark", args) == "benchmark cpu amp retinanet"
    assert common.row_label(common.TORCHVISION_CACHED, "fcos").startswith(
        "torchvision fcos_resnet50_fpn"
    )
    with pytest.raises(ValueError, match="unknown benchmark model"):
        common.torchvision_model(model="yolo")


def test_write_section_replaces_only_its_block(tmp_path):
    common = _common()
    path = tmp_path / "bench.md"
    path.write_text("# Benchmarks\n\nintro\n")
    common.write_section(str(path), "x cpu", "| a |\n")
    common.write_section(str(path), "y cpu", "| b |\n")
    common.write_section(str(path), "x cpu", "| c |\n")
    text = path.read_text()
    assert "intro" in text and "| b |" in text and "| c |" in text and "| a |" not in text
    assert text.index("x cpu begin") < text.index("y cpu begin")


def test_summarise_reports_the_fastest_round_whole():
    """Time and memory of one round: the fastest round's peak memory, not the lowest peak of
    another round."""
    common = _common()
    rounds = [
        dict(times=[3.0, 5.0, 4.0], peak_mb=900.0, machine="m", detections=[100, 100]),
        dict(times=[2.5, 6.0, 7.0], peak_mb=950.0, machine="m", detections=[100, 99]),
    ]
    summary = common.summarise(rounds)
    assert summary["best"] == 2.5 and summary["median"] == 6.0
    assert summary["peak_mb"] == 950.0 and summary["detections"] == [100, 99]
    assert "detections" not in common.summarise([dict(times=[1.0], peak_mb=1.0, machine="m")])


def test_benchmark_helpers_live_in_the_package():
    """The tools import them as a package (no tools/ module, no sys.path edits)."""
    for tool in ROOT.glob("tools/**/*.py"):
        assert "sys.path" not in tool.read_text(), tool
    assert not (ROOT / "tools" / "benchmark_common.py").exists()


def test_rounds_give_our_side_the_caching_allocator_as_the_tools_do(monkeypatch):
    """Where the allocator exists (the compiled ops; the fallback has none), as the tools."""
    from mmdet_like.ops import cpu_caching_allocator_available

    available = cpu_caching_allocator_available()
    common = _common()
    calls = []

    def fake_child(script, args):
        calls.append(args)
        return dict(times=[float(len(calls))], peak_mb=1.0, machine="m")

    import mmdet_like.benchmarking.runs as runs

    monkeypatch.setattr(runs, "run_child", fake_child)
    args = type("Args", (), {})()
    args.device, args.iters, args.warmup, args.amp, args.rounds = "cpu", 1, 0, False, 2
    args.config, args.torchvision_cached = ["a.py"], True
    monkeypatch.delenv("MMDET_LIKE_CPU_CACHING_ALLOCATOR", raising=False)
    tv_runs, other = common.run_rounds("script.py", args)
    assert len(tv_runs) == 2 and set(other) == {"a.py", common.TORCHVISION_CACHED}
    tv_calls = [c for c in calls if "reference" in c and "--caching-allocator" not in c]
    ours_calls = [c for c in calls if "ours" in c]
    tv_cached_calls = [c for c in calls if "reference" in c and "--caching-allocator" in c]
    assert len(tv_calls) == len(ours_calls) == len(tv_cached_calls) == 2
    assert all(("--caching-allocator" in c) == available for c in ours_calls)
    assert common.row_label(common.TORCHVISION_CACHED).startswith("torchvision")
    assert common.row_label("a.py") == "ours, `a.py`"
    # switched off in the environment, or on a GPU: our side runs without it
    monkeypatch.setenv("MMDET_LIKE_CPU_CACHING_ALLOCATOR", "0")
    assert not common.our_side_caches("cpu")
    monkeypatch.delenv("MMDET_LIKE_CPU_CACHING_ALLOCATOR")
    assert common.our_side_caches("cpu") == available and not common.our_side_caches("cuda")
