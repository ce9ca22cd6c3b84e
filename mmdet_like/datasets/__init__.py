"""Datasets, pipelines, samplers, collation and data loaders.

Importing this package registers every dataset (``DATASETS``) and transform
(``PIPELINES``).
"""

from mmdet_like.datasets import pipelines
from mmdet_like.datasets.annotations import AnnotationTable, PackedBytes, RaggedArray
from mmdet_like.datasets.builder import build_dataloader, build_dataset, worker_init_fn
from mmdet_like.datasets.coco import CocoDataset
from mmdet_like.datasets.collate import collate
from mmdet_like.datasets.custom import CustomDataset
from mmdet_like.datasets.dataset_wrappers import (
    ClassBalancedDataset,
    ConcatDataset,
    MultiImageMixDataset,
    RepeatDataset,
    repeat_factors,
)
from mmdet_like.datasets.errors import DatasetError, DatasetWarning
from mmdet_like.datasets.samplers import (
    DistributedGroupSampler,
    GroupSampler,
    ReplacementSampler,
    ShuffleSampler,
)
from mmdet_like.datasets.voc import VOCDataset

__all__ = [
    "AnnotationTable",
    "ClassBalancedDataset",
    "CocoDataset",
    "ConcatDataset",
    "CustomDataset",
    "DatasetError",
    "DatasetWarning",
    "DistributedGroupSampler",
    "GroupSampler",
    "MultiImageMixDataset",
    "PackedBytes",
    "RaggedArray",
    "RepeatDataset",
    "ReplacementSampler",
    "ShuffleSampler",
    "VOCDataset",
    "build_dataloader",
    "build_dataset",
    "collate",
    "pipelines",
    "repeat_factors",
    "worker_init_fn",
]
