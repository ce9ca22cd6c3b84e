"""ONNX and torch.export export (mmdet_like/deployment, tools/deployment/pytorch2onnx.py).

The exported files are run by stock onnxruntime (no custom library) and by
``torch.export.load``, and compared with the detector's own PyTorch inference on scikit-image's
``astronaut`` photograph: same detections and labels, boxes within --verify's bound. The models are
the tiny demo models, untrained; their classifiers (and mask-logit and heatmap layers) are
re-drawn with a larger spread (``spread_prediction_layers``) so that scores differ by far more
than float noise (an untrained head scores every box ~0.5,
and the order of near-equal scores is then decided by rounding, in either runtime).

That bound is ``box_tolerance_px`` (``BOX_TOLERANCE`` of the image's longer side, measured
across CPU kernel settings: see mmdet_like/deployment/export.py); these models stay far
inside it (under 1e-4 px), as --verify's report shows.
"""

import re

import numpy as np
import pytest
import torch

from tests.engine.cli_utils import ROOT, run_python, run_tool_here

onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
skdata = pytest.importorskip("skimage.data")

from mmdet_like.benchmarking import spread_prediction_layers  # noqa: E402
from mmdet_like.deployment import (  # noqa: E402
    DeploymentError,
    ExportableDetector,
    compare_detections,
    export_detector,
    prepare_input,
    pytorch_instances,
    run_exported,
    to_instances,
    verify_exported,
)
from mmdet_like.deployment.export import (  # noqa: E402
    box_tolerance_px,
    dynamic_min_side,
    onnxruntime_session,
)
from mmdet_like.deployment.onnx_ops import ONNX_OPSET, translation_table  # noqa: E402
from mmdet_like.ops import nms, roi_align  # noqa: E402

DEMO = ROOT / "configs" / "demo"


def _photo_bgr():
    return np.ascontiguousarray(skdata.astronaut()[..., ::-1])


def _model(config, **cfg_changes):
    from mmdet_like.apis.tool_utils import build_model
    from mmdet_like.engine import load_config

    cfg = load_config(str(config))
    for key, value in cfg_changes.items():
        cfg.merge_from_dict({key: value})
    torch.manual_seed(0)
    model = build_model(cfg)
    model.init_weights()
    spread_prediction_layers(model)
    model.cfg = cfg
    return model.eval()


def _faster_rcnn_changes():
    return {
        "model.type": "FasterRCNN",
        "model.roi_head.mask_roi_extractor": None,
        "model.roi_head.mask_head": None,
    }


# ------------------------------------------------------------------ the ops as ONNX operators


class _OpModule(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, first, second):
        return self.fn(first, second)


def _onnx_run(fn, args, path, dynamic_shapes=None):
    program = torch.export.export(_OpModule(fn), args, dynamic_shapes=dynamic_shapes)
    onnx_program = torch.onnx.export(
        program, args, custom_translation_table=translation_table(), opset_version=ONNX_OPSET,
        dynamo=True, external_data=False, verbose=False,
    )  # fmt: skip
    onnx_program.save(str(path), external_data=False)
    session = onnxruntime_session(str(path))
    names = [i.name for i in session.get_inputs()]
    return session, names


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_roi_align_is_onnx_roialign(tmp_path, aligned, sampling_ratio):
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 3, 20, 24, generator=gen)
    xy = torch.rand(12, 2, generator=gen) * 60
    wh = torch.rand(12, 2, generator=gen) * 30 + 0.3  # some under 1 px: the unaligned clamp
    rois = torch.cat([torch.randint(0, 2, (12, 1), generator=gen).float(), xy, xy + wh], 1)

    def pooled(f, r):
        return roi_align(f, r, (7, 6), 0.25, sampling_ratio, aligned)

    rois_dim = torch.export.Dim("rois", min=2, max=1000)
    session, names = _onnx_run(
        pooled, (feats, rois), tmp_path / "roi_align.onnx", ({}, {0: rois_dim})
    )
    for count in (12, 5):  # a second RoI count through the same file
        expected = pooled(feats, rois[:count]).numpy()
        out = session.run(None, {names[0]: feats.numpy(), names[1]: rois[:count].numpy()})[0]
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_nms_is_onnx_nonmaxsuppression(tmp_path):
    gen = torch.Generator().manual_seed(1)
    xy = torch.rand(300, 2, generator=gen) * 100
    boxes = torch.cat([xy, xy + torch.rand(300, 2, generator=gen) * 40 + 1], 1)
    scores = torch.rand(300, generator=gen)

    def kept(b, s):
        return nms(b, s, 0.5)

    count = torch.export.Dim("boxes", min=2, max=100_000)
    session, names = _onnx_run(
        kept, (boxes, scores), tmp_path / "nms.onnx", ({0: count}, {0: count})
    )
    for n in (300, 57):
        expected = kept(boxes[:n], scores[:n]).numpy()
        out = session.run(None, {names[0]: boxes[:n].numpy(), names[1]: scores[:n].numpy()})[0]
        assert 5 < len(expected) < n
        np.testing.assert_array_equal(out, expected)  # same boxes, same (score) order


# ------------------------------------------------------------------ whole detectors


def _check_same(model, path, image):
    report = verify_exported(model, str(path), image)
    assert report["reference"] > 5, report  # enough detections to compare
    assert report["exported"] == report["matched"] == report["reference"], report
    assert report["box_tolerance_px"] == box_tolerance_px(image.shape[-2:])
    assert report["max_box_diff_px"] <= report["box_tolerance_px"], report
    return report


def test_mask_rcnn_onnx_dynamic_sizes_equal_pytorch(tmp_path):
    model = _model(DEMO / "mask_rcnn_r18_fpn_demo.py")
    image, meta = prepare_input(model.cfg, _photo_bgr())
    assert tuple(image.shape) == (1, 3, 128, 128)
    path = tmp_path / "mask_rcnn.onnx"
    assert export_detector(model, image, str(path), "onnx", dynamic=True) == [
        "dets", "labels", "mask_probs",
    ]  # fmt: skip
    report = _check_same(model, path, image)
    assert report["mask_pixels_differing"] <= 1e-3
    # other sizes through the same file: not multiples of 32 (the graph pads), portrait
    for shape in [(97, 150), (200, 131)]:
        other, _ = prepare_input(model.cfg, _photo_bgr(), shape)
        assert tuple(other.shape[-2:]) == shape
        _check_same(model, path, other)
    # the outputs' layout, and the Python side of deployment: back to the original image
    outputs = run_exported(str(path), image)
    dets, labels, probs = outputs
    assert dets.shape[1] == 5 and labels.dtype == np.int64 and probs.shape[1:] == (28, 28)
    assert np.all(np.diff(dets[:, 4]) <= 0)  # descending scores
    result = to_instances(outputs, meta, model)
    assert tuple(result.masks.shape[1:]) == (512, 512)  # the photograph's size
    np.testing.assert_allclose(result.bboxes.numpy(), dets[:, :4] * 4.0, rtol=1e-6)


def test_export_smaller_than_the_coarsest_level_is_refused(tmp_path):
    model = _model(DEMO / "mask_rcnn_r18_fpn_demo.py")
    small, _ = prepare_input(model.cfg, _photo_bgr(), (64, 96))
    assert dynamic_min_side(model) == 65  # RPN on P2-P6: stride 64
    with pytest.raises(DeploymentError, match="at least 65"):
        export_detector(model, small, str(tmp_path / "m.onnx"), "onnx", dynamic=True)


def test_faster_rcnn_torch_export_program_equals_pytorch(tmp_path):
    model = _model(DEMO / "mask_rcnn_r18_fpn_demo.py", **_faster_rcnn_changes())
    assert not model.with_mask
    image, _ = prepare_input(model.cfg, _photo_bgr(), (160, 224))
    path = tmp_path / "faster_rcnn.pt2"
    assert export_detector(model, image, str(path), "torch-export", dynamic=True) == [
        "dets", "labels",
    ]  # fmt: skip
    _check_same(model, path, image)
    other, _ = prepare_input(model.cfg, _photo_bgr(), (96, 180))
    _check_same(model, path, other)


def test_compare_detections_finds_a_moved_box_and_a_missing_one():
    from mmdet_like.deployment.export import BOX_TOLERANCE, verification_failures
    from mmdet_like.structures.instance_data import InstanceData

    boxes = torch.tensor([[0.0, 0, 10, 10], [20, 20, 40, 40], [5, 5, 30, 30]])
    reference = InstanceData(bboxes=boxes, scores=torch.tensor([0.9, 0.8, 0.7]),
                             labels=torch.tensor([0, 1, 1]))  # fmt: skip
    shape = (40, 60)  # the image: a bound of 0.012 px
    # the same detections, two of them swapped (tied scores may come in either order)
    swapped = reference[torch.tensor([0, 2, 1])]
    report = compare_detections(reference, swapped, shape)
    assert report["matched"] == 3 and report["max_box_diff_px"] == 0
    assert report["box_tolerance_px"] == pytest.approx(60 * BOX_TOLERANCE)
    assert verification_failures(report) == []
    moved = InstanceData(bboxes=boxes + torch.tensor([0.0, 0, 0.05, 0]),
                         scores=reference.scores, labels=reference.labels)  # fmt: skip
    problems = verification_failures(compare_detections(reference, moved, shape))
    assert len(problems) == 1 and "boxes differ by up to 0.05 px" in problems[0]
    # the bound grows with the image: the same 0.05 px in an image 1000 x 1500 passes
    assert verification_failures(compare_detections(reference, moved, (1000, 1500))) == []
    problems = verification_failures(compare_detections(reference, reference[:2], shape))
    assert problems == ["2 detections against PyTorch's 3"]
    relabelled = InstanceData(bboxes=boxes, scores=reference.scores,
                              labels=torch.tensor([0, 1, 2]))  # fmt: skip
    assert (
        "1 detections match none"
        in verification_failures(compare_detections(reference, relabelled, shape))[0]
    )


def test_soft_nms_cannot_export_and_says_why():
    from mmdet_like.deployment.exportable import ExportError

    soft = _model(DEMO / "mask_rcnn_r18_fpn_demo.py",
                  **{"test_cfg.rcnn.nms": dict(type="soft_nms", iou_thr=0.3)})  # fmt: skip
    with pytest.raises(ExportError, match="Soft-NMS has no ONNX operator"):
        ExportableDetector(soft)


def test_detectors_without_boxes_of_their_own_do_not_export():
    """The detector says what exports (export_spec): an RPN alone and a Fast R-CNN (given
    proposals) are refused with the reason."""
    from mmdet_like.engine import load_config
    from mmdet_like.models import build_detector
    from mmdet_like.models.detectors.base import ExportError

    cfg = load_config(str(DEMO / "mask_rcnn_r18_fpn_demo.py"))
    parts = dict(backbone=cfg.model.backbone, neck=cfg.model.neck)
    rpn = build_detector(dict(type="RPN", rpn_head=cfg.model.rpn_head, **parts),
                         test_cfg=dict(rpn=cfg.test_cfg.rpn))  # fmt: skip
    with pytest.raises(ExportError, match="RPN: not an exportable detector"):
        ExportableDetector(rpn)
    fast = build_detector(dict(type="FastRCNN", roi_head=cfg.model.roi_head, **parts),
                          test_cfg=dict(rcnn=cfg.test_cfg.rcnn))  # fmt: skip
    with pytest.raises(ExportError, match="FastRCNN: a detector without an RPN"):
        ExportableDetector(fast)


def test_the_exporter_knows_no_detector_family():
    """mmdet_like/deployment calls the detector's export methods only: no detector class,
    no head, no private attribute of anything it is given."""
    import ast

    families = {"SingleStageDetector", "TwoStageDetector", "RPN", "FastRCNN", "FasterRCNN",
                "MaskRCNN", "CascadeRCNN", "KeypointRCNN", "RetinaNet", "FCOS", "ATSS",
                "GFL"}  # fmt: skip
    parts = {"roi_head", "bbox_head", "rpn_head", "mask_head", "keypoint_head", "neck",
             "backbone", "extract_feat", "predict_instances"}  # fmt: skip
    offences = []
    for path in sorted((ROOT / "mmdet_like" / "deployment").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and (
                node.attr in parts or (node.attr.startswith("_") and not node.attr.endswith("__"))
            ):
                offences.append(f"{path.name}:{node.lineno} .{node.attr}")
            if isinstance(node, ast.Name) and node.id in families:
                offences.append(f"{path.name}:{node.lineno} {node.id}")
            if isinstance(node, ast.alias) and node.name in families:
                offences.append(f"{path.name}: imports {node.name}")
    assert not offences, offences


# ------------------------------------------------------------------ the command-line tool


def _save_checkpoint(model, path):
    from mmdet_like.engine.checkpoint import save_checkpoint

    save_checkpoint(str(path), model, meta=dict(CLASSES=["circle", "rectangle", "triangle",
                                                           "star"]))  # fmt: skip


TOOL = ROOT / "tools" / "deployment" / "pytorch2onnx.py"


def _run(args, cwd, expect_rc=0):
    return run_python([TOOL, *args], cwd, expect_rc, timeout=300)


def _run_here(args, cwd, expect_rc=0):
    """:func:`_run` in this process, as the tool's ``__main__`` block runs it."""
    return run_tool_here([TOOL, *args], cwd, expect_rc)


def test_pytorch2onnx_tool_exports_and_verifies(tmp_path):
    """The tool end to end in its own process (RetinaNet: the quickest export; its --verify
    is the RetinaNet export's proof, the other families are exported in-process above and
    in test_export_families.py), then its errors in this process."""
    import cv2

    config = DEMO / "retinanet_r18_fpn_demo.py"
    model = _model(config)
    ckpt = tmp_path / "model.pth"
    _save_checkpoint(model, ckpt)
    photo = tmp_path / "photo.jpg"
    cv2.imwrite(str(photo), _photo_bgr())
    out = _run([config, ckpt, "--out", tmp_path / "m.onnx", "--image", photo, "--dynamic",
                "--shape", "160", "192", "--verify"], tmp_path)  # fmt: skip
    assert "outputs dets, labels)" in out and "any size" in out
    verified = re.search(r": (\d+) detections as PyTorch's, boxes within", out)
    assert verified and int(verified.group(1)) > 5, out  # enough detections to compare
    assert (tmp_path / "m.onnx").stat().st_size > 100_000
    assert not list(tmp_path.glob(".export-*"))  # written atomically, nothing left over
    # errors: one line, non-zero, no traceback, nothing written
    out = _run_here([config, ckpt, "--out", tmp_path / "m.pt2", "--image", photo], tmp_path, 1)
    assert "ends in .onnx" in out
    missing = tmp_path / "none.jpg"
    out = _run_here([config, ckpt, "--out", tmp_path / "x.onnx", "--image", missing], tmp_path, 1)
    assert "none.jpg" in out and "does not exist" in out
    out = _run_here([config, ckpt, "--out", tmp_path / "x.onnx", "--image", photo,
                     "--cfg-options", "test_cfg.nms.type=soft_nms"], tmp_path, 1)  # fmt: skip
    assert "Soft-NMS has no ONNX operator" in out
    assert not (tmp_path / "x.onnx").exists()


def test_run_exported_loads_a_file_again_when_it_is_rewritten(tmp_path):
    """Loaded files are kept between runs (loading a dynamic .pt2 takes seconds); a file
    written again at the same path is loaded again."""
    import onnx
    from onnx import TensorProto, helper

    def write(op, path):
        tensor = helper.make_tensor_value_info
        graph = helper.make_graph(
            [helper.make_node(op, ["image"], ["out"])], "g",
            [tensor("image", TensorProto.FLOAT, [1, 3, 2, 2])],
            [tensor("out", TensorProto.FLOAT, [1, 3, 2, 2])],
        )  # fmt: skip
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        tmp = tmp_path / "tmp.onnx"
        onnx.save(model, str(tmp))
        tmp.replace(path)  # as export_detector writes: atomically

    path = tmp_path / "m.onnx"
    image = torch.arange(12.0).reshape(1, 3, 2, 2)
    write("Identity", path)
    assert np.array_equal(run_exported(str(path), image)[0], image.numpy())
    assert np.array_equal(run_exported(str(path), image)[0], image.numpy())
    write("Neg", path)
    assert np.array_equal(run_exported(str(path), image)[0], -image.numpy())
    # the session runs on PyTorch's threads, not on every core
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        options = onnxruntime_session(str(path)).get_session_options()
        assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 1)
    finally:
        torch.set_num_threads(before)


def test_pytorch_instances_are_the_detectors_own(tmp_path):
    """The reference of --verify is BaseDetector.predict (channels-last and all), not the
    export wrapper: the wrapper on the same input agrees with it."""
    model = _model(DEMO / "mask_rcnn_r18_fpn_demo.py")
    image, _ = prepare_input(model.cfg, _photo_bgr())
    reference = pytorch_instances(model, image)
    with torch.no_grad():
        dets, labels, _ = ExportableDetector(model)(image)
    assert len(reference) == len(labels) > 5
    torch.testing.assert_close(
        reference.bboxes, dets[:, :4], atol=box_tolerance_px(image.shape[-2:]), rtol=0
    )
    assert torch.equal(reference.labels, labels)
