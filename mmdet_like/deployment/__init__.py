"""Deployment: detectors exported to ONNX (run by stock onnxruntime) or ``torch.export``."""

from mmdet_like.deployment.export import (
    FORMATS,
    DeploymentError,
    compare_detections,
    export_detector,
    export_program,
    prepare_input,
    pytorch_instances,
    run_exported,
    save_program,
    to_instances,
    verify_exported,
)
from mmdet_like.deployment.exportable import ExportableDetector

__all__ = [
    "FORMATS",
    "DeploymentError",
    "ExportableDetector",
    "compare_detections",
    "export_detector",
    "export_program",
    "prepare_input",
    "pytorch_instances",
    "run_exported",
    "save_program",
    "to_instances",
    "verify_exported",
]
