"""The base of the DETR family (mmdetection 3's ``DetectionTransformer`` shape): backbone,
neck (the input projection), positional encoding, transformer encoder and decoder, and a
per-query head.

The transformer runs as four overridable steps, each returning dicts that the next ones
take as keyword arguments (:meth:`DetectionTransformer.forward_transformer`)::

    encoder_inputs, decoder_inputs = pre_transformer(feats, masks)
    encoder_outputs = forward_encoder(**encoder_inputs)
    tmp_decoder_inputs, head_inputs = pre_decoder(**encoder_outputs)
    decoder_outputs = forward_decoder(**decoder_inputs, **tmp_decoder_inputs)
    head_inputs.update(decoder_outputs)     # -> bbox_head.forward_train / predict

DETR, Deformable DETR and DINO differ in these steps and in their layers; the batching,
the padding masks, training, inference and export are shared here.
"""

import abc

import torch

from mmdet_like.models.detectors.base import BaseDetector, ExportSpec, pad_images
from mmdet_like.models.utils.cfg_keys import check_cfg_keys
from mmdet_like.registry import HEADS, build_from_cfg
from mmdet_like.structures.instance_data import DetDataSample


def padding_masks(img, data_samples, size_divisor=1):
    """The padded batch and its padding mask.

    Args:
        img: (B, 3, H, W) batch (padded already, e.g. by ``BaseDetector.forward``) or a list
            of (3, H_i, W_i) images.
        data_samples: B samples whose ``img_shape`` is each image's own content.

    Returns:
        ``(batch, masks)``: (B, 3, H', W') and (B, H', W') bool, True on padding
        (:func:`pad_images`); ``masks`` is ``None`` when no image of the batch has padding
        (known from the shapes, without looking at the data), so that the attention runs
        without a key padding mask.
    """
    shapes = []
    for i, sample in enumerate(data_samples):
        shape = sample.metainfo.get("img_shape")
        if shape is None:
            raise ValueError(
                f"data_samples[{i}] has no img_shape in its metainfo; a transformer detector "
                "needs each image's size without padding (the pipeline's Resize sets it)"
            )
        shapes.append(shape)
    batch, masks = pad_images(img, size_divisor, return_mask=True, valid_shapes=shapes)
    height, width = batch.shape[-2:]
    if not torch.compiler.is_compiling() and all(
        (int(s[0]), int(s[1])) == (height, width) for s in shapes
    ):
        masks = None
    return batch, masks


class DetectionTransformer(BaseDetector, metaclass=abc.ABCMeta):
    """Backbone, neck, transformer and head; subclasses write :meth:`_init_layers` and the
    four steps of :meth:`forward_transformer`.

    Args:
        backbone, neck: part configs (the neck maps the backbone's levels to the
            transformer's width: DETR's 1x1 ``ChannelMapper``).
        encoder, decoder: the transformer's configs (``num_layers``, ``layer_cfg``, ...),
            built by the subclass.
        bbox_head: the head config (``DETRHead`` or a subclass); gets ``train_cfg`` and
            ``test_cfg``.
        positional_encoding: ``dict(num_feats=..., normalize=True)`` (type
            ``SinePositionalEncoding`` unless given).
        num_queries: decoder queries.
        train_cfg, test_cfg: the head's settings (``assigner``; ``max_per_img``, ...).
        pretrained: backbone weights, loaded by :meth:`init_weights`.
        size_divisor: images are padded to a multiple of it (1, as mmdetection's DETR
            configs; the padding is masked out of the attention).
    """

    # a channels-last training batch where the CPU has AVX-512 (BaseDetector's switch):
    # measured on DETR R-50 (docs/benchmarks.md)
    channels_last_training = None

    def __init__(self, backbone, bbox_head, neck=None, encoder=None, decoder=None,
                 positional_encoding=None, num_queries=100, train_cfg=None, test_cfg=None,
                 pretrained=None, size_divisor=1):  # fmt: skip
        super().__init__()
        self._init_backbone_neck(backbone, neck, pretrained)
        self.size_divisor = int(size_divisor)
        self.train_cfg = None if train_cfg is None else dict(train_cfg)
        self.test_cfg = None if test_cfg is None else dict(test_cfg)
        self.encoder_cfg = encoder
        self.decoder_cfg = decoder
        self.positional_encoding_cfg = dict(positional_encoding or {})
        self.num_queries = num_queries
        self.bbox_head = build_from_cfg(
            dict(bbox_head, train_cfg=self.train_cfg, test_cfg=self.test_cfg), HEADS
        )
        self.num_classes = self.bbox_head.num_classes
        head = type(self.bbox_head)
        check_cfg_keys([(self.train_cfg, head.train_cfg_schema, "train_cfg"),
                        (self.test_cfg, head.test_cfg_schema, "test_cfg")])  # fmt: skip
        self._init_layers()

    @abc.abstractmethod
    def _init_layers(self):
        """Build the positional encoding, encoder, decoder and query embeddings."""

    def init_weights(self):
        """Backbone (loading ``pretrained``) and neck, then the transformer's and the head's
        initialisation (:meth:`init_transformer_weights`)."""
        self.init_backbone_neck()
        self.init_transformer_weights()
        self.bbox_head.init_weights()

    def init_transformer_weights(self):
        """Xavier-uniform matrices of the encoder and decoder (mmdetection's)."""
        for module in (self.encoder, self.decoder):
            for param in module.parameters():
                if param.dim() > 1:
                    torch.nn.init.xavier_uniform_(param)

    # ------------------------------------------------------------------ the steps
    def forward_transformer(self, img_feats, masks, data_samples=None):
        """Backbone / neck levels and the input padding mask (or ``None``) -> the head's
        inputs (a dict; DETR: ``hidden_states`` (L, B, Q, C))."""
        encoder_inputs, decoder_inputs = self.pre_transformer(img_feats, masks, data_samples)
        encoder_outputs = self.forward_encoder(**encoder_inputs)
        tmp_decoder_inputs, head_inputs = self.pre_decoder(**encoder_outputs)
        decoder_inputs.update(tmp_decoder_inputs)
        head_inputs.update(self.forward_decoder(**decoder_inputs))
        return head_inputs

    @abc.abstractmethod
    def pre_transformer(self, img_feats, masks, data_samples=None):
        """Features, positions and masks for the encoder and the decoder: two dicts."""

    @abc.abstractmethod
    def forward_encoder(self, **kwargs):
        """The encoder: a dict (``memory``, ...)."""

    @abc.abstractmethod
    def pre_decoder(self, **kwargs):
        """Queries from the encoder's outputs: the decoder's further inputs and the head's
        first inputs, two dicts."""

    @abc.abstractmethod
    def forward_decoder(self, **kwargs):
        """The decoder: a dict of the head's inputs (``hidden_states``, ...)."""

    # ------------------------------------------------------------------ training / inference
    def forward_train(self, img, data_samples):
        """The head's losses (``gt_instances``: ``bboxes`` in the input image, ``labels``)."""
        batch, masks = padding_masks(img, data_samples, self.size_divisor)
        head_inputs = self.forward_transformer(self.extract_feat(batch), masks, data_samples)
        return self.bbox_head.forward_train(**head_inputs, data_samples=data_samples)

    @torch.no_grad()
    def predict_instances(self, img, data_samples, rescale=False):
        """N prediction :class:`InstanceData` (``bboxes``, ``scores``, ``labels``)."""
        batch, masks = padding_masks(img, data_samples, self.size_divisor)
        head_inputs = self.forward_transformer(self.extract_feat(batch), masks, data_samples)
        metas = [s.metainfo for s in data_samples]
        return self.bbox_head.predict(**head_inputs, img_metas=metas, rescale=rescale)

    # ------------------------------------------------------------------ export
    def export_spec(self):
        """``dets``, ``labels``: the head's detections (no NMS); the coarsest stride is the
        backbone's last level's, doubled for each extra stride-2 level of the neck
        (Deformable DETR's fourth level)."""
        strides = getattr(self.backbone, "out_strides", None) or [32]
        neck = getattr(self, "neck", None)
        extra_levels = 0
        if neck is not None and hasattr(neck, "num_outs"):
            extra_levels = max(neck.num_outs - len(neck.in_channels), 0)
        coarsest = int(max(strides)) * 2**extra_levels
        return ExportSpec(output_names=("dets", "labels"), coarsest_stride=coarsest)

    def export_outputs(self, batch, img_meta):
        result = self.predict_instances(batch, [DetDataSample(metainfo=img_meta)])[0]
        return torch.cat([result.bboxes, result.scores[:, None]], dim=1), result.labels
