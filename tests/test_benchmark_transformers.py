"""``--model detr`` / ``--model deformable_detr`` of the detector benchmarks
(mmdet_like/benchmarking/transformers_pair.py): ours against transformers' model with the
same weights and equal work, the reference's labels and section markers, and the checks that
stop a run whose sides did unequal work.

The pairs are built small here (timm ResNet-18, width 32, 2 + 2 layers; ``SMALL``) on a
256 x 384 crop of the benchmark's images; the benchmark runs them full size."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mmdet_like.benchmarking import (
    MODELS,
    TORCHVISION_CACHED,
    UnequalWorkError,
    build_pair,
    check_equal_detections,
    check_equal_trainable,
    machine_line,
    make_inputs,
    our_batch,
    reference_label,
    reference_library,
    row_label,
    section_marker,
)
from mmdet_like.engine.runner import parse_losses
from tests.engine.cli_utils import load_tool

ROOT = Path(__file__).resolve().parents[1]
PAIRS = ["detr", "deformable_detr"]
HEIGHT, WIDTH = 256, 384


def _pair_module():
    pytest.importorskip("transformers")
    pytest.importorskip("timm")
    from mmdet_like.benchmarking import transformers_pair

    return transformers_pair


def _small_samples(count):
    """The benchmark's images cropped to 256 x 384, their boxes scaled into the crop."""
    scale = np.array([WIDTH / 1216, HEIGHT / 800] * 2, np.float32)
    return [dict(s, image=s["image"][:HEIGHT, :WIDTH], boxes=s["boxes"] * scale)
            for s in make_inputs()[:count]]  # fmt: skip


def _our_small_batch(samples, train):
    batch = our_batch(samples, torch.device("cpu"), train=train, masks=False)
    shape = (HEIGHT, WIDTH, 3)
    for sample in batch["data_samples"]:
        sample.metainfo.update(ori_shape=shape, img_shape=shape, pad_shape=shape)
    return batch


def _small_pair(pair, model):
    net = pair.transformers_model(model, seed=0, small=True)
    arch = pair.architecture(model, net)
    state = pair.converted_state(model, net.state_dict(), arch)
    ours, _ = pair.our_model(model, MODELS[model]["config"], arch, state)
    return net, ours


def _by_label_and_box(labels, boxes, scores):
    order = np.lexsort((boxes[:, 0], labels))
    return labels[order], boxes[order], scores[order]


@pytest.mark.parametrize("model", PAIRS)
def test_pair_starts_equal_detects_the_same_and_trains_the_same(model):
    """The converted weights give our model transformers' detections (score threshold 0:
    as many on both sides; the same labels, boxes and scores), the same trainable
    parameters and the same training loss (dropout off)."""
    pair = _pair_module()
    net, ours = _small_pair(pair, model)
    ours.eval()
    trainable = [sum(p.numel() for p in m.parameters() if p.requires_grad) for m in (net, ours)]
    assert trainable[0] == trainable[1] > 0
    frozen = [n for n, p in ours.named_parameters() if not p.requires_grad]
    assert all("backbone" in n for n in frozen)  # frozen norms only (frozen_stages=-1)
    if model == "deformable_detr":  # its grid_sample attention, not a hub kernel
        pair.check_plain_attention(net)
        attention = net.model.encoder.layers[0].self_attn.attn
        attention.forward = lambda *args, **kwargs: None
        with pytest.raises(RuntimeError, match="plain-PyTorch attention"):
            pair.check_plain_attention(net)
        del attention.forward

    samples = _small_samples(1)
    device = torch.device("cpu")
    inputs = pair.transformers_batch(samples, device, train=False)
    batch = _our_small_batch(samples, train=False)
    torch.testing.assert_close(inputs["pixel_values"], batch["img"], rtol=0, atol=0)
    with torch.no_grad():
        outputs = net(**inputs)
        theirs = pair.image_processor(model).post_process_object_detection(
            outputs, threshold=0.0, target_sizes=[(HEIGHT, WIDTH)]
        )[0]
        mine = ours(**batch, return_loss=False, rescale=True)[0].pred_instances
        counts = pair.reference_inference(model, net, samples, device)()
    queries = pair.SMALL[model]["num_queries"]
    # DETR: one detection per query; Deformable DETR: the 100 best (query, class) pairs
    assert counts == [len(mine)] == [queries if model == "detr" else 100]
    if model == "deformable_detr":  # no tie at the 100th pair: the same pairs are kept
        ranked = outputs.logits.sigmoid().flatten().sort(descending=True).values
        assert ranked[99] - ranked[100] > 1e-4  # measured 4.0e-4
    want = _by_label_and_box(*(theirs[k].numpy() for k in ("labels", "boxes", "scores")))
    got = _by_label_and_box(mine.labels.numpy(), mine.bboxes.numpy(), mine.scores.numpy())
    np.testing.assert_array_equal(got[0], want[0])
    # measured: DETR boxes 9.2e-5 px, scores 3.7e-8; Deformable DETR 7.4e-4 px, 9.5e-7
    np.testing.assert_allclose(got[1], want[1], rtol=0, atol=1e-2)
    np.testing.assert_allclose(got[2], want[2], rtol=0, atol=1e-5)

    samples = _small_samples(2)
    reference_loss = pair.reference_training_loss(model, net, samples, device)()
    our_loss = parse_losses(ours(**_our_small_batch(samples, train=True)))[0]
    # measured: equal to the printed digits (DETR 29.15, Deformable DETR 132.5)
    torch.testing.assert_close(our_loss, reference_loss, rtol=1e-5, atol=0)


def test_saved_weights_build_both_sides_and_ours_never_imports_transformers(tmp_path):
    """The parent writes the weights once; the reference side loads its own, ours the
    converted ones in a process that does not import transformers (its peak memory is
    ours alone)."""
    pair = _pair_module()
    folders = {}
    for model in PAIRS:
        (tmp_path / model).mkdir()
        folders[model] = pair.save_pair_weights(model, str(tmp_path / model), seed=0, small=True)
        saved = json.loads((tmp_path / model / pair.ARCHITECTURE).read_text())
        assert saved["small"] and saved["architecture"]["auxiliary_loss"]
        net, cfg = build_pair("reference", None, torch.device("cpu"), model=model,
                              weights=folders[model])  # fmt: skip
        assert cfg is None
        built = pair.transformers_model(model, seed=0, small=True)
        for (name, a), b in zip(net.state_dict().items(), built.state_dict().values(),
                                strict=True):  # fmt: skip
            assert torch.equal(a, b), name
    with pytest.raises(ValueError, match="the weights of 'detr'"):
        build_pair("ours", MODELS["deformable_detr"]["config"], torch.device("cpu"),
                   model="deformable_detr", weights=folders["detr"])  # fmt: skip
    script = "import sys, torch\nfrom mmdet_like.benchmarking import build_pair\n"
    for model in PAIRS:
        script += (
            f"net, cfg = build_pair('ours', {MODELS[model]['config']!r}, torch.device('cpu'), "
            f"model={model!r}, weights={folders[model]!r})\n"
            "assert cfg.test_cfg['score_thr'] == 0.0 and cfg.test_cfg['max_per_img'] == 100\n"
        )
    script += "print(sorted(m for m in ('transformers', 'timm') if m in sys.modules))\n"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=ROOT, check=False)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_reference_labels_markers_and_machine_line():
    """A model entry names its reference library: the table labels, the ratio columns and
    the machine line say which; the existing models keep their labels and markers."""
    assert reference_library("maskrcnn") == "torchvision"
    assert reference_label("fcos") == "torchvision fcos_resnet50_fpn"
    assert reference_library("detr") == "transformers"
    assert reference_label("detr") == "transformers DetrForObjectDetection"
    assert reference_label("deformable_detr") == "transformers DeformableDetrForObjectDetection"
    assert row_label(TORCHVISION_CACHED, "deformable_detr") == (
        "transformers DeformableDetrForObjectDetection + our CPU caching allocator"
    )
    args = type("Args", (), dict(device="cpu", amp=False, model="maskrcnn"))()
    assert section_marker("benchmark", args) == "benchmark cpu"  # Mask R-CNN's blocks
    args.model = "detr"
    assert section_marker("benchmark_train", args) == "benchmark_train cpu detr"
    with pytest.raises(ValueError, match="unknown benchmark model"):
        reference_library("yolo")

    cpu = torch.device("cpu")
    assert "torchvision" in machine_line(cpu) and "transformers" not in machine_line(cpu)
    assert machine_line(cpu, with_torchvision=False).endswith(f"torch {torch.__version__}")
    pytest.importorskip("transformers")
    pytest.importorskip("timm")
    import timm
    import transformers

    line = machine_line(cpu, reference="transformers")
    assert f"transformers {transformers.__version__}, timm {timm.__version__}" in line
    assert "torchvision" not in line

    tool = load_tool("benchmark")
    summary = dict(best=2.0, median=2.5, peak_mb=1000.0, machine=line, detections=[100, 100])
    ours = dict(summary, best=1.5, peak_mb=900.0)
    args = type("Args", (), dict(model="deformable_detr", amp=False, iters=3, warmup=1,
                                 rounds=2))()  # fmt: skip
    table = tool.render(summary, [("configs/x.py", ours)], args)
    assert "| ours / transformers time | ours / transformers memory |" in table
    assert "| transformers DeformableDetrForObjectDetection | 2.00 |" in table
    assert "| 0.75x | 0.90x |" in table
    train_tool = load_tool("benchmark_train")
    rows = [dict(config="configs/x.py", tv=dict(summary, trainable=41_000_000), ours=ours)]
    table = train_tool.render(rows, cpu, args)
    assert "Trainable parameters: 41,000,000 on both sides." in table
    args.model = "retinanet"  # the torchvision tables as before: no such line
    table = train_tool.render(rows, cpu, args)
    assert "Trainable" not in table and "| ours / torchvision time |" in table


def test_unequal_work_stops_the_run(monkeypatch, capsys):
    """Unequal detections per image (benchmark.py) or trainable parameters (the
    transformers pairs in benchmark_train.py) stop the run before any table is written."""
    reference = dict(detections=[100, 100], trainable=10)
    check_equal_detections(reference, [("a.py", dict(detections=[100, 100]))], "detr")
    with pytest.raises(UnequalWorkError, match=r"a.py returned \[100, 99\] detections"):
        check_equal_detections(reference, [("a.py", dict(detections=[100, 99]))], "detr")
    check_equal_trainable(reference, [("a.py", dict(trainable=10))], "detr")
    with pytest.raises(UnequalWorkError, match="transformers DetrForObjectDetection 10"):
        check_equal_trainable(reference, [("a.py", dict(trainable=11))], "detr")

    def result(**extra):
        return dict(times=[1.0], peak_mb=1.0, machine="m", **extra)

    def run_rounds(script, args):
        return [result(detections=[100, 100])], {args.config[0]: [result(detections=[100, 98])]}

    tool = load_tool("benchmark")
    monkeypatch.setattr(tool, "run_rounds", run_rounds)
    monkeypatch.setattr(sys, "argv", ["benchmark.py", "--model", "deformable_detr"])
    with pytest.raises(UnequalWorkError, match="unequal work"):
        tool.main()

    def run_train_rounds(script, args):
        return [result(trainable=10)], {args.config[0]: [result(trainable=12)]}

    train_tool = load_tool("benchmark_train")
    monkeypatch.setattr(train_tool, "run_rounds", run_train_rounds)
    monkeypatch.setattr(sys, "argv", ["benchmark_train.py", "--model", "detr"])
    with pytest.raises(UnequalWorkError, match="trains 12 parameters"):
        train_tool.main()
    assert "|" not in capsys.readouterr().out  # no table printed


def test_rounds_prepare_the_transformers_weights_once(monkeypatch):
    """Before the children, the parent writes the pair's weights once; every child gets
    them (``--weights``) and the reference runs as ``--side reference``."""
    import mmdet_like.benchmarking.runs as runs

    prepared, calls = [], []

    def fake_prepare(model, folder, seed=0):
        prepared.append(model)
        return folder if model == "detr" else None

    monkeypatch.setattr(runs, "prepare_pair_weights", fake_prepare)
    monkeypatch.setattr(runs, "run_child", lambda script, args: calls.append(args) or {})
    args = type("Args", (), {})()
    args.device, args.iters, args.warmup, args.amp, args.rounds = "cpu", 1, 0, False, 2
    args.config, args.torchvision_cached, args.model = ["a.py"], False, "detr"
    runs.run_rounds("script.py", args)
    assert prepared == ["detr"] and len(calls) == 4
    assert all("--weights" in c for c in calls)
    assert [c[c.index("--side") + 1] for c in calls] == ["reference", "ours"] * 2
    calls.clear()
    args.model = "fcos"
    runs.run_rounds("script.py", args)
    assert not any("--weights" in c for c in calls)
