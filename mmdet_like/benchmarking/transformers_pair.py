"""Equal work for ``--model detr`` and ``--model deformable_detr`` of the detector benchmarks:
ours (configs/transformers/detr_r50_transformers.py, deformable_detr_r50_transformers.py)
against Hugging Face transformers' ``DetrForObjectDetection`` /
``DeformableDetrForObjectDetection``, with the same weights and the same inputs in each
side's format.

transformers (and its timm backbone) is the reference here, imported only by these
functions (never by our models, nor by our side's benchmark process: see
:func:`save_pair_weights`).

Equal work:

- Models: transformers' DETR (100 queries) and plain Deformable DETR (300 queries, no box
  refinement, no two-stage), full size (6 + 6 layers, width 256, 8 heads; Deformable DETR
  4 levels of 4 points), with its default timm ResNet-50 backbone built without pretrained
  weights (``use_pretrained_backbone=False``), 80 classes, ``auxiliary_loss=True`` (ours
  computes the losses of every decoder layer; transformers only with it), and for
  Deformable DETR ``disable_custom_kernels=True``. Its multi-scale deformable attention
  then runs its plain-PyTorch form: per level one ``grid_sample`` of the projected values
  at the sampling points, the levels' samples stacked, weighted and summed (transformers
  5.25 swaps in a compiled hub kernel only when asked to, with ``use_kernels`` /
  ``kernelize``, which this benchmark does not do; :func:`transformers_model` checks that
  the attention's ``forward`` is the plain one). DETR's attention is transformers'
  default implementation (``config._attn_implementation``, ``sdpa``: PyTorch's
  ``scaled_dot_product_attention``), as ours (``nn.MultiheadAttention``).
- Weights: random under a fixed seed, then made realistic as the equivalence tests
  (tests/models/test_transformers_detr.py, test_transformers_deformable_detr.py) make
  them: transformers initialises linear layers with std 0.02 and every query would score
  alike, so the transformer's and heads' linear layers are re-drawn xavier-uniform with
  biases in [-0.1, 0.1] (and DETR's query positions unit normal; Deformable DETR's layer
  and group norms random around 1 and 0), and the backbone's frozen batch norms get
  random statistics (``randomise_norm_statistics``: a frozen norm starts as the
  identity). The state dict is converted into ours by
  mmdet_like/models/utils/transformers_detr.py (``convert_transformers_detr`` /
  ``convert_transformers_deformable_detr``), and our config gets the architecture read
  from transformers' config (``model.decoder.norm_layer_inputs=True`` for a DETR with
  ``auxiliary_loss``: transformers' decoder then feeds each layer the previous layer's
  normalised output). Eval mode (inference): dropout off on both sides.
- Trainable parameters: transformers 5 freezes no stage of a timm backbone (its stage
  freezing matches module names of transformers' own ResNet) and its batch norms are
  frozen buffers; our configs set ``frozen_stages=-1`` with frozen norms. The training
  benchmark counts both sides' trainable parameters and stops if they differ.
- Inputs: the same 2 images of 800 x 1216 with 5 boxes each (``make_inputs``): ours the
  usual normalised batch (``our_batch``); transformers the same normalised pixels as
  ``pixel_values``, a ``pixel_mask`` of ones (no padding: one size) and ``labels`` as it
  takes them (``class_labels``, ``boxes`` as ``[cx, cy, w, h]`` normalised by the image
  size).
- Inference: from the normalised batch to the final per-image detections, score threshold
  0 on both sides so that both return the same number: transformers'
  ``post_process_object_detection`` (its image processor's, threshold 0, the image sizes
  as target sizes: DETR one detection per query, each query's best class of the softmax;
  Deformable DETR its top 100 (query, class) pairs of the sigmoid), ours with
  ``test_cfg`` ``max_per_img=100, score_thr=0`` (the same selections). The benchmark
  stops if the counts differ.
- Training: forward with the losses (transformers' ``loss`` with its auxiliary losses;
  ours the sum of our loss terms, the same terms: the equivalence tests compare each),
  backward, the gradients clipped to norm 0.1 (the DETRs' configs' clipping; unclipped, the
  random Deformable DETR's losses diverge within a few steps) and the same SGD step on
  both sides. Dropout is on in training on both sides
  at the same places (0.1 on the residual branches; transformers also drops out the
  encoder's input features, which ours does not: a little more work on its side).
"""

import json
import os

import torch

from mmdet_like.benchmarking.equal_work import (
    MODELS,
    NUM_CLASSES,
    ROOT,
    our_batch,
    randomise_norm_statistics,
)
from mmdet_like.engine import load_config
from mmdet_like.models import build_detector
from mmdet_like.models.utils.transformers_detr import (
    convert_transformers_deformable_detr,
    convert_transformers_detr,
    deformable_detr_architecture,
    detr_architecture,
)

# The test's small models (tests/test_benchmark_transformers.py): a ResNet-18 and a narrow,
# shallow transformer, so that both sides run in a second; the benchmark is full size.
SMALL = dict(
    detr=dict(backbone="resnet18", d_model=32, encoder_layers=2, decoder_layers=2,
              encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
              decoder_ffn_dim=64, num_queries=24),
    deformable_detr=dict(backbone="resnet18", out_indices=[3, 4], d_model=32,
                         encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                         decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
                         num_queries=16, num_feature_levels=3, encoder_n_points=2,
                         decoder_n_points=2),
)  # fmt: skip
# each ResNet stage's output channels (stages 1-4)
RESNET_CHANNELS = {18: [64, 128, 256, 512], 34: [64, 128, 256, 512],
                   50: [256, 512, 1024, 2048], 101: [256, 512, 1024, 2048]}  # fmt: skip
# the files of save_pair_weights
TRANSFORMERS_STATE, OUR_STATE, ARCHITECTURE = "transformers.pt", "ours.pt", "architecture.json"


def _check_model(model):
    if MODELS.get(model, {}).get("reference") != "transformers":
        names = sorted(k for k, m in MODELS.items() if m["reference"] == "transformers")
        raise ValueError(f"benchmark model {model!r} is not a transformers pair; one of {names}")


def transformers_config(model, small=False):
    """transformers' config of ``model`` ('detr' or 'deformable_detr'): full size, 80
    classes, ``auxiliary_loss=True``, its timm ResNet-50 without pretrained weights
    (``small``: the test's sizes, :data:`SMALL`)."""
    _check_model(model)
    sizes = dict(SMALL[model]) if small else {}
    backbone = dict(model_type="timm_backbone", backbone=sizes.pop("backbone", "resnet50"),
                    num_channels=3, features_only=True, use_pretrained_backbone=False)  # fmt: skip
    common = dict(num_labels=NUM_CLASSES, auxiliary_loss=True,
                  id2label={i: f"class{i}" for i in range(NUM_CLASSES)})  # fmt: skip
    if model == "detr":
        from transformers import DetrConfig

        backbone["out_indices"] = [1, 2, 3, 4]  # transformers' default for DETR
        return DetrConfig(backbone_config=backbone, **common, **sizes)
    from transformers import DeformableDetrConfig

    backbone["out_indices"] = sizes.pop("out_indices", [2, 3, 4])
    return DeformableDetrConfig(backbone_config=backbone, with_box_refine=False, two_stage=False,
                                disable_custom_kernels=True, **common, **sizes)  # fmt: skip


def _frozen_norm_types():
    from transformers.models.deformable_detr.modeling_deformable_detr import (
        DeformableDetrFrozenBatchNorm2d,
    )
    from transformers.models.detr.modeling_detr import DetrFrozenBatchNorm2d

    return (DetrFrozenBatchNorm2d, DeformableDetrFrozenBatchNorm2d)


def check_plain_attention(net):
    """Raise unless every multi-scale deformable attention of transformers' ``net`` runs
    its plain-PyTorch ``forward`` (``grid_sample``), not a hub kernel."""
    from transformers.models.deformable_detr import modeling_deformable_detr as modeling

    plain = modeling.MultiScaleDeformableAttention.forward
    # the forward written in transformers' modeling file (kernelize replaces it)
    written_there = os.path.samefile(plain.__code__.co_filename, modeling.__file__)
    for name, module in net.named_modules():
        if isinstance(module, modeling.MultiScaleDeformableAttention):
            if type(module).forward is not plain or "forward" in vars(module) or not written_there:
                raise RuntimeError(
                    f"transformers' {name} does not run its plain-PyTorch attention (a hub "
                    "kernel replaced its forward); build the model without use_kernels"
                )


def transformers_model(model, seed=0, small=False):
    """transformers' ``model`` with random weights under ``seed``, made realistic (see the
    module doc), in eval mode."""
    config = transformers_config(model, small)
    if model == "detr":
        from transformers import DetrForObjectDetection as ModelClass
    else:
        from transformers import DeformableDetrForObjectDetection as ModelClass
    torch.manual_seed(seed)
    net = ModelClass(config)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, module in net.named_modules():
            if "backbone" in name:
                continue
            if isinstance(module, torch.nn.Linear):
                torch.nn.init.xavier_uniform_(module.weight, generator=generator)
                torch.nn.init.uniform_(module.bias, -0.1, 0.1, generator=generator)
            elif model == "deformable_detr" and isinstance(
                module, (torch.nn.GroupNorm, torch.nn.LayerNorm)
            ):
                torch.nn.init.uniform_(module.weight, 0.8, 1.2, generator=generator)
                torch.nn.init.uniform_(module.bias, -0.1, 0.1, generator=generator)
        if model == "detr":
            torch.nn.init.normal_(net.model.query_position_embeddings.weight, generator=generator)
        randomise_norm_statistics(net, seed, _frozen_norm_types())
    if model == "deformable_detr":
        check_plain_attention(net)
    return net.eval()


def architecture(model, net):
    """What our config must match, read from transformers' ``net``'s config (the
    converter's ``detr_architecture`` / ``deformable_detr_architecture``)."""
    config = net.config.to_dict()
    if model == "detr":
        return detr_architecture(config)
    arch = deformable_detr_architecture(config)
    if arch["with_box_refine"] or arch["two_stage"]:
        raise ValueError("the benchmark's Deformable DETR is the plain one (no box refinement)")
    return arch


def converted_state(model, state_dict, arch):
    """transformers' state dict of ``model`` in our names."""
    if model == "detr":
        return convert_transformers_detr(state_dict)
    return convert_transformers_deformable_detr(state_dict, arch)


def config_overrides(model, arch):
    """Our config's settings for transformers' architecture ``arch`` (the sizes; for the
    full-size models they are the configs' own)."""
    depth, dims = arch["resnet_depth"], arch["d_model"]
    channels = RESNET_CHANNELS[depth]

    def attn(heads, **extra):
        return dict(embed_dims=dims, num_heads=heads, **extra)

    def ffn(width):
        return dict(embed_dims=dims, feedforward_channels=width)

    enc_heads, dec_heads = arch["encoder_attention_heads"], arch["decoder_attention_heads"]
    if model == "detr":
        encoder = dict(self_attn_cfg=attn(enc_heads), ffn_cfg=ffn(arch["encoder_ffn_dim"]))
        decoder = dict(self_attn_cfg=attn(dec_heads), cross_attn_cfg=attn(dec_heads),
                       ffn_cfg=ffn(arch["decoder_ffn_dim"]))  # fmt: skip
        return dict(
            num_queries=arch["num_queries"],
            backbone=dict(depth=depth),
            neck=dict(in_channels=[channels[3]], out_channels=dims),
            encoder=dict(num_layers=arch["encoder_layers"], layer_cfg=encoder),
            decoder=dict(
                num_layers=arch["decoder_layers"],
                layer_cfg=decoder,
                norm_layer_inputs=arch["auxiliary_loss"],
            ),
            positional_encoding=dict(num_feats=dims // 2),
            bbox_head=dict(num_classes=arch["num_classes"], embed_dims=dims),
        )
    levels, out_indices = arch["num_feature_levels"], arch["backbone_out_indices"]
    enc_attn = attn(enc_heads, num_levels=levels, num_points=arch["encoder_n_points"])
    dec_attn = attn(dec_heads, num_levels=levels, num_points=arch["decoder_n_points"])
    encoder = dict(self_attn_cfg=enc_attn, ffn_cfg=ffn(arch["encoder_ffn_dim"]))
    decoder = dict(self_attn_cfg=attn(dec_heads), cross_attn_cfg=dec_attn,
                   ffn_cfg=ffn(arch["decoder_ffn_dim"]))  # fmt: skip
    return dict(
        num_queries=arch["num_queries"],
        num_feature_levels=levels,
        backbone=dict(depth=depth, out_indices=tuple(out_indices)),
        neck=dict(
            in_channels=[channels[i] for i in out_indices], out_channels=dims, num_outs=levels
        ),
        encoder=dict(num_layers=arch["encoder_layers"], layer_cfg=encoder),
        decoder=dict(num_layers=arch["decoder_layers"], layer_cfg=decoder),
        positional_encoding=dict(num_feats=dims // 2),
        bbox_head=dict(num_classes=arch["num_classes"], embed_dims=dims),
    )


def our_model(model, config, arch, state):
    """Our detector from ``config`` set to ``arch`` (:func:`config_overrides`), test score
    threshold 0 and 100 detections an image, with the converted ``state``."""
    from mmdet_like.benchmarking.runs import equal_detections_test_cfg

    path = os.path.join(ROOT, config) if not os.path.isabs(config) else config
    cfg = load_config(path, dict(model=config_overrides(model, arch)))
    cfg.model.pretrained = None
    equal_detections_test_cfg(cfg, config)
    net = build_detector(cfg.model, cfg.get("train_cfg"), cfg.get("test_cfg"))
    missing, unexpected = net.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if not k.endswith("num_batches_tracked")]:
        raise RuntimeError(f"weights do not fit {config}: missing {missing}, extra {unexpected}")
    return net, cfg


def save_pair_weights(model, folder, seed=0, small=False):
    """Build transformers' ``model`` once and write both sides' weights into ``folder``:
    its state dict, the converted one, and the architecture with the seed and size it was
    built with; returns ``folder``.

    Our side's process then loads ours without importing transformers (whose modules
    would count in its peak memory); transformers' process builds the same model and loads
    its own."""
    net = transformers_model(model, seed, small)
    arch = architecture(model, net)
    state = net.state_dict()
    torch.save(state, os.path.join(folder, TRANSFORMERS_STATE))
    torch.save(converted_state(model, state, arch), os.path.join(folder, OUR_STATE))
    with open(os.path.join(folder, ARCHITECTURE), "w", encoding="utf-8") as f:
        json.dump(dict(model=model, seed=seed, small=small, architecture=arch), f)
    return folder


def build_pair(side, config, device, model, weights=None, seed=0):
    """The ``side`` ('ours' or 'reference') of ``model`` on ``device`` and our config
    (``None`` for transformers'); from the folder :func:`save_pair_weights` wrote, or built
    here (``weights=None``, full size, ``seed``)."""
    _check_model(model)
    small = False
    if weights is not None:
        with open(os.path.join(weights, ARCHITECTURE), encoding="utf-8") as f:
            saved = json.load(f)
        if saved["model"] != model:
            raise ValueError(f"{weights}: the weights of {saved['model']!r}, not {model!r}")
        seed, small = saved["seed"], saved["small"]

    def load(name):
        return torch.load(os.path.join(weights, name), map_location="cpu", weights_only=True,
                          mmap=True)  # fmt: skip

    if side == "reference":
        net = transformers_model(model, seed, small)
        if weights is not None:
            net.load_state_dict(load(TRANSFORMERS_STATE), strict=True)
        return net.to(device), None
    if weights is None:
        net = transformers_model(model, seed)
        arch = architecture(model, net)
        state = converted_state(model, net.state_dict(), arch)
        del net
    else:
        arch, state = saved["architecture"], load(OUR_STATE)
    net, cfg = our_model(model, config, arch, state)
    return net.to(device), cfg


def transformers_batch(samples, device, train=True):
    """transformers' forward arguments for ``samples`` (images of one size): the
    normalised (N, 3, H, W) ``pixel_values`` (our batch's), an (N, H, W) ``pixel_mask`` of
    ones and, when ``train``, ``labels`` (per image ``class_labels`` (n,) and ``boxes``
    (n, 4) ``[cx, cy, w, h]`` normalised by the image size)."""
    img = our_batch(samples, device, train=False)["img"]
    height, width = img.shape[-2:]
    inputs = dict(pixel_values=img,
                  pixel_mask=torch.ones((len(samples), height, width), dtype=torch.long,
                                        device=device))  # fmt: skip
    if train:
        scale = torch.tensor([width, height, width, height], dtype=torch.float32)
        labels = []
        for s in samples:
            boxes = torch.from_numpy(s["boxes"]) / scale
            cxcywh = torch.cat([(boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]], 1)
            labels.append(dict(class_labels=torch.from_numpy(s["labels"]).long().to(device),
                               boxes=cxcywh.to(device)))  # fmt: skip
        inputs["labels"] = labels
    return inputs


def image_processor(model):
    """transformers' image processor of ``model`` (its PIL backend, whose
    ``post_process_object_detection`` is the torchvision backend's; the benchmark uses
    nothing else of it)."""
    if model == "detr":
        from transformers import DetrImageProcessorPil as Processor
    else:
        from transformers import DeformableDetrImageProcessorPil as Processor
    return Processor()


def reference_inference(model, net, samples, device):
    """A call of transformers' ``net`` on ``samples`` to its final detections (score
    threshold 0, boxes in the image); returns the detections per image."""
    inputs = transformers_batch(samples, device, train=False)
    sizes = [tuple(inputs["pixel_values"].shape[-2:])] * len(samples)
    processor = image_processor(model)

    def infer():
        outputs = net(**inputs)
        results = processor.post_process_object_detection(outputs, threshold=0.0,
                                                          target_sizes=sizes)  # fmt: skip
        return [len(r["boxes"]) for r in results]

    return infer


def reference_training_loss(model, net, samples, device):
    """A call of transformers' ``net`` on ``samples`` with their labels; returns its
    total loss (with the auxiliary losses)."""
    inputs = transformers_batch(samples, device, train=True)

    def losses():
        return net(**inputs).loss

    return losses
