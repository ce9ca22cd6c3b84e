"""Reference fixtures from mmdetection 3.3 itself, for tests/models/test_mmdet_fixtures.py.

Runs in the side environment that ``make mmdet-side-env`` builds (Python 3.11, torch 2.9.1,
mmcv 2.1.0 compiled from source, mmdet 3.3.0, mmpretrain for ConvNeXt); never in ours, and
nothing here imports mmdet_like:

    make mmdet-fixtures      # = mmdet-side-env/bin/python tools/dev/make_mmdet_fixtures.py

Writes to tests/fixtures/mmdet/:

- ``atss.pth``, ``gfl.pth``: mmdetection's own ATSS / GFL R-50 configs (read from the mmdet
  package) with the channels cut down (ResNet-50 of base width 4, a 16-channel FPN and head,
  GroupNorm of 4 groups, 4 classes) so the files stay small; the code path is the released
  one. Seeded, initialised by mmdetection, then trained 30 SGD steps on two real photographs
  (scikit-image's ``coffee`` and ``astronaut``, 320 x 480 crops) with hand-placed boxes, so
  that the scores are spread out. Saved: the state dict (mmdetection's names), the targets,
  the inputs' sum (the test remakes them from scikit-image), the assignment of every anchor
  (``AssignResult.gt_inds``, ``labels``, ``max_overlaps``), the losses, the gradients of every
  head parameter, and the detections of both images (``rescale=False``).
- ``state_dict_names.json``: the parameter names and shapes of mmdetection's full-size models
  (and the values of Swin's relative position indices) of every family
  ``tools/model_converters/mmdet2ours.py`` converts, from mmdetection's own configs; the
  converter test reads them instead of names we wrote.

Every file holds only tensors and plain types (``torch.load(weights_only=True)``).
"""

import argparse
import json
import os
import os.path as osp
import sys

import numpy as np
import torch

HERE = osp.dirname(osp.abspath(__file__))
OUT = osp.join(HERE, "..", "..", "tests", "fixtures", "mmdet")
SEED = 0
STEPS = 30
# scikit-image photographs, cropped (rows, cols) to 320 x 480; boxes (x1, y1, x2, y2) and
# labels placed by hand on the objects
PHOTOS = [
    dict(name="coffee", crop=(0, 320, 0, 480),
         boxes=[[170, 15, 410, 290], [75, 70, 480, 320], [322, 65, 425, 320]], labels=[0, 1, 2]),
    dict(name="astronaut", crop=(0, 320, 16, 496),
         boxes=[[20, 15, 345, 320], [335, 0, 455, 290], [0, 0, 80, 320]], labels=[3, 2, 1]),
]  # fmt: skip
MEAN = [123.675, 116.28, 103.53]
STD = [58.395, 57.12, 57.375]
# the reduced model: same code, fewer channels
BASE = 4
FPN_CHANNELS = 16
NUM_CLASSES = 4
GN = dict(type="GN", num_groups=4, requires_grad=True)
DENSE = {
    "atss": "atss/atss_r50_fpn_1x_coco.py",
    "gfl": "gfl/gfl_r50_fpn_1x_coco.py",
}
# mmdet2ours's families: mmdetection 3.3 config -> the name the test uses
FAMILIES = {
    "rpn": "rpn/rpn_r50_fpn_1x_coco.py",
    "faster_rcnn": "faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py",
    "mask_rcnn": "mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py",
    "mask_rcnn_x101": "mask_rcnn/mask-rcnn_x101-32x4d_fpn_1x_coco.py",
    "cascade_rcnn": "cascade_rcnn/cascade-rcnn_r50_fpn_1x_coco.py",
    "cascade_mask_rcnn": "cascade_rcnn/cascade-mask-rcnn_r50_fpn_1x_coco.py",
    "retinanet": "retinanet/retinanet_r50_fpn_1x_coco.py",
    "fcos": "fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py",
    "atss": "atss/atss_r50_fpn_1x_coco.py",
    "gfl": "gfl/gfl_r50_fpn_1x_coco.py",
    "mask_rcnn_swin_t": "swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py",
    "mask_rcnn_convnext_t": "convnext/mask-rcnn_convnext-t-p4-w7_fpn_amp-ms-crop-3x_coco.py",
}


def mmdet_configs():
    import mmdet

    root = osp.join(osp.dirname(mmdet.__file__), ".mim", "configs")
    if not osp.isdir(root):
        sys.exit(f"mmdet {mmdet.__version__} at {osp.dirname(mmdet.__file__)} ships no configs")
    return root


def photographs():
    """(2, 3, 320, 480) normalised RGB inputs and the per-image targets."""
    import skimage.data

    images = []
    for photo in PHOTOS:
        r0, r1, c0, c1 = photo["crop"]
        rgb = getattr(skimage.data, photo["name"])()[r0:r1, c0:c1].astype(np.float32)
        images.append(torch.from_numpy((rgb - MEAN) / STD).permute(2, 0, 1).float())
    return torch.stack(images)


def data_samples(inputs):
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    height, width = inputs.shape[-2:]
    samples = []
    for photo in PHOTOS:
        sample = DetDataSample(
            metainfo=dict(
                img_shape=(height, width), ori_shape=(height, width),
                pad_shape=(height, width), batch_input_shape=(height, width),
                scale_factor=(1.0, 1.0),
            )
        )  # fmt: skip
        sample.gt_instances = InstanceData(
            bboxes=torch.tensor(photo["boxes"], dtype=torch.float32),
            labels=torch.tensor(photo["labels"]),
        )
        samples.append(sample)
    return samples


def reduced_dense_model(config):
    """mmdetection's config with fewer channels, built, seeded and initialised by it."""
    from mmdet.registry import MODELS
    from mmengine.config import Config

    cfg = Config.fromfile(osp.join(mmdet_configs(), config))
    cfg.model.backbone.update(base_channels=BASE, init_cfg=None)
    cfg.model.neck.update(in_channels=[BASE * 4 * 2**i for i in range(4)],
                          out_channels=FPN_CHANNELS)  # fmt: skip
    cfg.model.bbox_head.update(
        num_classes=NUM_CLASSES, in_channels=FPN_CHANNELS, feat_channels=FPN_CHANNELS,
        norm_cfg=GN,
    )  # fmt: skip
    torch.manual_seed(SEED)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return cfg, model


def record_assignments(head):
    """Wrap ``head.assigner.assign`` to keep every AssignResult it returns."""
    kept = []
    assign = head.assigner.assign

    def recording(*args, **kwargs):
        result = assign(*args, **kwargs)
        kept.append(result)
        return result

    head.assigner.assign = recording
    return kept


def total(value):
    """A loss: mmdetection's dense heads return one tensor per level."""
    return sum(value) if isinstance(value, (list, tuple)) else value


def dense_fixture(family):
    cfg, model = reduced_dense_model(DENSE[family])
    inputs = photographs()
    samples = data_samples(inputs)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for _ in range(STEPS):
        losses = model.loss(inputs, samples)
        loss = sum(total(v) for k, v in losses.items() if "loss" in k)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    # the fixture: at the trained weights
    model.zero_grad()
    assignments = record_assignments(model.bbox_head)
    losses = {k: total(v) for k, v in model.loss(inputs, samples).items() if "loss" in k}
    sum(losses.values()).backward()
    grads = {
        name: p.grad.detach().clone()
        for name, p in model.named_parameters()
        if name.startswith("bbox_head.") and p.grad is not None
    }
    model.eval()
    with torch.no_grad():
        predictions = model.predict(inputs, data_samples(inputs), rescale=False)
    return dict(
        source=dict(
            mmdet_config=DENSE[family],
            seed=SEED,
            steps=STEPS,
            base_channels=BASE,
            fpn_channels=FPN_CHANNELS,
            num_classes=NUM_CLASSES,
            gn_groups=GN["num_groups"],
            photos=PHOTOS,
            mean=MEAN,
            std=STD,
            versions=versions(),
            test_cfg=cfg.model.test_cfg.to_dict(),
            train_cfg=cfg.model.train_cfg.to_dict(),
        ),
        state_dict={k: v.detach().clone() for k, v in model.state_dict().items()},
        # the inputs themselves are remade from scikit-image by the test: their sum checks it
        inputs_sum=inputs.double().sum().item(),
        inputs_shape=list(inputs.shape),
        assignments=[
            dict(
                gt_inds=a.gt_inds.clone(),
                labels=a.labels.clone(),
                max_overlaps=a.max_overlaps.clone(),
            )
            for a in assignments
        ],  # fmt: skip
        losses={k: v.detach().clone() for k, v in losses.items()},
        grads=grads,
        detections=[
            dict(
                bboxes=p.pred_instances.bboxes.clone(),
                scores=p.pred_instances.scores.clone(),
                labels=p.pred_instances.labels.clone(),
            )
            for p in predictions
        ],  # fmt: skip
    )


def versions():
    import mmcv
    import mmdet
    import mmengine

    return dict(torch=str(torch.__version__), mmcv=mmcv.__version__, mmengine=mmengine.__version__,
                mmdet=mmdet.__version__)  # fmt: skip


def state_dict_names():
    """{family: {"config": ..., "names": {name: shape}}} of mmdetection's full-size models."""
    from mmdet.registry import MODELS
    from mmengine.config import Config

    out = dict(versions=versions(), families={})
    for family, config in FAMILIES.items():
        cfg = Config.fromfile(osp.join(mmdet_configs(), config))
        if "custom_imports" in cfg:  # ConvNeXt: mmpretrain's backbone
            from mmengine.utils import import_modules_from_strings

            import_modules_from_strings(**cfg.custom_imports)
        model = MODELS.build(cfg.model)
        state = model.state_dict()
        out["families"][family] = dict(
            config=config,
            names={k: list(v.shape) for k, v in state.items()},
            # integer buffers (Swin's relative position index) with their values: the
            # converter checks them
            int_buffers={
                k: v.tolist() for k, v in state.items()
                if not v.is_floating_point() and k.endswith("relative_position_index")
            },
        )  # fmt: skip
        print(f"{family}: {len(out['families'][family]['names'])} names", flush=True)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=OUT, help="folder of the fixture files")
    args = parser.parse_args(argv)
    from mmdet.utils import register_all_modules

    register_all_modules()
    os.makedirs(args.out, exist_ok=True)
    for family in DENSE:
        fixture = dense_fixture(family)
        path = osp.join(args.out, f"{family}.pth")
        torch.save(fixture, path + ".tmp")
        torch.load(path + ".tmp", weights_only=True)  # only tensors and plain types
        os.replace(path + ".tmp", path)
        losses = {k: round(v.item(), 5) for k, v in fixture["losses"].items()}
        counts = [len(d["scores"]) for d in fixture["detections"]]
        print(f"{path}: losses {losses}, {counts} detections", flush=True)
    names = state_dict_names()
    path = osp.join(args.out, "state_dict_names.json")
    with open(path + ".tmp", "w") as f:
        json.dump(names, f, indent=0, sort_keys=True)
    os.replace(path + ".tmp", path)
    print(f"{path}: {len(names['families'])} families")


if __name__ == "__main__":
    main()
