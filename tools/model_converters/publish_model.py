"""Make a checkpoint for release: weights and the meta needed to test or run it, no training
state, and the first 8 hex digits of its SHA-256 in the name (as mmdetection does).

    python tools/model_converters/publish_model.py IN.pth OUT.pth   # -> OUT-<sha8>.pth

Kept: ``state_dict`` and ``meta`` (config, CLASSES, keypoint_meta, versions, epoch/iter, ...).
Dropped: ``optimizer``, ``source_state_dict`` (the trained weights of a run with
``EMAHook``, whose ``state_dict`` holds their average) and the training history in meta
(``rng``, ``hook_states``, ``inner_iter``: what only resuming needs). The file is written
atomically and read back with ``torch.load(weights_only=True)``; its path is printed.
"""

import argparse
import hashlib
import os
import os.path as osp
import sys

from mmdet_like.apis.tool_utils import ToolError, require_file
from mmdet_like.engine.checkpoint import (
    atomic_torch_save,
    check_plain,
    load_checkpoint_file,
)
from mmdet_like.errors import run_tool

TRAINING_META_KEYS = ("rng", "hook_states", "inner_iter")  # only resuming needs them
DROPPED_KEYS = ("optimizer", "source_state_dict")


def publishable(checkpoint, source="checkpoint"):
    """The release form of a loaded checkpoint dict (a new dict; the input is unchanged)."""
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise ToolError(
            f"{source}: holds no 'state_dict' dict (keys: "
            f"{sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__}"
            "); is it a checkpoint written by tools/train.py?"
        )
    out = {k: v for k, v in checkpoint.items() if k not in DROPPED_KEYS}
    meta = checkpoint.get("meta")
    if isinstance(meta, dict):
        out["meta"] = {k: v for k, v in meta.items() if k not in TRAINING_META_KEYS}
    check_plain(out, source)
    return out


def sha256_of(path, chunk=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def publish(in_file, out_file):
    """Write the published checkpoint; returns its final path ``OUT-<sha8>.pth``."""
    require_file(in_file, "checkpoint")
    checkpoint = load_checkpoint_file(in_file)
    published = publishable(checkpoint, in_file)
    stem = out_file[:-4] if out_file.endswith(".pth") else out_file
    if osp.isdir(out_file):
        raise ToolError(f"output {out_file!r} is a folder; give a file name such as model.pth")
    tmp_name = f"{stem}.publishing.pth"
    atomic_torch_save(published, tmp_name)
    final = f"{stem}-{sha256_of(tmp_name)[:8]}.pth"
    os.replace(tmp_name, final)
    return final


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("in_file", help="checkpoint written by tools/train.py")
    parser.add_argument("out_file", help="output name; the hash is appended: OUT-<sha8>.pth")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    print(publish(args.in_file, args.out_file))


if __name__ == "__main__":
    sys.exit(run_tool(main))
