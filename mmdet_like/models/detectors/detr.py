"""DETR (Carion et al. 2020): the backbone's last level, projected to the transformer's width,
through a post-norm encoder; ``num_queries`` learned query positions through the decoder;
a class and a box per query, matched one-to-one to the gts."""

import torch
import torch.nn.functional as F
from torch import nn

from mmdet_like.models.detectors.detection_transformer import DetectionTransformer
from mmdet_like.models.layers.transformer import DetrTransformerDecoder, DetrTransformerEncoder
from mmdet_like.registry import DETECTORS, POSITIONAL_ENCODINGS, build_from_cfg


def build_positional_encoding(cfg, embed_dims):
    """A ``POSITIONAL_ENCODINGS`` module from ``cfg`` (type ``SinePositionalEncoding`` when
    not given) whose ``2 * num_feats`` channels must equal the transformer's ``embed_dims``."""
    cfg = dict(cfg)
    cfg.setdefault("type", "SinePositionalEncoding")
    encoding = build_from_cfg(cfg, POSITIONAL_ENCODINGS)
    if 2 * encoding.num_feats != embed_dims:
        raise ValueError(
            f"positional_encoding.num_feats={encoding.num_feats} gives {2 * encoding.num_feats} "
            f"channels, the transformer has embed_dims={embed_dims}; set num_feats="
            f"{embed_dims // 2}"
        )
    return encoding


def resize_mask(masks, size):
    """(B, H, W) bool padding mask -> (B, h, w) at a feature map's size (nearest, as DETR)."""
    return F.interpolate(masks[None].float(), size=size).to(torch.bool)[0]


@DETECTORS.register()
class DETR(DetectionTransformer):
    """DETR: a :class:`DetectionTransformer` with DETR's encoder and decoder
    (``DetrTransformerEncoder`` / ``DetrTransformerDecoder`` configs), a sine (or learned)
    positional encoding, a ``query_embedding`` of ``num_queries`` positions, zero initial
    queries and a ``DETRHead``.

    The neck's last level is the encoder's input (mmdetection's DETR: a 1x1
    ``ChannelMapper`` without norm or activation on the backbone's C5, DETR's
    ``input_proj``); the padding mask is resized to it (nearest).
    """

    def _init_layers(self):
        if self.encoder_cfg is None or self.decoder_cfg is None:
            raise ValueError("DETR: give model.encoder and model.decoder configs")
        self.encoder = DetrTransformerEncoder(**self.encoder_cfg)
        self.decoder = DetrTransformerDecoder(**self.decoder_cfg)
        self.embed_dims = self.encoder.embed_dims
        if self.decoder.embed_dims != self.embed_dims:
            raise ValueError(
                f"DETR: the decoder's embed_dims {self.decoder.embed_dims} differ from the "
                f"encoder's {self.embed_dims}"
            )
        if self.bbox_head.embed_dims != self.embed_dims:
            raise ValueError(
                f"DETR: bbox_head.embed_dims={self.bbox_head.embed_dims} differs from the "
                f"transformer's {self.embed_dims}; set it to {self.embed_dims}"
            )
        channels = self.neck.out_channels if self.neck is not None else None
        if channels is None:
            channels = self.backbone.out_channels[-1]
        if channels != self.embed_dims:
            raise ValueError(
                f"DETR: the encoder's input has {channels} channels (the neck's out_channels, "
                f"or the backbone's last level without a neck), the transformer "
                f"embed_dims={self.embed_dims}; set model.neck.out_channels={self.embed_dims}"
            )
        self.positional_encoding = build_positional_encoding(
            self.positional_encoding_cfg, self.embed_dims
        )
        self.query_embedding = nn.Embedding(self.num_queries, self.embed_dims)

    def pre_transformer(self, img_feats, masks, data_samples=None):
        """The last level (B, C, h, w) flattened to (B, h * w, C) with its positions and
        mask (``None`` without padding)."""
        feat = img_feats[-1]
        batch, channels, height, width = feat.shape
        if masks is None:
            pos_masks = feat.new_zeros((batch, height, width), dtype=torch.bool)
            feat_mask = None
        else:
            pos_masks = resize_mask(masks, feat.shape[-2:])
            feat_mask = pos_masks.flatten(1)
        pos_embed = self.positional_encoding(pos_masks).to(feat.dtype)
        feat = feat.flatten(2).permute(0, 2, 1)
        pos_embed = pos_embed.flatten(2).permute(0, 2, 1)
        encoder_inputs = dict(feat=feat, feat_mask=feat_mask, feat_pos=pos_embed)
        decoder_inputs = dict(memory_mask=feat_mask, memory_pos=pos_embed)
        return encoder_inputs, decoder_inputs

    def forward_encoder(self, feat, feat_mask, feat_pos):
        memory = self.encoder(query=feat, query_pos=feat_pos, key_padding_mask=feat_mask)
        return dict(memory=memory)

    def pre_decoder(self, memory):
        """Zero queries at the learned query positions."""
        batch = memory.size(0)
        query_pos = self.query_embedding.weight[None].expand(batch, -1, -1)
        query = torch.zeros_like(query_pos)
        return dict(query_pos=query_pos, query=query, memory=memory), {}

    def forward_decoder(self, query, query_pos, memory, memory_mask, memory_pos):
        hidden_states = self.decoder(
            query=query, key=memory, value=memory, query_pos=query_pos, key_pos=memory_pos,
            key_padding_mask=memory_mask,
        )  # fmt: skip
        return dict(hidden_states=hidden_states)
