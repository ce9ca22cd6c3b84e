import numpy as np
import pytest

from mmdet_like.evaluation import average_precision, eval_map, eval_recalls, evaluate_voc, tpfp


def _case():
    """One class, 2 gt boxes (+1 difficult); 4 detections: hit, miss, hit, on-difficult."""
    ann = dict(
        bboxes=np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32),
        labels=np.array([0, 0]),
        bboxes_ignore=np.array([[40, 40, 50, 50]], np.float32),
        labels_ignore=np.array([0]),
    )
    dets = np.array(
        [[0, 0, 10, 10, 0.9], [60, 60, 70, 70, 0.8], [21, 20, 30, 30, 0.7],
         [40, 40, 50, 50, 0.95]], np.float32)  # fmt: skip
    return [[dets]], [ann]


def test_tpfp_ignores_difficult():
    (dets,), (ann,) = _case()[0][0], _case()[1]
    tp, fp = tpfp(dets, ann["bboxes"], ann["bboxes_ignore"], 0.5)
    np.testing.assert_array_equal(tp, [1, 0, 1, 0])
    np.testing.assert_array_equal(fp, [0, 1, 0, 0])


def test_voc_map_hand_computed():
    # ranked: tp, fp, tp -> recall .5 .5 1, precision 1 .5 .667
    results, anns = _case()
    mean_ap, per_class = eval_map(results, anns, 0.5, "area")
    assert mean_ap == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert per_class[0]["num_gts"] == 2 and per_class[0]["recall"] == 1.0
    mean_ap11, _ = eval_map(results, anns, 0.5, "11points")
    assert mean_ap11 == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)
    # IoU of det 3 with gt 2 is 0.9: missed at 0.95
    strict, _ = eval_map(results, anns, 0.95, "area")
    assert strict == pytest.approx(0.5)


def test_evaluate_voc_table_and_keys(capsys):
    results, anns = _case()
    out = evaluate_voc(results, anns, ["cell"], iou_thrs=[0.5, 0.95])
    assert out["AP50"] == pytest.approx(5 / 6) and out["AP95"] == pytest.approx(0.5)
    assert out["mAP"] == pytest.approx((5 / 6 + 0.5) / 2)
    assert "| cell" in capsys.readouterr().out


def test_average_precision_modes():
    assert average_precision([1.0], [1.0]) == 1.0
    assert average_precision([0.5, 0.5], [1.0, 0.5]) == 0.5
    with pytest.raises(ValueError, match="mode"):
        average_precision([1.0], [1.0], "bad")


def test_eval_recalls():
    gts = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)]
    props = [np.array([[0, 0, 10, 10, 0.5], [20, 20, 30, 26, 0.9]], np.float32)]
    rec = eval_recalls(gts, props, proposal_nums=(1, 2), iou_thrs=(0.5, 0.7))
    # best-scored proposal first: IoU 0.6 with gt 2 -> counted at 0.5 only
    np.testing.assert_allclose(rec, [[0.5, 0.0], [1.0, 0.5]])
