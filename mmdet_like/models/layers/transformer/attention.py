"""The two sublayers of a DETR-style transformer layer, each with its residual connection
inside (mmcv's ``MultiheadAttention`` and ``FFN``, whose parameter names these keep).

Sequences are batch-first: (B, L, C).
"""

from torch import nn

ACTIVATIONS = {"ReLU": nn.ReLU, "GELU": nn.GELU, "SiLU": nn.SiLU}


def build_activation(act_cfg, where="act_cfg"):
    """``dict(type="ReLU" | "GELU" | "SiLU", inplace=...)`` -> the module; ``None`` -> the
    identity. GELU is the exact (erf) form, as ``nn.GELU()``, RT-DETR's and transformers'
    ``"gelu"``."""
    if act_cfg is None:
        return nn.Identity()
    cfg = dict(act_cfg)
    kind = cfg.pop("type", None)
    if kind not in ACTIVATIONS:
        raise ValueError(f"{where}={act_cfg!r}: type must be one of {sorted(ACTIVATIONS)}")
    inplace = cfg.pop("inplace", kind != "GELU")
    if cfg:
        raise ValueError(f"{where}: unknown key(s) {sorted(cfg)}; it takes type, inplace")
    return nn.GELU() if kind == "GELU" else ACTIVATIONS[kind](inplace=inplace)


class MultiheadAttention(nn.Module):
    """``query + dropout(attn(query + query_pos, key + key_pos, value))``.

    Args:
        embed_dims: the width C.
        num_heads: attention heads (C divisible by it).
        attn_drop: dropout on the attention weights.
        proj_drop: dropout on the output projection's result.
        dropout: dropout on the residual branch; mmcv's ``dropout`` sets both this and
            ``attn_drop`` (DETR's 0.1 on both), so ``attn_drop`` defaults to it.

    Parameters: ``attn`` is ``nn.MultiheadAttention`` (``attn.in_proj_weight`` (3C, C), the
    query, key and value projections stacked in that order; ``attn.out_proj``).
    """

    def __init__(self, embed_dims, num_heads, attn_drop=None, proj_drop=0.0, dropout=0.0):
        super().__init__()
        if embed_dims % num_heads:
            raise ValueError(
                f"MultiheadAttention: embed_dims {embed_dims} is not divisible by num_heads "
                f"{num_heads}"
            )
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        attn_drop = dropout if attn_drop is None else attn_drop
        self.attn = nn.MultiheadAttention(
            embed_dims, num_heads, dropout=attn_drop, batch_first=True
        )
        self.proj_drop = nn.Dropout(proj_drop)
        self.dropout_layer = nn.Dropout(dropout)

    def forward(self, query, key=None, value=None, query_pos=None, key_pos=None,
                key_padding_mask=None, attn_mask=None):  # fmt: skip
        """(B, Lq, C) query; key and value (B, Lk, C) (the key defaults to the query, the
        value to the key); ``query_pos`` / ``key_pos`` are added to query and key, not to
        the value (self-attention: the key's position defaults to the query's);
        ``key_padding_mask`` (B, Lk) True on keys not to attend to; ``attn_mask`` (Lq, Lk)
        or (B * heads, Lq, Lk), True where not allowed -> (B, Lq, C)."""
        if key is None:
            key = query
        if value is None:
            value = key
        if key_pos is None and query_pos is not None and key is query:
            key_pos = query_pos
        q = query if query_pos is None else query + query_pos
        k = key if key_pos is None else key + key_pos
        out = self.attn(
            q, k, value, key_padding_mask=key_padding_mask, attn_mask=attn_mask,
            need_weights=False,
        )[0]  # fmt: skip
        return query + self.dropout_layer(self.proj_drop(out))


class FFN(nn.Module):
    """``x + dropout(fc2(drop(act(fc1(x)))))`` (with ``add_residual``; without, no ``x +``).

    Args:
        embed_dims: input and output width.
        feedforward_channels: the hidden width.
        ffn_drop: dropout after the activation and after the second linear layer.
        dropout: dropout on the residual branch (mmcv's ``dropout_layer``).
        add_residual: add the input.
        act_cfg: the activation, ``dict(type="ReLU")`` (DETR's, the default), ``"GELU"``
            (RT-DETR's encoder) or ``"SiLU"`` (:func:`build_activation`).

    Parameters (mmcv's names): ``layers.0.0`` the first linear layer, ``layers.1`` the
    second.
    """

    def __init__(self, embed_dims, feedforward_channels, ffn_drop=0.0, dropout=0.0,
                 add_residual=True, act_cfg=None):  # fmt: skip
        super().__init__()
        self.embed_dims = embed_dims
        self.feedforward_channels = feedforward_channels
        act = build_activation(act_cfg or dict(type="ReLU", inplace=True), "ffn_cfg.act_cfg")
        self.layers = nn.Sequential(
            nn.Sequential(
                nn.Linear(embed_dims, feedforward_channels), act, nn.Dropout(ffn_drop),
            ),
            nn.Linear(feedforward_channels, embed_dims),
            nn.Dropout(ffn_drop),
        )  # fmt: skip
        self.dropout_layer = nn.Dropout(dropout)
        self.add_residual = add_residual

    def forward(self, x):
        """(..., embed_dims) -> (..., embed_dims)."""
        out = self.dropout_layer(self.layers(x))
        return x + out if self.add_residual else out
