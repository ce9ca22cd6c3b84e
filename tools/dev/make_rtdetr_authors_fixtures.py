"""Reference fixtures from the RT-DETR authors' own code (lyuwenyu/RT-DETR), for
tests/models/test_rtdetr_authors.py.

Runs on a checkout of their repository, nothing installed: their ``rtdetr_pytorch/src`` and
``rtdetrv2_pytorch/src`` modules are imported from it with their registry decorator and
their distributed helpers stubbed; nothing here imports mmdet_like:

    python tools/dev/make_rtdetr_authors_fixtures.py --repo PATH/TO/RT-DETR

(made from commit 068dfde of their ``main``). Writes to tests/fixtures/rtdetr_authors/:

- ``state_dict_names.json``: the state-dict names and shapes of their RT-DETR R18-vd and
  R50-vd and RT-DETRv2 R18-vd (per-level points ``[4, 4, 4]``), the backbones at full
  width, the hybrid encoder and the decoder small (width 32, 4 heads, FFN 64, 2 decoder
  layers, 20 queries, 5 classes, 9 denoising queries);
- ``r18vd.pth``: their RT-DETR R18-vd of those sizes (the R18 recipe: the backbone's batch
  norms trained, nothing frozen; expansion 0.5) with the weights of :func:`fixture_weights`
  (seeded; the test makes them again from the names), on :func:`fixture_inputs` (two
  scikit-image photographs at 320 x 320, five hand-placed boxes): the eval-mode logits and
  boxes; in training mode (``torch.manual_seed(DN_SEED)`` before the forward: the
  denoising groups' draws) every weighted loss term of their ``SetCriterion`` (their R50
  recipe's weights and matcher), and after ``backward`` each parameter's gradient sum and
  absolute sum and the full gradients of the decoder's box branches (look forward twice).

Every file holds only tensors and plain types (``torch.load(weights_only=True)``).
"""

import argparse
import importlib.util
import inspect
import json
import math
import os.path as osp
import sys
import types

import torch
import torch.nn.functional as F

HERE = osp.dirname(osp.abspath(__file__))
OUT = osp.join(HERE, "..", "..", "tests", "fixtures", "rtdetr_authors")
WEIGHT_SEED, DN_SEED = 0, 123
SIZE = 320
SMALL = dict(hidden_dim=32, nhead=4, dim_feedforward=64, num_layers=2, num_queries=20,
             num_classes=5, num_denoising=9)  # fmt: skip
TARGETS = (  # (x1, y1, x2, y2) in the 320 x 320 input, labels
    ([[90, 10, 160, 90], [20, 60, 190, 300], [120, 130, 180, 190]], [1, 3, 0]),
    ([[70, 50, 175, 200], [10, 8, 80, 95]], [2, 1]),
)


def fixture_weights(shapes, seed=WEIGHT_SEED):
    """Deterministic weights for a ``{name: shape}`` state dict, drawn in sorted name order
    from one generator: matrices and kernels N(0, 1 / fan_in), 1-d weights (norms) in [0.9,
    1.1], biases in [-0.1, 0.1], running means N(0, 0.01), running variances in [0.5, 1.5],
    ``num_batches_tracked`` 0; RT-DETRv2's ``num_points_scale`` (1 / points) is left out."""
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for name in sorted(shapes):
        shape = tuple(shapes[name])
        if name.endswith("num_points_scale"):
            continue
        if name.endswith("num_batches_tracked"):
            out[name] = torch.zeros(shape, dtype=torch.long)
        elif name.endswith("running_var"):
            out[name] = torch.rand(shape, generator=generator) + 0.5
        elif name.endswith("running_mean"):
            out[name] = torch.randn(shape, generator=generator) * 0.1
        elif len(shape) >= 2:
            fan_in = math.prod(shape[1:])
            out[name] = torch.randn(shape, generator=generator) / math.sqrt(fan_in)
        elif name.endswith("bias"):
            out[name] = torch.rand(shape, generator=generator) * 0.2 - 0.1
        else:
            out[name] = torch.rand(shape, generator=generator) * 0.2 + 0.9
    return out


def fixture_inputs():
    """(2, 3, 320, 320) float images in [0, 1] (scikit-image's ``astronaut`` and ``coffee``,
    bilinearly resized) and their targets (``labels``, ``boxes`` normalised cxcywh)."""
    from skimage import data

    images = []
    for rgb in (data.astronaut(), data.coffee()):
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0
        images.append(F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False))
    targets = []
    for boxes, labels in TARGETS:
        b = torch.tensor(boxes, dtype=torch.float32) / SIZE
        cxcywh = torch.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2,
                              b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], -1)  # fmt: skip
        targets.append(dict(labels=torch.tensor(labels), boxes=cxcywh))
    return torch.cat(images), targets


def load_authors(root, version, with_loss=False):
    """Their modules from ``root`` (``rtdetr_pytorch`` or ``rtdetrv2_pytorch``); with
    ``with_loss`` also their matcher and criterion."""
    for name in [n for n in sys.modules if n == "src" or n.startswith("src.")]:
        del sys.modules[name]

    def package(name, path):
        module = types.ModuleType(name)
        module.__path__ = [path]
        sys.modules[name] = module
        return module

    package("src", f"{root}/src")
    core = types.ModuleType("src.core")
    core.register = lambda *a, **k: a[0] if a and callable(a[0]) else (lambda c: c)
    sys.modules["src.core"] = core
    dist = types.ModuleType("src.misc.dist")
    dist.get_world_size = lambda: 1
    dist.is_dist_available_and_initialized = lambda: False
    dist.is_dist_avail_and_initialized = lambda: False
    package("src.misc", f"{root}/src/misc")
    sys.modules["src.misc.dist"] = dist
    for name in ("src.nn", "src.nn.backbone", "src.zoo", "src.zoo.rtdetr"):
        package(name, f"{root}/{name.replace('.', '/')}")

    def module(name):
        spec = importlib.util.spec_from_file_location(name, f"{root}/{name.replace('.', '/')}.py")
        loaded = importlib.util.module_from_spec(spec)
        sys.modules[name] = loaded
        spec.loader.exec_module(loaded)
        return loaded

    decoder = "rtdetrv2_decoder" if version == 2 else "rtdetr_decoder"
    modules = dict(
        presnet=module("src.nn.backbone.presnet"),
        encoder=module("src.zoo.rtdetr.hybrid_encoder"),
        decoder=module(f"src.zoo.rtdetr.{decoder}"),
        rtdetr=module("src.zoo.rtdetr.rtdetr"),
    )
    if with_loss:
        modules["matcher"] = module("src.zoo.rtdetr.matcher")
        modules["criterion"] = module("src.zoo.rtdetr.rtdetr_criterion")
    return modules


def build(modules, version, depth):
    """Their RTDETR of the small sizes, R18's recipe for depth < 50, R50's otherwise."""
    backbone = modules["presnet"].PResNet(
        depth, variant="d", return_idx=[1, 2, 3], freeze_at=-1 if depth < 50 else 0,
        freeze_norm=depth >= 50, pretrained=False,
    )  # fmt: skip
    encoder = modules["encoder"].HybridEncoder(
        in_channels=backbone.out_channels, hidden_dim=SMALL["hidden_dim"],
        nhead=SMALL["nhead"], dim_feedforward=SMALL["dim_feedforward"],
        expansion=0.5 if depth < 50 else 1.0,
    )  # fmt: skip
    decoder_type = (modules["decoder"].RTDETRTransformerv2 if version == 2
                    else modules["decoder"].RTDETRTransformer)  # fmt: skip
    kwargs = dict(num_classes=SMALL["num_classes"], hidden_dim=SMALL["hidden_dim"],
                  num_queries=SMALL["num_queries"], feat_channels=[SMALL["hidden_dim"]] * 3,
                  num_levels=3, nhead=SMALL["nhead"], dim_feedforward=SMALL["dim_feedforward"],
                  num_denoising=SMALL["num_denoising"])  # fmt: skip
    params = inspect.signature(decoder_type.__init__).parameters
    kwargs["num_layers" if "num_layers" in params else "num_decoder_layers"] = SMALL["num_layers"]
    if version == 2:
        kwargs["num_points"] = [4, 4, 4]
    return modules["rtdetr"].RTDETR(backbone, encoder, decoder_type(**kwargs))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", required=True, help="a checkout of lyuwenyu/RT-DETR")
    parser.add_argument("--out", default=OUT)
    args = parser.parse_args(argv)
    import os

    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(1)
    names = {}
    for version, folder, depths in (
        (1, "rtdetr_pytorch", (18, 50)),
        (2, "rtdetrv2_pytorch", (18,)),
    ):
        modules = load_authors(osp.join(args.repo, folder), version)
        for depth in depths:
            model = build(modules, version, depth)
            names[f"rtdetr{'v2' if version == 2 else ''}_r{depth}vd"] = {
                k: list(v.shape) for k, v in model.state_dict().items()
            }
    with open(osp.join(args.out, "state_dict_names.json"), "w", encoding="utf-8") as f:
        json.dump(names, f, indent=0, sort_keys=True)

    modules = load_authors(osp.join(args.repo, "rtdetr_pytorch"), 1, with_loss=True)
    model = build(modules, 1, 18)
    shapes = names["rtdetr_r18vd"]
    model.load_state_dict(fixture_weights(shapes), strict=True)
    images, targets = fixture_inputs()
    model.eval()
    with torch.no_grad():
        out = model(images)
    fixture = dict(eval_logits=out["pred_logits"], eval_boxes=out["pred_boxes"])
    matcher = modules["matcher"].HungarianMatcher(
        weight_dict=dict(cost_class=2, cost_bbox=5, cost_giou=2), use_focal_loss=True,
        alpha=0.25, gamma=2.0,
    )  # fmt: skip
    criterion = modules["criterion"].SetCriterion(
        matcher, weight_dict=dict(loss_vfl=1, loss_bbox=5, loss_giou=2), losses=["vfl", "boxes"],
        alpha=0.75, gamma=2.0, num_classes=SMALL["num_classes"],
    )  # fmt: skip
    model.train()
    torch.manual_seed(DN_SEED)
    out = model(images, targets)
    losses = criterion(out, targets)
    sum(losses.values()).backward()
    fixture["losses"] = {k: v.detach() for k, v in losses.items()}
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    fixture["grad_sums"] = {n: torch.stack([g.sum(), g.abs().sum()]) for n, g in grads.items()}
    fixture["box_branch_grads"] = {n: g for n, g in grads.items() if "dec_bbox_head" in n}
    torch.save(fixture, osp.join(args.out, "r18vd.pth"))
    print(f"wrote {args.out}: {len(fixture['losses'])} losses, {len(grads)} gradients")


if __name__ == "__main__":
    main()
