"""Reference fixtures from mmdetection 3.3 itself, for tests/models/test_mmdet_fixtures.py and
test_mmdet_dino_fixture.py.

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
- ``dino.pth``: mmdetection's own DINO-4scale R-50 config, reduced (ResNet-50 of base width
  4, embed dims 32 (8 heads, FFN 64), 2 encoder and 2 decoder layers, 30 queries, about 12
  denoising queries, 4 classes), seeded, initialised and trained 40 AdamW steps by
  mmdetection on the same photographs and boxes. Saved: the state dict, the inputs' sum,
  the losses of one training forward (denoising on: the global generator seeded with
  ``DN_SEED`` just before it, so that the denoising queries are the draws of that seed),
  those queries with their attention mask and groups, the gradients of every parameter
  outside the backbone, and the detections (``rescale=False``). One call is widened:
  mmdetection 3.3's ``DinoTransformerDecoder`` calls ``coordinate_to_encoding`` with its
  default ``num_feats=128`` while its ``ref_point_head`` takes ``2 * embed_dims`` inputs,
  so the released DINO builds only at embed dims 256 (a 2 + 2-layer model at that width is
  some 10 MB of weights and as many of gradients); for this run that call gets
  ``num_feats=embed_dims // 2`` (which is 128 at 256, and what our decoder always passes).
  Everything else is the released code.
- ``state_dict_names.json``: the parameter names and shapes of mmdetection's full-size models
  (and the values of Swin's relative position indices) of every family
  ``tools/model_converters/mmdet2ours.py`` converts, from mmdetection's own configs; the
  converter test reads them instead of names we wrote.

Every file holds only tensors and plain types (``torch.load(weights_only=True)``).
"""

import argparse
import functools
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
    "detr": "detr/detr_r50_8xb2-150e_coco.py",
    "deformable_detr": "deformable_detr/deformable-detr_r50_16xb2-50e_coco.py",
    "deformable_detr_refine": "deformable_detr/deformable-detr-refine_r50_16xb2-50e_coco.py",
    "deformable_detr_twostage": "deformable_detr/"
    "deformable-detr-refine-twostage_r50_16xb2-50e_coco.py",
    "dino_4scale": "dino/dino-4scale_r50_8xb2-12e_coco.py",
}
# the reduced DINO: mmdetection's DINO-4scale with these cuts
DINO_CONFIG = "dino/dino-4scale_r50_8xb2-12e_coco.py"
DINO = dict(
    base_channels=BASE, embed_dims=32, num_heads=8, feedforward_channels=64, encoder_layers=2,
    decoder_layers=2, num_queries=30, num_dn_queries=12, num_classes=NUM_CLASSES,
    gn_groups=8, max_per_img=50,
)  # fmt: skip
DINO_STEPS = 40
DINO_LR = 1e-3
DN_SEED = 1  # seeds the global generator just before the recorded training forward


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


def reduced_dino():
    """mmdetection's DINO-4scale config with the cuts of ``DINO``, built, seeded and
    initialised by it."""
    from mmdet.registry import MODELS
    from mmengine.config import Config

    cut = DINO
    dims = cut["embed_dims"]
    cfg = Config.fromfile(osp.join(mmdet_configs(), DINO_CONFIG))
    model = cfg.model
    model.num_queries = cut["num_queries"]
    model.backbone.update(base_channels=cut["base_channels"], init_cfg=None)
    model.neck.update(
        in_channels=[cut["base_channels"] * 4 * 2**i for i in (1, 2, 3)], out_channels=dims,
        norm_cfg=dict(type="GN", num_groups=cut["gn_groups"]),
    )  # fmt: skip
    deform = dict(embed_dims=dims, num_heads=cut["num_heads"])
    ffn = dict(embed_dims=dims, feedforward_channels=cut["feedforward_channels"])
    model.encoder.num_layers = cut["encoder_layers"]
    model.encoder.layer_cfg.self_attn_cfg.update(deform)
    model.encoder.layer_cfg.ffn_cfg.update(ffn)
    model.decoder.num_layers = cut["decoder_layers"]
    model.decoder.layer_cfg.self_attn_cfg.update(deform)
    model.decoder.layer_cfg.cross_attn_cfg.update(deform)
    model.decoder.layer_cfg.ffn_cfg.update(ffn)
    model.positional_encoding.num_feats = dims // 2
    model.bbox_head.update(num_classes=cut["num_classes"], embed_dims=dims)
    model.dn_cfg.group_cfg.num_dn_queries = cut["num_dn_queries"]
    model.test_cfg.max_per_img = cut["max_per_img"]
    # mmdetection's DINO decoder encodes its reference boxes with num_feats=128, the width
    # of embed dims 256 only: at the reduced width, embed_dims // 2 (see the docstring)
    from mmdet.models.layers.transformer import dino_layers, utils

    dino_layers.coordinate_to_encoding = functools.partial(
        utils.coordinate_to_encoding, num_feats=dims // 2
    )
    torch.manual_seed(SEED)
    detector = MODELS.build(model)
    detector.init_weights()
    return cfg, detector


def record_dn_queries(model):
    """Wrap the class's ``CdnQueryGenerator.__call__`` (its forward) to keep what it returns;
    returns (the kept list, a function that restores the class)."""
    cls = type(model.dn_query_generator)
    original = cls.__call__
    kept = []

    def recording(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        kept.append(result)
        return result

    cls.__call__ = recording
    return kept, lambda: setattr(cls, "__call__", original)


def dino_fixture():
    cfg, model = reduced_dino()
    inputs = photographs()
    samples = data_samples(inputs)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=DINO_LR, weight_decay=1e-4)
    for _ in range(DINO_STEPS):
        losses = model.loss(inputs, samples)
        loss = sum(total(v) for k, v in losses.items() if "loss" in k)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        optimizer.step()
    # the fixture: at the trained weights, the denoising queries drawn from DN_SEED
    model.zero_grad()
    kept, restore = record_dn_queries(model)
    torch.manual_seed(DN_SEED)
    try:
        losses = {k: total(v) for k, v in model.loss(inputs, samples).items() if "loss" in k}
    finally:
        restore()
    sum(losses.values()).backward()
    grads = {
        name: p.grad.detach().clone()
        for name, p in model.named_parameters()
        if not name.startswith("backbone.") and p.grad is not None
    }
    ((label_query, bbox_query, attn_mask, dn_meta),) = kept
    model.eval()
    with torch.no_grad():
        predictions = model.predict(inputs, data_samples(inputs), rescale=False)
    return dict(
        source=dict(
            mmdet_config=DINO_CONFIG,
            seed=SEED,
            dn_seed=DN_SEED,
            steps=DINO_STEPS,
            lr=DINO_LR,
            photos=PHOTOS,
            mean=MEAN,
            std=STD,
            versions=versions(),
            model=cfg.model.to_dict(),
            patched="mmdet.models.layers.transformer.dino_layers.coordinate_to_encoding: "
            "num_feats=embed_dims // 2 (mmdetection 3.3 passes its default, 128)",
            **DINO,
        ),
        state_dict={k: v.detach().clone() for k, v in model.state_dict().items()},
        inputs_sum=inputs.double().sum().item(),
        inputs_shape=list(inputs.shape),
        dn_queries=dict(
            label_query=label_query.detach().clone(),
            bbox_query=bbox_query.detach().clone(),
            attn_mask=attn_mask.clone(),
            **{k: int(v) for k, v in dn_meta.items()},
        ),  # fmt: skip
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


OUTPUTS = (*DENSE, "dino", "names")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=OUT, help="folder of the fixture files")
    parser.add_argument("--only", nargs="+", choices=OUTPUTS, default=list(OUTPUTS),
                        help="write only these files (default: all)")  # fmt: skip
    args = parser.parse_args(argv)
    from mmdet.utils import register_all_modules

    register_all_modules()
    os.makedirs(args.out, exist_ok=True)
    for family in [f for f in (*DENSE, "dino") if f in args.only]:
        fixture = dino_fixture() if family == "dino" else dense_fixture(family)
        path = osp.join(args.out, f"{family}.pth")
        torch.save(fixture, path + ".tmp")
        torch.load(path + ".tmp", weights_only=True)  # only tensors and plain types
        os.replace(path + ".tmp", path)
        losses = {k: round(v.item(), 5) for k, v in fixture["losses"].items()}
        counts = [len(d["scores"]) for d in fixture["detections"]]
        print(f"{path}: losses {losses}, {counts} detections", flush=True)
    if "names" not in args.only:
        return
    names = state_dict_names()
    path = osp.join(args.out, "state_dict_names.json")
    with open(path + ".tmp", "w") as f:
        json.dump(names, f, indent=0, sort_keys=True)
    os.replace(path + ".tmp", path)
    print(f"{path}: {len(names['families'])} families")


if __name__ == "__main__":
    main()
