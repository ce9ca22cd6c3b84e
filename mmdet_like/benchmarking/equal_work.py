"""Equal work for the detector benchmarks (``tools/benchmark_train.py``, ``tools/benchmark.py``):
the two models (ours from a config, the reference: torchvision's ``maskrcnn_resnet50_fpn``,
``keypointrcnn_resnet50_fpn``, ``retinanet_resnet50_fpn`` or ``fcos_resnet50_fpn``, or
transformers' DETR and Deformable DETR: ``--model``) with the same random weights, and the
same inputs in each side's format.

Each entry of ``MODELS`` names its reference library (``reference``). torchvision's models
are built here; transformers' pair lives in ``mmdet_like/benchmarking/transformers_pair.py``
(its own equal-work notes). torchvision and transformers are imported only by these
functions (never by our models).

Equal work, the torchvision pairs:

- Weights: torchvision's model is built with a fixed seed and random weights, and its state
  dict is converted into ours (``tools/convert_torchvision_detection.py``'s mapping), so the
  two models start from the same numbers. Both train the same layers: the stem and the first
  stage frozen, batch-norm statistics fixed (our ``frozen_stages=1, norm_eval=True``;
  torchvision's frozen batch norm and ``trainable_backbone_layers=3``, which is what its
  detection builders do when they start from ImageNet weights). For Mask R-CNN our
  batch-norm scales and shifts of stages 2-4 stay trainable (mmdetection's setting);
  torchvision's are frozen, so we do slightly more work. The torchvision configs of RetinaNet
  and FCOS freeze them as torchvision does.
- Inputs: 2 images of 800 x 1216 (torchvision's transform keeps that size: the short side is
  800 and the long side under 1333; both sides are multiples of 32, so neither pads), each
  with 5 boxes (and their masks for Mask R-CNN; for Keypoint R-CNN, all persons with 17
  keypoints each, a fifth of them unlabelled), the same tensors on both sides.
- Classifier: with random weights every class scores about 1/81 (RetinaNet and FCOS: the 0.01
  prior), below the score threshold, and inference would return nothing (no NMS, no masks).
  The benchmark scales the classifier's weights (the same factor on both sides) so that scores
  vary between candidates (RetinaNet: and raises three classes' biases to -1.5, for several
  hundred candidates above the threshold), and checks that both models return the same number
  of detections per image. torchvision's RetinaNet and FCOS classifiers have a channel for the
  background class 0, which our converter drops; it is switched off on torchvision's side
  (bias -100, weights 0) so that it never scores above the threshold. It still costs
  torchvision 1/81 more classifier and focal-loss work, a share too small to matter.
- Anchors: torchvision derives each level's stride from the image size divided by the
  feature size; at 800 rows P6 (13 rows) and P7 (7 rows) get strides of 61 and 114 instead
  of 64 and 128, so their anchors sit slightly differently. The amount of work is the same.
"""

import os

import numpy as np
import torch

from mmdet_like.engine import load_config
from mmdet_like.models import build_detector
from mmdet_like.models.utils.torchvision_detection import convert_torchvision_detection
from mmdet_like.structures import BitmapMasks, DetDataSample, InstanceData

# The repository root: relative config paths are read from there (an editable install).
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

IMAGE_HEIGHT, IMAGE_WIDTH = 800, 1216
NUM_IMAGES, NUM_BOXES, NUM_CLASSES = 2, 5, 80
CLASSIFIER_SCALE = 300.0
MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)
# --model: the reference library and its builder (torchvision) or class (transformers), our
# config computing what it computes, (torchvision) the scale of its classifier's weights
# (see the module doc), and (``grad_clip``) the gradient norm the training benchmark clips
# to before its SGD step on both sides (the DETRs' configs train so; unclipped, the random
# Deformable DETR's losses diverge within a few SGD steps).
MODELS = {
    "maskrcnn": dict(
        reference="torchvision",
        torchvision="maskrcnn_resnet50_fpn",
        config="configs/torchvision/mask_rcnn_r50_fpn_torchvision.py",
        classifier_scale=CLASSIFIER_SCALE,
        masks=True,
    ),
    "keypoint_rcnn": dict(
        reference="torchvision",
        torchvision="keypointrcnn_resnet50_fpn",
        config="configs/torchvision/keypoint_rcnn_r50_fpn_torchvision.py",
        classifier_scale=20.0,
        masks=False,
        keypoints=True,
    ),
    "retinanet": dict(
        reference="torchvision",
        torchvision="retinanet_resnet50_fpn",
        config="configs/torchvision/retinanet_r50_fpn_torchvision.py",
        classifier_scale=4.0,
        raised_class_bias=-1.5,
        masks=False,
    ),
    "fcos": dict(
        reference="torchvision",
        torchvision="fcos_resnet50_fpn",
        config="configs/torchvision/fcos_r50_fpn_torchvision.py",
        classifier_scale=4.0,
        raised_class_bias=None,
        masks=False,
    ),
    "detr": dict(
        reference="transformers",
        transformers="DetrForObjectDetection",
        config="configs/transformers/detr_r50_transformers.py",
        masks=False,
        grad_clip=0.1,
    ),
    "deformable_detr": dict(
        reference="transformers",
        transformers="DeformableDetrForObjectDetection",
        config="configs/transformers/deformable_detr_r50_transformers.py",
        masks=False,
        grad_clip=0.1,
    ),
}
DEFAULT_MODEL = "maskrcnn"
DEFAULT_CONFIG = MODELS[DEFAULT_MODEL]["config"]


NUM_KEYPOINTS = 17


def make_inputs(seed=0):
    """2 images (uint8 HWC numpy, RGB) of 800 x 1216 with 5 boxes, labels and masks each.

    Objects are ellipses of 60 to 400 pixels drawn on smooth noise, so that the image is not
    constant and the masks are not boxes."""
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(NUM_IMAGES):
        coarse = rng.integers(0, 256, (IMAGE_HEIGHT // 16, IMAGE_WIDTH // 16, 3), np.uint8)
        image = np.repeat(np.repeat(coarse, 16, axis=0), 16, axis=1)
        masks = np.zeros((NUM_BOXES, IMAGE_HEIGHT, IMAGE_WIDTH), np.uint8)
        boxes = np.zeros((NUM_BOXES, 4), np.float32)
        yy, xx = np.mgrid[:IMAGE_HEIGHT, :IMAGE_WIDTH]
        for k in range(NUM_BOXES):
            w, h = rng.uniform(60, 400, 2)
            x1 = rng.uniform(0, IMAGE_WIDTH - w)
            y1 = rng.uniform(0, IMAGE_HEIGHT - h)
            cx, cy = x1 + w / 2, y1 + h / 2
            inside = ((xx - cx) / (w / 2)) ** 2 + ((yy - cy) / (h / 2)) ** 2 <= 1
            masks[k] = inside
            ys, xs = np.nonzero(inside)
            boxes[k] = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            image[inside] = rng.integers(0, 256, 3, np.uint8)
        labels = rng.integers(0, NUM_CLASSES, NUM_BOXES)
        samples.append(dict(image=image, boxes=boxes, labels=labels, masks=masks))
    # keypoints (Keypoint R-CNN) from a generator of their own: the draws above stay as
    # they were
    points_rng = np.random.default_rng(seed + 1000)
    for sample in samples:
        boxes = sample["boxes"]
        u = points_rng.uniform(0, 1, (NUM_BOXES, NUM_KEYPOINTS, 2))
        xy = boxes[:, None, :2] + u * (boxes[:, None, 2:] - boxes[:, None, :2])
        visibility = np.where(points_rng.uniform(0, 1, (NUM_BOXES, NUM_KEYPOINTS)) < 0.2, 0, 2)
        keypoints = np.concatenate([xy * (visibility[..., None] > 0), visibility[..., None]], 2)
        sample["keypoints"] = keypoints.astype(np.float32)
    return samples


def randomise_norm_statistics(model, seed, types):
    """Give every module of ``types`` (batch norms) random scales, shifts and variances
    (from a generator seeded with ``seed``, in module order), so that the activations of a
    randomly initialised network have a realistic range; call under ``torch.no_grad()``.

    A batch norm with fixed statistics starts as the identity (scale 1, shift 0, variance 1),
    which no trained network has."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, types):
            n = module.running_var.numel()
            weight = torch.rand(n, generator=generator) * 0.5 + 0.5
            bias = torch.randn(n, generator=generator) * 0.1
            running_var = torch.rand(n, generator=generator) * 0.5 + 0.75
            if module.weight is not None:  # affine=False: no scale and shift
                module.weight.copy_(weight)
                module.bias.copy_(bias)
            module.running_var.copy_(running_var)


def _random_frozen_statistics(model, seed):
    """FrozenBatchNorm2d starts as the identity; give it random statistics so that the
    activations have a realistic range (the same numbers go into our model)."""
    from torchvision.ops import FrozenBatchNorm2d

    randomise_norm_statistics(model, seed, FrozenBatchNorm2d)


def _dense_detector(name, seed):
    """torchvision's RetinaNet or FCOS R50-FPN (v1: P6/P7 from P5) with frozen batch norms
    and the stem and first stage frozen, as its builder makes it from ImageNet weights."""
    from torchvision.models import resnet50
    from torchvision.models.detection import FCOS, RetinaNet
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.ops import FrozenBatchNorm2d
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    torch.manual_seed(seed)
    body = resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
    backbone = _resnet_fpn_extractor(
        body, 3, returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(256, 256)
    )
    detector = RetinaNet if name == "retinanet" else FCOS
    model = detector(backbone, num_classes=NUM_CLASSES + 1)
    head = model.head.classification_head
    with torch.no_grad():
        head.cls_logits.weight.mul_(MODELS[name]["classifier_scale"])
        weight = head.cls_logits.weight.view(-1, NUM_CLASSES + 1, *head.cls_logits.weight.shape[1:])
        weight[:, 0] = 0.0  # the background channel, which our converter drops: off
        bias = head.cls_logits.bias.view(-1, NUM_CLASSES + 1)  # (anchors, classes)
        bias[:, 0] = -100.0
        if MODELS[name]["raised_class_bias"] is not None:
            bias[:, 1:4] = MODELS[name]["raised_class_bias"]
    return model


def _keypoint_rcnn(seed):
    """torchvision's Keypoint R-CNN R50-FPN (person + background, 17 keypoints) with frozen
    batch norms and trainable_backbone_layers=3, one image size (800; torchvision's default
    for this model draws one of six sizes per training batch)."""
    from torchvision.models.detection import KeypointRCNN
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
    from torchvision.ops import FrozenBatchNorm2d

    torch.manual_seed(seed)
    backbone = resnet_fpn_backbone(
        backbone_name="resnet50", weights=None, norm_layer=FrozenBatchNorm2d, trainable_layers=3
    )
    model = KeypointRCNN(
        backbone, num_classes=2, num_keypoints=NUM_KEYPOINTS, min_size=IMAGE_HEIGHT,
        max_size=1333, box_score_thresh=0.05,
    )  # fmt: skip
    with torch.no_grad():
        _random_frozen_statistics(model, seed)
        model.roi_heads.box_predictor.cls_score.weight.mul_(
            MODELS["keypoint_rcnn"]["classifier_scale"]
        )
    return model


def torchvision_model(seed=0, model=DEFAULT_MODEL):
    """torchvision's ``model`` (a key of ``MODELS``) with random weights, trained as from
    ImageNet weights."""
    if model not in MODELS:
        raise ValueError(f"unknown benchmark model {model!r}; choose one of {sorted(MODELS)}")
    if MODELS[model]["reference"] != "torchvision":
        raise ValueError(
            f"benchmark model {model!r} has {MODELS[model]['reference']} as its reference, "
            "not torchvision (mmdet_like/benchmarking/transformers_pair.py builds it)"
        )
    if model == "keypoint_rcnn":
        return _keypoint_rcnn(seed)
    if model != "maskrcnn":
        tv_model = _dense_detector(model, seed)
        with torch.no_grad():
            _random_frozen_statistics(tv_model, seed)
        return tv_model
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
    from torchvision.ops import FrozenBatchNorm2d

    torch.manual_seed(seed)
    backbone = resnet_fpn_backbone(
        backbone_name="resnet50", weights=None, norm_layer=FrozenBatchNorm2d, trainable_layers=3
    )
    tv_model = MaskRCNN(backbone, num_classes=NUM_CLASSES + 1, box_score_thresh=0.05)
    with torch.no_grad():
        _random_frozen_statistics(tv_model, seed)
        tv_model.roi_heads.box_predictor.cls_score.weight.mul_(CLASSIFIER_SCALE)
    return tv_model


# the last layers whose outputs rank or pick boxes: scores, mask logits, keypoint heatmaps
PREDICTION_LAYERS = ("rpn_cls", "fc_cls", "conv_logits", "retina_cls", "conv_cls", "deconv")


def spread_prediction_layers(model, std=0.3):
    """Re-draw ``model``'s classifiers (and mask-logit and keypoint-heatmap layers) with
    weights of std ``std``: an untrained model scores every box about the same, and which of
    near-equal scores wins NMS (or an argmax) is then decided by rounding, differently in
    each runtime. Box regressors are left alone (spread deltas move boxes by exp(delta))."""
    with torch.no_grad():
        for name, module in model.named_modules():
            if name.rsplit(".", 1)[-1] in PREDICTION_LAYERS:
                torch.nn.init.normal_(module.weight, std=std)
    return model


def our_model(config, torchvision_state):
    """Our detector from ``config`` with the converted weights of torchvision's model."""
    cfg = load_config(os.path.join(ROOT, config) if not os.path.isabs(config) else config)
    cfg.model.pretrained = None
    model = build_detector(cfg.model, cfg.get("train_cfg"), cfg.get("test_cfg"))
    state, _ = convert_torchvision_detection(torchvision_state)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if not k.endswith("num_batches_tracked")]:
        raise RuntimeError(f"weights do not fit {config}: missing {missing}, extra {unexpected}")
    return model, cfg


def _transformers_pair():
    # imported here: it imports this module
    from mmdet_like.benchmarking import transformers_pair

    return transformers_pair


def _check_side(side):
    if side not in ("ours", "reference"):
        raise ValueError(f"benchmark side {side!r}: 'ours' or 'reference'")


def build_pair(side, config, device, seed=0, model=DEFAULT_MODEL, weights=None):
    """The ``model`` of ``side`` ('ours' or 'reference': the library ``MODELS[model]``
    names) on ``device``, plus our config (``None`` for the reference). ``weights``: the
    folder :func:`prepare_pair_weights` wrote, for the models whose weights it prepares."""
    _check_side(side)
    if model not in MODELS:
        raise ValueError(f"unknown benchmark model {model!r}; choose one of {sorted(MODELS)}")
    if MODELS[model]["reference"] == "transformers":
        return _transformers_pair().build_pair(side, config, device, model, weights, seed)
    tv_model = torchvision_model(seed, model)
    if side == "reference":
        return tv_model.to(device), None
    model, cfg = our_model(config, tv_model.state_dict())
    return model.to(device), cfg


def prepare_pair_weights(model, folder, seed=0):
    """Write the weights of both sides of ``model`` into ``folder`` once, before the
    children run (the transformers pairs: so that our side's process never imports
    transformers); returns the folder, or ``None`` where each child builds its weights
    itself (the torchvision pairs)."""
    if MODELS[model]["reference"] == "transformers":
        return _transformers_pair().save_pair_weights(model, folder, seed)
    return None


def reference_inference(model, net, samples, device):
    """A call running the reference ``net`` of ``model`` on ``samples`` (the normalised
    batch in its format made once, here) to its final per-image detections; each call
    returns the detections per image (a list of ints)."""
    if MODELS[model]["reference"] == "transformers":
        return _transformers_pair().reference_inference(model, net, samples, device)
    images, _ = torchvision_batch(samples, device, train=False)

    def infer():
        return [len(o["boxes"]) for o in net(images)]

    return infer


def reference_training_loss(model, net, samples, device):
    """A call computing the reference ``net``'s total training loss of ``model`` on
    ``samples`` (their boxes, and masks or keypoints where ``MODELS`` asks) in its format;
    each call returns the scalar loss."""
    if MODELS[model]["reference"] == "transformers":
        return _transformers_pair().reference_training_loss(model, net, samples, device)
    masks = MODELS[model]["masks"]
    keypoints = MODELS[model].get("keypoints", False)
    images, targets = torchvision_batch(samples, device, masks=masks, keypoints=keypoints)

    def losses():
        return sum(net(images, targets).values())

    return losses


def our_batch(samples, device, train=True, masks=True, keypoints=False):
    """Our forward arguments for the samples (images of one size): the normalised
    (N, 3, H, W) batch and one data sample per image (with its boxes, labels, and masks if
    ``masks``, when ``train``; with ``keypoints``, every box a person (label 0) with its
    keypoints)."""
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    images = torch.stack([torch.from_numpy(s["image"]).permute(2, 0, 1) for s in samples])
    img = ((images.float() - mean) / std).to(device)
    height, width = images.shape[-2:]  # make_inputs': IMAGE_HEIGHT x IMAGE_WIDTH
    shape = (height, width, 3)
    meta = dict(ori_shape=shape, img_shape=shape, pad_shape=shape,
                scale_factor=np.ones(4, np.float32), flip=False)  # fmt: skip
    data_samples = []
    for s in samples:
        gt = InstanceData()
        if train:
            labels = torch.from_numpy(s["labels"]).to(device)
            gt = InstanceData(
                bboxes=torch.from_numpy(s["boxes"]).to(device),
                labels=torch.zeros_like(labels) if keypoints else labels,
            )
            if masks:
                gt.masks = BitmapMasks(s["masks"], height, width)
            if keypoints:
                gt.keypoints = torch.from_numpy(s["keypoints"]).to(device)
        data_samples.append(DetDataSample(dict(meta), gt_instances=gt))
    return dict(img=img, data_samples=data_samples)


def torchvision_batch(samples, device, train=True, masks=True, keypoints=False):
    """torchvision's forward arguments: images in [0, 1] and targets (labels 1-based; masks
    if ``masks``; with ``keypoints``, every box a person (label 1) with its keypoints)."""
    images = [
        (torch.from_numpy(s["image"]).permute(2, 0, 1).float() / 255).to(device) for s in samples
    ]
    if not train:
        return images, None
    targets = []
    for s in samples:
        labels = np.ones_like(s["labels"]) if keypoints else s["labels"] + 1
        target = dict(
            boxes=torch.from_numpy(s["boxes"]).to(device),
            labels=torch.from_numpy(labels).to(device),
        )
        if masks:
            target["masks"] = torch.from_numpy(s["masks"]).to(device)
        if keypoints:
            target["keypoints"] = torch.from_numpy(s["keypoints"]).to(device)
        targets.append(target)
    return images, targets
