"""Python inference API: a detector from a config (and checkpoint), run on images, drawn.

```python
from mmdet_like.apis import inference_detector, init_detector, show_result

model = init_detector("configs/mask_rcnn_r50_fpn_1x.py", "work_dirs/latest.pth")
result = inference_detector(model, "demo.jpg")  # or a BGR array, or a list of either
show_result("demo.jpg", result, model.CLASSES, out_file="demo_out.jpg")
# line width and font from the image size; or fixed, with another palette:
show_result("demo.jpg", result, model.CLASSES, thickness=3, font_scale=0.8, palette="tab20")
```
"""

import copy

import mmcv
import numpy as np
import torch

import mmdet_like.datasets  # noqa: F401 (registers the pipeline transforms)
from mmdet_like.apis.startup_check import check_class_counts, load_checkpoint_for_testing
from mmdet_like.datasets.pipelines import Compose
from mmdet_like.engine import get_logger, load_config
from mmdet_like.models import build_detector
from mmdet_like.registry import DATASETS
from mmdet_like.structures import samples_from_lists, to_legacy_result
from mmdet_like.visualization import DrawStyle, draw_result


def _config(config, cfg_options=None):
    if isinstance(config, str):
        return load_config(config, cfg_options)
    if cfg_options:
        config = copy.deepcopy(config)
        config.merge_from_dict(cfg_options)
    return config


def _dataset_classes(cfg):
    """Class names of the config's test dataset: its ``classes=`` or the class's
    ``CLASSES`` (looked up in ``DATASETS``); ``None`` when neither is known."""
    test = (cfg.get("data") or {}).get("test") or {}
    if isinstance(test, (list, tuple)):
        test = test[0] if test else {}
    classes = test.get("classes")
    if isinstance(classes, (list, tuple)):
        return tuple(classes)
    if "type" in test and test["type"] in DATASETS:
        names = getattr(DATASETS.get(test["type"]), "CLASSES", None)
        if names:
            return tuple(names)
    return None


def init_detector(config, checkpoint=None, device="cpu", cfg_options=None, allow_partial=False):
    """A detector in eval mode built from ``config`` (a path or a loaded config).

    Nothing is downloaded: ``model.pretrained`` and the backbone's ``pretrained`` are unset.
    ``checkpoint`` (a path, ``torchvision://`` or URL) must fit the model (every weight and
    shape) and, where both are known, have been trained on the config's test classes in
    their order (:func:`load_checkpoint_for_testing`); ``allow_partial=True`` loads what
    fits and logs the rest. The model's class counts are checked against the config's test
    classes when the config names them. ``model.CLASSES``: the checkpoint's
    ``meta["CLASSES"]`` (or ``meta["classes"]``), else the test dataset's classes, else
    ``("0", "1", ...)``. ``model.KEYPOINT_SKELETON``: the checkpoint's
    ``meta["keypoint_meta"]["skeleton"]`` (0-based pairs, for :func:`show_result`), else
    ``()``. ``model.cfg`` keeps the config (its test pipeline is used by
    :func:`inference_detector`).
    """
    cfg = _config(config, cfg_options)
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg["pretrained"] = None
    if isinstance(model_cfg.get("backbone"), dict):
        model_cfg["backbone"]["pretrained"] = None
    test_cfg = cfg.get("test_cfg")
    # inference only: without a test_cfg the train_cfg stays (a model config may need it)
    train_cfg = cfg.get("train_cfg") if test_cfg is None else None
    model = build_detector(model_cfg, train_cfg, test_cfg)
    dataset_classes = _dataset_classes(cfg)
    if dataset_classes is not None:
        check_class_counts(cfg.model, _NamedClasses(dataset_classes), "test")
    classes, skeleton = None, ()
    if checkpoint is not None:
        loaded = load_checkpoint_for_testing(
            model, checkpoint, dataset_classes, "test", allow_partial, get_logger()
        )
        meta = loaded.get("meta") or {}
        classes = meta.get("CLASSES") or meta.get("classes")
        skeleton = (meta.get("keypoint_meta") or {}).get("skeleton") or ()
    if classes is None:
        classes = dataset_classes
    num_classes = getattr(model, "num_classes", None)
    if classes is None and num_classes is not None:
        classes = tuple(str(i) for i in range(num_classes))
    model.CLASSES = tuple(classes) if classes is not None else None
    model.KEYPOINT_SKELETON = tuple(tuple(int(i) for i in pair) for pair in skeleton)
    model.cfg = cfg
    return model.to(device).eval()


class _NamedClasses:
    """What the class-count check reads of a dataset, from a config's class names."""

    def __init__(self, classes):
        self.CLASSES = tuple(classes)


class LoadImageFromArray:
    """Pipeline step for in-memory images: ``results["img"]`` (H, W, 3) BGR array."""

    def __call__(self, results):
        img = results["img"]
        results["filename"] = None
        results["ori_filename"] = None
        results["img_shape"] = img.shape
        results["ori_shape"] = img.shape
        results["img_fields"] = ["img"]
        return results


def _test_pipeline_steps(cfg):
    """A copy of the config's test pipeline steps (``data.test.pipeline``)."""
    data = cfg.get("data") or {}
    test = data.get("test") or {}
    if isinstance(test, (list, tuple)):
        test = test[0]
    steps = copy.deepcopy(list(test.get("pipeline") or cfg.get("test_pipeline") or []))
    if not steps:
        raise ValueError("inference_detector: the config has no data.test.pipeline")
    return steps


def _test_pipeline(cfg, from_array):
    steps = _test_pipeline_steps(cfg)
    if from_array:
        if isinstance(steps[0], dict) and steps[0].get("type") == "LoadImageFromFile":
            steps[0] = LoadImageFromArray()
        else:
            steps.insert(0, LoadImageFromArray())
    return Compose(steps)


def _prepare(img, cfg):
    if isinstance(img, np.ndarray):
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"inference_detector: expected an (H, W, 3) array, got {img.shape}")
        return _test_pipeline(cfg, True)(dict(img=img))
    return _test_pipeline(cfg, False)(dict(img_info=dict(filename=str(img)), img_prefix=None))


@torch.no_grad()
def inference_detector(model, imgs, slice=None):
    """Detections of one image or a list of images (paths or (H, W, 3) BGR uint8 arrays).

    Each image goes through the config's test pipeline (``data.test.pipeline``; for an array
    ``LoadImageFromFile`` is replaced by an in-memory loader) and the model with
    ``rescale=True``. Returns, per image, ``bbox_results`` (a list over classes of (n, 5)
    float32 ``[x1, y1, x2, y2, score]`` arrays in the original image) or, with masks,
    ``(bbox_results, segm_results)`` (an RPN: an (n, 5) array of proposals); a single
    result for a single input, a list for a list. This per-class format is made here, at
    the edge, from the predicted data samples (:func:`inference_detector_samples` returns
    the samples themselves).

    ``slice``: sliced inference for large images, e.g. ``dict(size=(640, 640),
    overlap=0.2)``: the model runs on overlapping tiles and their detections are merged
    (options: :func:`mmdet_like.apis.slicing.sliced_inference_samples`).
    """
    single = not isinstance(imgs, (list, tuple))
    samples = inference_detector_samples(model, [imgs] if single else list(imgs), slice=slice)
    num_classes = getattr(model, "num_classes", None)
    results = [to_legacy_result(s, num_classes) for s in samples]
    return results[0] if single else results


def _model_inputs(data):
    """One image's test-pipeline output -> (its list of augmented tensors, their samples)."""
    tensors = data["img"]
    if "data_samples" in data:
        samples = data["data_samples"]
    elif "img_metas" in data:  # a Collect pipeline
        samples = samples_from_lists(
            data["img_metas"] if isinstance(data["img_metas"], list) else [data["img_metas"]]
        )
    else:
        raise ValueError(
            "inference_detector: the test pipeline must end in PackDetInputs (or Collect)"
        )
    # one image: a list of its augmentations (MultiScaleFlipAug gives lists already)
    tensors = tensors if isinstance(tensors, (list, tuple)) else [tensors]
    samples = list(samples) if isinstance(samples, (list, tuple)) else [samples]
    return tensors, samples


@torch.no_grad()
def inference_detector_samples(model, imgs, batch_size=1, slice=None):
    """As :func:`inference_detector`, but returns one :class:`DetDataSample` per image
    with ``pred_instances`` (``bboxes``, ``scores``, ``labels`` [, ``masks`` (n, H, W)
    bool]) in the original image. ``batch_size`` images run through the model at a time
    (padded to the largest of them); ``slice``: as in :func:`inference_detector`."""
    if slice is not None:
        # imported here: mmdet_like.apis.slicing runs its tiles through this module
        from mmdet_like.apis.slicing import check_slice_options, sliced_inference_samples

        options = check_slice_options(slice)
        return [sliced_inference_samples(model, img, **options) for img in imgs]
    device = next(model.parameters()).device
    step = max(int(batch_size), 1)
    out = []
    for start in range(0, len(imgs), step):
        batch = [_model_inputs(_prepare(img, model.cfg)) for img in imgs[start : start + step]]
        tensors = [[t.to(device) for t in augs] for augs, _ in batch]
        samples = [augs for _, augs in batch]
        out.extend(model(img=tensors, data_samples=samples, return_loss=False, rescale=True))
    return out


def show_result(img, result, class_names=None, score_thr=0.3, out_file=None, skeleton=(),
                thickness=None, font_scale=None, palette="default"):  # fmt: skip
    """Draw boxes, labels ("``class 0.93``" on a filled rectangle), masks (translucent) and
    keypoints (joined by ``skeleton``'s 0-based index pairs, e.g. ``model.KEYPOINT_SKELETON``)
    of ``result`` (from :func:`inference_detector`) scoring at least ``score_thr`` on a copy
    of ``img`` (a path or BGR array); write it to ``out_file`` when given. Returns the drawn
    image. ``thickness`` (line width, px), ``font_scale`` (None: both from the image size)
    and ``palette`` (``'default'``, ``'tab10'``, ``'tab20'``, ``'random'`` or RGB tuples):
    :mod:`mmdet_like.visualization.draw`."""
    style = DrawStyle.of(thickness, font_scale, palette)  # checked before the image is read
    image = mmcv.imread(img) if isinstance(img, str) else np.asarray(img)
    drawn = draw_result(image, result, class_names, score_thr=score_thr, skeleton=skeleton,
                        style=style)  # fmt: skip
    if out_file is not None:
        mmcv.imwrite(drawn, out_file)
    return drawn
