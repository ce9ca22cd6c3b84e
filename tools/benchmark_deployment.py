"""Inference time of exported detectors against PyTorch, in one run, on equal work.

    python tools/benchmark_deployment.py [--config CONFIG ...] [--image demo/demo.jpg]
        [--iters 3] [--warmup 1] [--rounds 2] [--fixed-size] [--out docs/deployment.md]

For each config (default: Faster R-CNN, Mask R-CNN and RetinaNet R-50-FPN) the model is built
with random weights under one seed (``pretrained=None``; classifiers drawn with std 0.3 so
that scores do not tie), ``score_thr=0`` and
``max_per_img=100`` so that it returns 100 detections whatever its scores, and exported
(``--dynamic``; with ``--fixed-size``, for the input's size only, as pytorch2onnx.py without
``--dynamic``) to ONNX and to a ``torch.export`` program. The image (scikit-image's
astronaut by default) goes through the config's test pipeline once; then, on that one
(1, 3, H, W) input, in every round one after the other:

- PyTorch: the detector's own inference (``BaseDetector.predict``, channels-last on the CPU,
  masks pasted at the input's size);
- onnxruntime: ``session.run`` on the ONNX file (CPU provider, as many intra-op threads as
  torch uses) and the same mask pasting in Python (:func:`to_instances`);
- torch.export: the loaded ``.pt2`` program's module and the same pasting.

Before timing, the three must give the same detections (:func:`compare_detections`: same
count and labels, boxes within --verify's bound), else the run stops (unequal work). Reported per
config and runtime: the best timed call over the rounds, the median, and the time as a ratio
to PyTorch's. ``--out`` writes the table into its block of the file.
"""

import argparse
import os
import os.path as osp
import statistics
import sys
import tempfile

import torch

from mmdet_like.apis.tool_utils import build_model, load_tool_config
from mmdet_like.benchmarking import (
    ROOT,
    equal_detections_test_cfg,
    machine_line,
    resolve_config,
    spread_prediction_layers,
    time_calls,
    write_section,
)
from mmdet_like.deployment import (
    compare_detections,
    export_program,
    prepare_input,
    pytorch_instances,
    save_program,
    to_instances,
)
from mmdet_like.deployment.export import onnxruntime_session, verification_failures
from mmdet_like.deployment.exportable import image_meta
from mmdet_like.errors import run_tool

DEFAULT_CONFIGS = [
    "configs/faster_rcnn_r50_fpn_1x.py",
    "configs/mask_rcnn_r50_fpn_1x.py",
    "configs/retinanet_r50_fpn_1x.py",
]
RUNTIMES = ("pytorch", "onnxruntime", "torch.export")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", action="append", help="a config (repeat for several)")
    parser.add_argument("--image", default=osp.join(ROOT, "demo", "demo.jpg"))
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--fixed-size",
        action="store_true",
        help="export for the input's size only (default: any size)",
    )
    parser.add_argument("--out", help="write the table into this markdown file")
    return parser.parse_args(argv)


def build_benchmark_model(config, seed=0):
    """The config's detector, random weights under ``seed``, returning 100 detections an
    image whatever its scores."""
    path = resolve_config(config)
    cfg = equal_detections_test_cfg(load_tool_config(path), path)
    torch.manual_seed(seed)
    model = build_model(cfg)
    model.init_weights()
    spread_prediction_layers(model)
    model.cfg = cfg
    return model.eval()


class Runtimes:
    """The three ways to run one exported model on one input, each returning
    :class:`InstanceData` in the input's coordinates."""

    def __init__(self, model, image, folder, dynamic=True):
        self.model, self.image = model, image
        onnx_path = osp.join(folder, "model.onnx")
        program_path = osp.join(folder, "model.pt2")
        program = export_program(model, image, dynamic)  # traced once, saved twice
        save_program(program, model, image, program_path, "torch-export")
        save_program(program, model, image, onnx_path, "onnx")
        self.session = onnxruntime_session(onnx_path)
        self.input_name = self.session.get_inputs()[0].name
        self.array = image.numpy()
        self.program = torch.export.load(program_path).module()

    def _instances(self, outputs):
        height, width = self.image.shape[-2:]
        return to_instances(outputs, image_meta(int(height), int(width)), self.model)

    def pytorch(self):
        return pytorch_instances(self.model, self.image)

    def onnxruntime(self):
        return self._instances(self.session.run(None, {self.input_name: self.array}))

    @torch.no_grad()
    def torch_export(self):
        return self._instances([o.numpy() for o in self.program(self.image)])

    def call(self, runtime):
        return {"pytorch": self.pytorch, "onnxruntime": self.onnxruntime,
                "torch.export": self.torch_export}[runtime]()  # fmt: skip


def check_equal_work(runtimes):
    """Every runtime's detections equal PyTorch's (else a RuntimeError)."""
    reference = runtimes.pytorch()
    for runtime in RUNTIMES[1:]:
        report = compare_detections(reference, runtimes.call(runtime), runtimes.image.shape[-2:])
        problems = verification_failures(report)
        if problems:
            raise RuntimeError(f"{runtime}: not the same work as PyTorch: {'; '.join(problems)}")
    return len(reference)


def benchmark_config(config, image_path, iters, warmup, rounds, dynamic=True):
    """{runtime: list of per-round timed-call lists} and the detection count of one config."""
    model = build_benchmark_model(config)
    image, _ = prepare_input(model.cfg, image_path)
    with tempfile.TemporaryDirectory() as folder:
        runtimes = Runtimes(model, image, folder, dynamic)
        detections = check_equal_work(runtimes)
        times = {runtime: [] for runtime in RUNTIMES}
        for _ in range(rounds):
            for runtime in RUNTIMES:
                times[runtime].append(
                    time_calls(
                        lambda r=runtime: runtimes.call(r), torch.device("cpu"), iters, warmup
                    )  # fmt: skip
                )
    return dict(times=times, detections=detections, shape=tuple(image.shape[-2:]))


def table(results, args):
    lines = [
        f"{machine_line(torch.device('cpu'), with_torchvision=False)}; onnxruntime "
        f"{_onnxruntime_version()}; image {osp.basename(args.image)}; {args.iters} timed calls "
        f"after {args.warmup} warm-up, best of {args.rounds} rounds; "
        f"{'fixed-size' if args.fixed_size else 'dynamic-size'} exports",
        "",
        "| config | input | detections | runtime | best (s) | median (s) | time vs PyTorch |",
        "|---|---|---|---|---|---|---|",
    ]
    for config, result in results.items():
        best = {r: min(min(t) for t in result["times"][r]) for r in RUNTIMES}
        for runtime in RUNTIMES:
            calls = [t for round_times in result["times"][runtime] for t in round_times]
            lines.append(
                f"| {osp.basename(config)} | {result['shape'][0]}x{result['shape'][1]} | "
                f"{result['detections']} | {runtime} | {best[runtime]:.3f} | "
                f"{statistics.median(calls):.3f} | {best[runtime] / best['pytorch']:.2f}x |"
            )
    return "\n".join(lines)


def _onnxruntime_version():
    import onnxruntime

    return onnxruntime.__version__


def main(argv=None):
    args = parse_args(argv)
    results = {}
    for config in args.config or DEFAULT_CONFIGS:
        print(f"{config}: exporting and timing ...", flush=True)
        results[config] = benchmark_config(
            config, args.image, args.iters, args.warmup, args.rounds, not args.fixed_size
        )
    text = table(results, args)
    print(text)
    if args.out:
        write_section(args.out, "benchmark_deployment cpu", text)
        print(f"wrote {os.path.relpath(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
