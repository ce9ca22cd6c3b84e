"""Shared parts of ``tools/benchmark_train.py`` and ``tools/benchmark.py``: the two models
(ours from a config, torchvision's ``maskrcnn_resnet50_fpn``) with the same random weights,
the same inputs, and a child-process runner that measures time and peak memory.

Equal work:

- Weights: torchvision's model is built with a fixed seed and random weights, and its state
  dict is converted into ours (``tools/convert_torchvision_detection.py``'s mapping), so the
  two models start from the same numbers. Both train the same layers: the stem and the first
  stage frozen, batch-norm statistics fixed (our ``frozen_stages=1, norm_eval=True``;
  torchvision's frozen batch norm and ``trainable_backbone_layers=3``, which is what its
  ``maskrcnn_resnet50_fpn`` does when it starts from ImageNet weights). Our batch-norm
  scales and shifts of stages 2-4 stay trainable (mmdetection's setting); torchvision's are
  frozen, so we do slightly more work.
- Inputs: 2 images of 800 x 1216 (torchvision's transform keeps that size: the short side is
  800 and the long side under 1333; both sides are multiples of 32, so neither pads), each
  with 5 boxes and their masks, the same tensors on both sides.
- Classifier: with random weights every class scores about 1/81, below the 0.05 score
  threshold, and inference would return nothing (no NMS, no masks). The benchmark scales the
  box classifier's weights (the same factor on both sides) so that each proposal has a clear
  winner, and checks that both models return the same number of detections per image.
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
import torchvision

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from mmdet_like.engine import load_config  # noqa: E402
from mmdet_like.models import build_detector  # noqa: E402
from mmdet_like.models.utils.torchvision_detection import (  # noqa: E402
    convert_torchvision_detection,
)
from mmdet_like.structures import BitmapMasks  # noqa: E402

IMAGE_HEIGHT, IMAGE_WIDTH = 800, 1216
NUM_IMAGES, NUM_BOXES, NUM_CLASSES = 2, 5, 80
CLASSIFIER_SCALE = 300.0
MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)
DEFAULT_CONFIG = "configs/torchvision/mask_rcnn_r50_fpn_torchvision.py"


def machine_line(device):
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"
    return f"{name}; torch {torch.__version__}, torchvision {torchvision.__version__}"


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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
    return samples


def torchvision_model(seed=0):
    """torchvision's Mask R-CNN R50-FPN, random weights, trained as from ImageNet weights."""
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
    from torchvision.ops import FrozenBatchNorm2d

    torch.manual_seed(seed)
    backbone = resnet_fpn_backbone(
        backbone_name="resnet50", weights=None, norm_layer=FrozenBatchNorm2d, trainable_layers=3
    )
    model = MaskRCNN(backbone, num_classes=NUM_CLASSES + 1, box_score_thresh=0.05)
    # FrozenBatchNorm2d starts as the identity; give it random statistics so that the
    # activations have a realistic range (the same numbers go into our model).
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, FrozenBatchNorm2d):
            n = module.weight.numel()
            module.weight.copy_(torch.rand(n, generator=generator) * 0.5 + 0.5)
            module.bias.copy_(torch.randn(n, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(n, generator=generator) * 0.5 + 0.75)
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.weight.mul_(CLASSIFIER_SCALE)
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


def build_pair(side, config, device, seed=0):
    """The model of ``side`` ('ours' or 'torchvision') on ``device``, plus our config."""
    tv_model = torchvision_model(seed)
    if side == "torchvision":
        return tv_model.to(device), None
    model, cfg = our_model(config, tv_model.state_dict())
    return model.to(device), cfg


def our_batch(samples, device, train=True):
    """Our forward arguments for the samples (normalised (N, 3, H, W) batch and metas)."""
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    images = torch.stack([torch.from_numpy(s["image"]).permute(2, 0, 1) for s in samples])
    img = ((images.float() - mean) / std).to(device)
    metas = [
        dict(
            ori_shape=(IMAGE_HEIGHT, IMAGE_WIDTH, 3),
            img_shape=(IMAGE_HEIGHT, IMAGE_WIDTH, 3),
            pad_shape=(IMAGE_HEIGHT, IMAGE_WIDTH, 3),
            scale_factor=np.ones(4, np.float32),
            flip=False,
        )
        for _ in samples
    ]
    batch = dict(img=img, img_metas=metas)
    if train:
        batch.update(
            gt_bboxes=[torch.from_numpy(s["boxes"]).to(device) for s in samples],
            gt_labels=[torch.from_numpy(s["labels"]).to(device) for s in samples],
            gt_masks=[BitmapMasks(s["masks"], IMAGE_HEIGHT, IMAGE_WIDTH) for s in samples],
        )
    return batch


def torchvision_batch(samples, device, train=True):
    """torchvision's forward arguments: images in [0, 1] and targets (labels 1-based)."""
    images = [
        (torch.from_numpy(s["image"]).permute(2, 0, 1).float() / 255).to(device) for s in samples
    ]
    if not train:
        return images, None
    targets = [
        dict(
            boxes=torch.from_numpy(s["boxes"]).to(device),
            labels=torch.from_numpy(s["labels"] + 1).to(device),
            masks=torch.from_numpy(s["masks"]).to(device),
        )
        for s in samples
    ]
    return images, targets


def peak_memory_mb(device):
    """Peak memory of this process so far: CUDA allocator peak or host peak RSS (MiB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def time_calls(fn, device, iters, warmup):
    """Run ``fn`` ``warmup`` times, then time ``iters`` calls; list of seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


def run_child(script, args):
    """Run ``script --child ...`` in a fresh process (its own peak memory); its JSON result."""
    out = subprocess.run(
        [sys.executable, script, "--child", *args], capture_output=True, text=True, cwd=ROOT
    )
    if out.returncode != 0:
        raise RuntimeError(f"benchmark child {args} failed:\n{out.stdout}\n{out.stderr}")
    for line in reversed(out.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"benchmark child {args} printed no result:\n{out.stdout}\n{out.stderr}")


def emit_result(result):
    print("RESULT " + json.dumps(result), flush=True)


def write_section(path, marker, text):
    """Replace (or append) the block between ``<!-- marker begin/end -->`` in ``path``."""
    begin, end = f"<!-- {marker} begin -->", f"<!-- {marker} end -->"
    block = f"{begin}\n{text.rstrip()}\n{end}"
    content = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    if begin in content and end in content:
        head, rest = content.split(begin, 1)
        content = head + block + rest.split(end, 1)[1]
    else:
        content = content.rstrip() + "\n\n" + block + "\n"
    with open(path, "w") as f:
        f.write(content)


def parse_benchmark_args(description, default_iters):
    """Arguments shared by the detector benchmarks (and their hidden ``--child`` mode)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--config", action="append", help=f"our config (default {DEFAULT_CONFIG})")
    parser.add_argument("--iters", type=int, default=default_iters)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--amp", action="store_true", help="float16 autocast (GPU)")
    parser.add_argument("--out", help="markdown file to write the table into")
    parser.add_argument(
        "--torchvision-cached",
        action="store_true",
        help="add a row of torchvision run with our CPU caching allocator (which our side "
        "uses, as tools/train.py and tools/test.py do): how much of the gap is the allocator",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--side", choices=["ours", "torchvision"], help=argparse.SUPPRESS)
    parser.add_argument("--caching-allocator", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.config = args.config[0] if args.config else DEFAULT_CONFIG
    else:
        args.config = args.config or [DEFAULT_CONFIG]
    return args


TORCHVISION_CACHED = "torchvision+caching-allocator"


def row_label(key):
    """The table label of a key of ``run_rounds``' second result."""
    if key == TORCHVISION_CACHED:
        return "torchvision maskrcnn_resnet50_fpn + our CPU caching allocator"
    return f"ours, `{key}`"


def our_side_caches(device):
    """Whether our side runs with the CPU caching allocator: on the CPU, as the tools do
    (``MMDET_LIKE_CPU_CACHING_ALLOCATOR=0`` switches it off for both)."""
    from mmdet_like.ops import cpu_caching_allocator_switched_on

    return device == "cpu" and cpu_caching_allocator_switched_on()


def prepare_child(args):
    """In a child: switch on the CPU caching allocator if the parent asked for it."""
    if args.caching_allocator:
        from mmdet_like.ops import enable_cpu_caching_allocator

        if not enable_cpu_caching_allocator():
            raise RuntimeError("the CPU caching allocator could not be installed")


def run_rounds(script, args):
    """``args.rounds`` rounds of child runs, torchvision then each of ``args.config`` (then
    torchvision with our CPU caching allocator if ``args.torchvision_cached``):
    ``(torchvision results, {config or TORCHVISION_CACHED: results})``."""
    common = ["--device", args.device, "--iters", str(args.iters), "--warmup", str(args.warmup)]
    common += ["--amp"] if args.amp else []
    cache = ["--caching-allocator"] if our_side_caches(args.device) else []
    extra = {c: ["--side", "ours", "--config", c] + cache for c in args.config}
    if args.torchvision_cached:
        extra[TORCHVISION_CACHED] = ["--side", "torchvision", "--caching-allocator"]
    tv_runs, other_runs = [], {key: [] for key in extra}
    for round_index in range(args.rounds):
        tv_runs.append(run_child(script, common + ["--side", "torchvision"]))
        print(f"round {round_index}: torchvision {tv_runs[-1]}", flush=True)
        for key, side_args in extra.items():
            result = run_child(script, common + side_args)
            other_runs[key].append(result)
            print(f"round {round_index}: {key} {result}", flush=True)
    return tv_runs, other_runs


def summarise(results):
    """One side's rounds -> its best round: the fastest time, that round's median, the
    lowest peak memory (and, for inference, the detections per image)."""
    best = min(results, key=lambda r: min(r["times"]))
    summary = dict(
        best=min(best["times"]),
        median=statistics.median(best["times"]),
        peak_mb=min(r["peak_mb"] for r in results),
        machine=best["machine"],
    )
    if "detections" in best:
        summary["detections"] = best["detections"]
    return summary
