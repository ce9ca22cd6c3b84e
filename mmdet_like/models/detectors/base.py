"""Detector base: the data-sample contract.

Training: ``model(img=..., data_samples=[...])`` (what ``PackDetInputs`` and the collate
give) returns a dict of losses (entries named ``*loss*`` are summed by the runner); every
detector's ``forward_train(img, data_samples)`` reads the samples' ``gt_instances``,
``ignored_instances`` and ``proposals``. Inference: ``model(img=..., data_samples=[...],
return_loss=False, rescale=True)`` returns the samples with ``pred_instances`` set
(``bboxes``, ``scores``, ``labels`` [, ``masks``]; an RPN's: ``bboxes``, ``scores``).

``img`` is a (N, 3, H, W) tensor or a list of N (3, H_i, W_i) tensors; a list is padded
(bottom/right, zeros) into one batch whose sides are multiples of ``size_divisor``. For
inference ``MultiScaleFlipAug`` gives, per image, a list of augmentations (of images and of
samples): one unflipped augmentation runs as a plain batch; several (or a flipped one) go
to the detector's ``aug_predict_instances``, which merges them in the original image.

The per-image lists of a ``Collect`` pipeline (``img_metas``, ``gt_bboxes``, ...) are still
taken at this edge: they become data samples (:func:`samples_from_lists`), and inference on
them returns mmdetection's per-class lists (:func:`to_legacy_result`).

Export: each detector family says what its traced forward returns (:meth:`BaseDetector.
export_spec`: the output names and the coarsest stride) and runs it
(:meth:`BaseDetector.export_forward`: one unpadded image in, plain tensors out), and turns
those outputs back into instances in the original image (:meth:`BaseDetector.
export_instances`). ``mmdet_like.deployment`` calls these three and nothing else of a
detector.
"""

import abc
import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from mmdet_like.errors import ProjectError
from mmdet_like.models.builder import build_neck
from mmdet_like.registry import BACKBONES, build_from_cfg
from mmdet_like.structures.instance_data import DetDataSample, InstanceData
from mmdet_like.structures.instances import samples_from_lists, to_legacy_result

LEGACY_KEYS = ("gt_bboxes", "gt_labels", "gt_bboxes_ignore", "gt_masks", "proposals")


def pad_images(img, size_divisor=32, return_mask=False, valid_shapes=None):
    """(N, 3, H, W) tensor or list of (3, H_i, W_i) -> (N, 3, H', W') padded bottom/right,
    ``H'`` and ``W'`` the largest sizes rounded up to a multiple of ``size_divisor``.

    ``return_mask``: also return the padding mask, (N, H', W') bool, True on padding (what
    DETR-style heads take as their key padding mask). Each image's own content is its
    ``(H_i, W_i)`` (a list), or the whole input (a tensor); ``valid_shapes`` (N ``(h, w, ...)``,
    e.g. the samples' ``img_shape``) says it instead, for images padded before (a ``Pad``
    step of the pipeline, or a batch stacked by the collate).
    """
    if isinstance(img, torch.Tensor) and img.dim() == 3:
        img = img[None]
    images = list(img) if not isinstance(img, torch.Tensor) else None
    if images is None:
        height, width = img.shape[-2:]
    else:
        height = max(i.shape[-2] for i in images)
        width = max(i.shape[-1] for i in images)
    div = max(int(size_divisor or 1), 1)
    # rounded up with non-negative operands: ONNX integer division truncates toward zero
    height, width = (height + div - 1) // div * div, (width + div - 1) // div * div
    if images is None:
        # traced (torch.export): always pad (maybe by 0); a branch on the size is a guard
        if not torch.compiler.is_compiling() and img.shape[-2:] == (height, width):
            batch = img
        else:
            batch = F.pad(img, (0, width - img.shape[-1], 0, height - img.shape[-2]))
        sizes = [tuple(img.shape[-2:])] * img.shape[0]
    else:
        batch = images[0].new_zeros((len(images), images[0].shape[0], height, width))
        for i, image in enumerate(images):
            batch[i, :, : image.shape[-2], : image.shape[-1]] = image
        sizes = [tuple(image.shape[-2:]) for image in images]
    if not return_mask:
        return batch
    if valid_shapes is not None:
        if len(valid_shapes) != batch.shape[0]:
            raise ValueError(
                f"pad_images: {len(valid_shapes)} valid_shapes for {batch.shape[0]} images"
            )
        sizes = [(shape[0], shape[1]) for shape in valid_shapes]
    rows = torch.arange(height, device=batch.device)
    cols = torch.arange(width, device=batch.device)
    mask = torch.stack(
        [(rows[:, None] >= h) | (cols[None, :] >= w) for h, w in sizes]
    )  # fmt: skip
    return batch, mask


def cpu_has_avx512():
    """Whether torch's CPU kernels run with AVX-512 here (``torch.backends.cpu``'s
    capability), where oneDNN's channels-last training convolutions are the faster ones."""
    return torch.backends.cpu.get_cpu_capability() == "AVX512"


def _per_image_augs(value):
    """``MultiScaleFlipAug`` output (per image, a list of augmentations) as it is; a plain
    batch (one entry per image) as per-image lists of one augmentation."""
    if isinstance(value, torch.Tensor):
        return [[v] for v in value]
    return [list(v) if isinstance(v, (list, tuple)) else [v] for v in value]


def _needs_merging(samples_per_image):
    """Several augmentations of an image, or a flipped one: results must be merged in the
    original image (a single unflipped scale is a plain batch)."""
    return any(len(augs) != 1 or augs[0].metainfo.get("flip") for augs in samples_per_image)


class ExportError(ProjectError, ValueError):
    """A detector or setting that does not export (the message says which and why)."""


@dataclasses.dataclass(frozen=True)
class ExportSpec:
    """What a detector's traced forward (:meth:`BaseDetector.export_forward`) returns.

    Attributes:
        output_names: the names of its outputs, in order (``dets``, ``labels`` and, with
            such a branch, ``mask_probs``, ``keypoint_heatmaps``).
        coarsest_stride: the stride of the coarsest feature level it reads; an image side
            of a dynamic-size export must give that level at least 2 cells.
    """

    output_names: tuple
    coarsest_stride: int


def export_image_meta(height, width):
    """The meta of an export's input image: the image is its own original (resized and
    normalised before the graph; no flip)."""
    return dict(
        img_shape=(height, width, 3), ori_shape=(height, width, 3), pad_shape=(height, width, 3),
        scale_factor=1.0, flip=False,
    )  # fmt: skip


def instances_from_dets(dets, labels, img_meta):
    """An export's ``dets`` (n, 5) ``[x1, y1, x2, y2, score]`` in the input image and
    ``labels`` (n,) -> :class:`InstanceData` with the boxes in the original image (divided
    by the meta's ``scale_factor``)."""
    factor = torch.as_tensor(img_meta.get("scale_factor", 1.0), dtype=dets.dtype).reshape(-1)
    return InstanceData(bboxes=dets[:, :4] / factor, scores=dets[:, 4], labels=labels)


def coarsest_prior_stride(head, default):
    """The largest stride of a dense head's priors: its prior (anchor or point) generator's
    ``strides`` (ints or ``(w, h)`` pairs), else the head's own ``strides``, else
    ``default``."""
    generator = getattr(head, "prior_generator", None) or getattr(head, "anchor_generator", None)
    strides = generator.strides if generator is not None else getattr(head, "strides", [default])
    return int(max(max(s) if isinstance(s, (tuple, list)) else s for s in strides))


def check_exportable_nms(test_cfg, where):
    """Raise :class:`ExportError` when ``test_cfg`` (found at ``where`` in the config) asks
    for an NMS with no ONNX operator (Soft-NMS)."""
    nms_type = (test_cfg or {}).get("nms", {}).get("type", "nms")
    if nms_type != "nms":
        raise ExportError(
            f"{where}.nms.type={nms_type!r}: Soft-NMS has no ONNX operator; export with "
            f"{where}.nms=dict(type='nms', iou_thr=...) (--cfg-options)"
        )


class BaseDetector(nn.Module, metaclass=abc.ABCMeta):
    """Shared forward dispatch, image batching, backbone and neck; subclasses implement
    ``forward_train`` and ``predict_instances`` (and ``aug_predict_instances`` for
    test-time augmentation)."""

    size_divisor = 32
    # Inference on the CPU with channels-last activations (the batch is made channels-last;
    # every convolution after it keeps the format): oneDNN's forward convolutions run
    # about 9% faster so on AVX2 (docs/benchmarks.md). Not in training: its channels-last
    # weight gradients are several times slower there. Set False on an instance (or the
    # class) for NCHW inference.
    channels_last_inference = True
    # Training on the CPU with a channels-last batch (``None``: where the CPU has AVX-512,
    # :func:`cpu_has_avx512`; ``True`` / ``False``: always / never). On AVX-512 oneDNN's
    # channels-last forward and backward convolutions are faster (a DETR R-50 training step
    # 8-15% faster, docs/benchmarks.md); on AVX2 its channels-last weight gradients are
    # several times slower. Off here (the detectors whose training was measured that way
    # set ``None``: the DETR family).
    channels_last_training = False

    def _training_batch(self, batch):
        """The padded (N, 3, H, W) training batch, channels-last where
        ``channels_last_training`` asks for it (on the CPU)."""
        wanted = self.channels_last_training
        if wanted is None:
            wanted = cpu_has_avx512()
        if wanted and batch.device.type == "cpu":
            return batch.contiguous(memory_format=torch.channels_last)
        return batch

    def _init_backbone_neck(self, backbone, neck=None, pretrained=None):
        """The backbone (``pretrained`` kept for :meth:`init_backbone_neck`, never loaded at
        build time) and the optional neck, from their configs; a neck config without
        ``in_channels`` gets the backbone's ``out_channels``."""
        self.backbone = build_from_cfg(backbone, BACKBONES)
        if pretrained is not None:
            self.backbone.pretrained = pretrained
        # the neck's in_channels default to (and must match) the backbone's out_channels
        self.neck = None if neck is None else build_neck(neck, self.backbone)

    def init_backbone_neck(self):
        """Backbone weights (loading ``pretrained``), then the neck's initialisation."""
        self.backbone.init_weights()
        if self.neck is not None:
            self.neck.init_weights()

    def extract_feat(self, img):
        """(N, 3, H, W) -> tuple of pyramid features (the neck's, else the backbone's)."""
        x = self.backbone(img)
        return self.neck(x) if self.neck is not None else x

    # ------------------------------------------------------------------ the contract
    def forward(self, img, img_metas=None, return_loss=True, data_samples=None, rescale=False,
                **legacy):  # fmt: skip
        """Training (``return_loss``): the losses of :meth:`forward_train`; inference: the
        samples with ``pred_instances`` (:meth:`predict`).

        ``img_metas`` and the ``gt_*`` / ``proposals`` lists (a ``Collect`` pipeline) are
        taken instead of ``data_samples``; inference on them returns mmdetection's per-image
        results (per-class lists; proposal arrays for an RPN).
        """
        unknown = sorted(set(legacy) - set(LEGACY_KEYS))
        if unknown:
            raise TypeError(f"{type(self).__name__}.forward: unexpected arguments {unknown}")
        if data_samples is not None:
            given = sorted(k for k, v in legacy.items() if v is not None)
            if img_metas is not None or given:
                raise ValueError(
                    f"{type(self).__name__}: give data_samples or img_metas/gt_* lists, not "
                    f"both (got data_samples and {['img_metas'] if img_metas else []}{given})"
                )
            if return_loss:
                batch = self._training_batch(pad_images(img, self.size_divisor))
                return self.forward_train(batch, data_samples)
            return self.predict(img, data_samples, rescale=rescale)
        if img_metas is None:
            raise ValueError(f"{type(self).__name__}: forward needs data_samples (or img_metas)")
        if return_loss:
            samples = samples_from_lists(img_metas, **legacy)
            batch = self._training_batch(pad_images(img, self.size_divisor))
            return self.forward_train(batch, samples)
        return self.forward_test(img, img_metas, rescale=rescale, proposals=legacy.get("proposals"))

    @abc.abstractmethod
    def forward_train(self, img, data_samples):
        """(N, 3, H, W) padded batch and N :class:`DetDataSample` -> dict of losses."""

    def forward_test(self, img, img_metas, rescale=False, proposals=None):
        """Inference on the lists of a ``Collect`` pipeline: per image, mmdetection's result
        (:func:`to_legacy_result`), from the same :meth:`predict`."""
        metas_per_image = _per_image_augs(img_metas)
        proposals_per_image = None
        if proposals is not None:
            proposals_per_image = _per_image_augs(proposals)
        samples = []
        for i, metas in enumerate(metas_per_image):
            augs = proposals_per_image[i] if proposals_per_image is not None else None
            samples.append(samples_from_lists(metas, proposals=augs))
        if not isinstance(img_metas[0], (list, tuple)):
            samples = [augs[0] for augs in samples]
        predicted = self.predict(img, samples, rescale=rescale)
        return [to_legacy_result(s, getattr(self, "num_classes", None)) for s in predicted]

    @torch.no_grad()
    def predict(self, img, data_samples, rescale=False):
        """Inference: one new sample per image, the image's (first augmentation's) sample
        with ``pred_instances`` set (the samples given are not changed).

        Args:
            img: a (N, 3, H, W) batch, a list of N (3, H_i, W_i) images, or per image a list
                of its augmentations (``MultiScaleFlipAug``).
            data_samples: N :class:`DetDataSample` (metas, optional ``proposals``), or per
                image a list of its augmentations' samples.
            rescale: predictions in the original image (``ori_shape``), else in the input.

        With several augmentations of an image (or a flipped one) the detector's
        :meth:`aug_predict_instances` merges them in the original image (``rescale`` must
        be true).
        """
        samples_per_image = _per_image_augs(data_samples)
        if not all(isinstance(s, DetDataSample) for augs in samples_per_image for s in augs):
            raise TypeError(f"{type(self).__name__}.predict: data_samples must be DetDataSample")
        if _needs_merging(samples_per_image):
            if not rescale:
                raise ValueError(
                    f"{type(self).__name__}: test-time augmentation (several scales or flips) "
                    "merges results in the original image; call with rescale=True"
                )
            images_per_image = _per_image_augs(img)
            results = self.aug_predict_instances(images_per_image, samples_per_image)
        else:
            if isinstance(img, torch.Tensor):
                batch = pad_images(img, self.size_divisor)
            else:
                batch = pad_images([augs[0] for augs in _per_image_augs(img)], self.size_divisor)
            samples = [augs[0] for augs in samples_per_image]
            if batch.size(0) != len(samples):
                raise ValueError(f"{batch.size(0)} images but {len(samples)} data_samples")
            if self.channels_last_inference and batch.device.type == "cpu":
                batch = batch.contiguous(memory_format=torch.channels_last)
            results = self.predict_instances(batch, samples, rescale=rescale)
        return [
            DetDataSample(
                metainfo=augs[0].metainfo, gt_instances=augs[0].gt_instances,
                ignored_instances=augs[0].ignored_instances, proposals=augs[0].proposals,
                pred_instances=result,
            )
            for augs, result in zip(samples_per_image, results)
        ]  # fmt: skip

    # ------------------------------------------------------------------ export
    def export_spec(self):
        """The :class:`ExportSpec` of this detector's traced forward; raises
        :class:`ExportError` for a detector (or setting) that does not export. Families
        that export override it with :meth:`export_outputs`."""
        raise ExportError(
            f"{type(self).__name__}: not an exportable detector (two-stage detectors with "
            "an RPN and single-stage detectors export)"
        )

    def export_forward(self, img):
        """The traced forward: (1, 3, H, W) float image, the test pipeline's resized and
        normalised input, not padded -> the tuple of tensors :meth:`export_spec` names
        (``dets`` (n, 5) ``[x1, y1, x2, y2, score]`` in the input image, descending score;
        ``labels`` (n,) int64; the family's further outputs). Pads to ``size_divisor`` in
        the graph and runs :meth:`export_outputs` (the detector's own inference code)."""
        height, width = img.shape[-2], img.shape[-1]
        batch = pad_images(img, self.size_divisor)
        if self.channels_last_inference and img.device.type == "cpu":
            # as predict: oneDNN's channels-last convolutions (a torch.export program keeps
            # the layout; ONNX has none and ignores it)
            batch = batch.contiguous(memory_format=torch.channels_last)
        return tuple(self.export_outputs(batch, export_image_meta(height, width)))

    def export_outputs(self, batch, img_meta):
        """The outputs of :meth:`export_forward` for a padded (1, 3, H', W') ``batch`` whose
        image is described by ``img_meta``; families that export implement it."""
        self.export_spec()  # the ExportError of a detector that does not export
        raise NotImplementedError(f"{type(self).__name__}: export_spec without export_outputs")

    def export_instances(self, outputs, img_meta, mask_thr=None):
        """Exported outputs (``{name: tensor}``, the names of :meth:`export_spec`) ->
        :class:`InstanceData` in the original image of ``img_meta``: ``bboxes`` divided by
        its ``scale_factor``, ``scores``, ``labels``; families with further outputs decode
        them (masks pasted, keypoints decoded; ``mask_thr`` overrides the config's mask
        threshold)."""
        return instances_from_dets(outputs["dets"], outputs["labels"], img_meta)

    @abc.abstractmethod
    def predict_instances(self, img, data_samples, rescale=False):
        """(N, 3, H, W) batch and its N samples -> N prediction :class:`InstanceData`."""

    def aug_predict_instances(self, imgs, samples_per_image):
        """Test-time augmentation: per image, its augmented (3, H_a, W_a) inputs and their
        samples -> N prediction :class:`InstanceData` in the original images. Detectors that
        support it override this."""
        raise ValueError(
            f"{type(self).__name__}: test-time augmentation (several scales or flips per image) "
            "is not supported; use MultiScaleFlipAug with one img_scale and flip=False"
        )
