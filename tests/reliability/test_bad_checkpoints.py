"""Bad checkpoint files: not a checkpoint at all, truncated, of another model, or a pickle
that would run code when loaded.

Decided (``mmdet_like.engine.checkpoint``): every checkpoint is read with
``torch.load(weights_only=True)``; a file that cannot be read raises
:class:`CheckpointError` naming the file and saying what it is (empty, text, a Git LFS
pointer, a zip that is no checkpoint, a cut-off archive, random bytes) and, for a pickle
that imports anything but tensors and plain types, which global it refers to; nothing in
the file runs. Weights that do not fit are listed in a table (key, problem, checkpoint
shape, model shape): a warning when loading non-strictly (``load_from``, ``tools/test.py``,
``init_detector``), an error when strict (``resume``), and an error in any mode when no
weight fits at all. The paths covered: ``load_checkpoint``, ``EpochBasedRunner.resume``,
``init_detector``, ``tools/test.py`` and a backbone's ``pretrained=`` file.
"""

import io
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mmdet_like.engine import CheckpointError, EpochBasedRunner, load_checkpoint, save_checkpoint
from mmdet_like.engine.checkpoint import CheckpointMismatchWarning
from mmdet_like.models.utils.pretrained import PretrainedWeightsError, load_pretrained

ROOT = Path(__file__).resolve().parents[2]

# torch warns about the pickle protocol of the raw pickles before refusing them
pytestmark = pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")


class Small(nn.Module):
    def __init__(self, hidden=4):
        super().__init__()
        self.fc1 = nn.Linear(3, hidden)
        self.fc2 = nn.Linear(hidden, 2)


def good_checkpoint(path, model=None):
    model = model or Small()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    save_checkpoint(str(path), model, optimizer, meta={"epoch": 1, "iter": 4})
    return path


class OpenOnLoad:
    """Unpickling this calls ``open(marker, "w")``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class SystemOnLoad:
    """Unpickling this runs ``touch marker`` through ``os.system``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class ExecOnLoad:
    """Unpickling this runs Python source through ``exec``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def malicious_files(tmp_path, marker):
    """(path, the global it refers to): pickles that would create ``marker`` if loaded."""
    files = []
    path = tmp_path / "torch_save_open.pth"  # torch's zip format, a normal-looking checkpoint
    torch.save({"state_dict": Small().state_dict(), "meta": OpenOnLoad(marker)}, path)
    files.append((path, "io.open"))
    path = tmp_path / "raw_system_p2.pth"  # a raw pickle, protocol 2 (the legacy format's)
    path.write_bytes(pickle.dumps({"state_dict": SystemOnLoad(marker)}, protocol=2))
    files.append((path, f"{os.system.__module__}.system"))
    path = tmp_path / "raw_exec_p5.pth"  # a raw pickle, protocol 5
    path.write_bytes(pickle.dumps(ExecOnLoad(marker), protocol=5))
    files.append((path, "builtins.exec"))
    return files


def not_checkpoints(tmp_path):
    """(path, what the message must say) for files that are no checkpoint."""
    good = good_checkpoint(tmp_path / "good.pth").read_bytes()
    legacy = io.BytesIO()
    torch.save(Small().state_dict(), legacy, _use_new_zipfile_serialization=False)
    cases = {
        "random.pth": (bytes([1, 2, 3]) + np.random.default_rng(0).bytes(2000),
                       "not a checkpoint: neither a PyTorch zip archive nor a pickle"),
        "empty.pth": (b"", "the file is empty (0 bytes)"),
        "notes.pth": (b"epoch 12, mAP 0.37\nsee the wiki\n",
                      "a text file, not a checkpoint (it starts with 'epoch 12"),
        "lfs.pth": (b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 9\n",
                    "a Git LFS pointer, not the checkpoint itself. Fetch it: git lfs pull"),
        "half.pth": (good[: len(good) // 2], "a damaged zip archive"),
        "head.pth": (good[:100], "a damaged zip archive"),
        "legacy_half.pth": (legacy.getvalue()[: len(legacy.getvalue()) // 2],
                            "a truncated or damaged checkpoint"),
    }  # fmt: skip
    files = []
    for name, (content, expected) in cases.items():
        (tmp_path / name).write_bytes(content)
        files.append((tmp_path / name, expected))
    with zipfile.ZipFile(tmp_path / "photos.pth", "w") as archive:
        archive.writestr("IMG_001.jpg", b"\xff\xd8\xff")
    files.append((tmp_path / "photos.pth", "a zip archive but not a PyTorch checkpoint"))
    return files


def test_files_that_are_no_checkpoint(tmp_path):
    for path, expected in not_checkpoints(tmp_path):
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(Small(), str(path))
        message = str(info.value)
        assert message.startswith(f"{path}: "), message
        assert expected in message, message
    os.mkdir(tmp_path / "folder.pth")
    with pytest.raises(CheckpointError, match=r"folder.pth' is a folder, not a checkpoint"):
        load_checkpoint(Small(), str(tmp_path / "folder.pth"))


@pytest.mark.parametrize(
    "content, expected",
    [
        ([1, 2, 3], "expected a dict, got list"),
        (torch.zeros(3), "expected a dict, got Tensor"),
        ({"state_dict": [torch.zeros(2)]}, "'state_dict' must be a dict of tensors, got list"),
        ({"state_dict": {0: torch.zeros(2)}}, "0 -> Tensor"),
        ({"state_dict": {"fc1.weight": "zeros"}}, "'fc1.weight' -> str"),
        ({"fc1.weight": torch.zeros(4, 3), "epoch": 3}, "the file must map weight names"),
    ],
    ids=["list", "tensor", "state_dict list", "int key", "str value", "mixed raw dict"],
)
def test_checkpoint_with_the_wrong_structure(tmp_path, content, expected):
    path = tmp_path / "odd.pth"
    torch.save(content, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(Small(), str(path))
    assert str(info.value).startswith(f"{path}: ") and expected in str(info.value)


def test_pickle_that_would_run_code_is_refused_and_does_not_run(tmp_path):
    marker = tmp_path / "MARKER"
    for path, global_name in malicious_files(tmp_path, marker):
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(Small(), str(path))
        message = str(info.value)
        assert message.startswith(f"{path}: ")
        assert "other than tensors and plain types" in message
        assert f"it refers to {global_name}" in message and "arbitrary code" in message
        assert not marker.exists()
    # the same bytes do run code when unpickled without weights_only: the test is real
    pickle.loads((tmp_path / "raw_exec_p5.pth").read_bytes())
    assert marker.exists()


def test_checkpoint_of_another_model_is_reported_in_a_table(tmp_path, caplog):
    path = good_checkpoint(tmp_path / "other.pth", Small(hidden=5))
    target = Small(hidden=4)
    before = target.fc1.weight.detach().clone()
    with pytest.warns(CheckpointMismatchWarning) as record:  # non-strict, no logger: a warning
        load_checkpoint(target, str(path))
    table = str(record[0].message)
    assert (
        "| key" in table and "| problem" in table and "| checkpoint shape | model shape |" in table
    )
    assert "| fc1.weight | shape mismatch (not loaded) | (5, 3)           | (4, 3)" in table
    assert "fc2.weight | shape mismatch (not loaded) | (2, 5)" in table
    assert torch.equal(target.fc1.weight, before)  # nothing of the wrong shape was copied
    assert torch.equal(target.fc2.bias, torch.load(path)["state_dict"]["fc2.bias"])
    with pytest.raises(CheckpointError) as info:  # strict (as resume is): an error
        load_checkpoint(target, str(path), strict=True)
    assert "weights not loaded as they are" in str(info.value) and "(5, 3)" in str(info.value)
    # a model that shares no weight with the checkpoint: an error even when not strict
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(nn.Conv2d(3, 4, 3), str(path))
    message = str(info.value)
    assert "none of the checkpoint's 4 weights fits this Conv2d (2 weights)" in message
    assert "unexpected (not in model)" in message and "missing in checkpoint" in message


def test_runner_resume_refuses_bad_files(tmp_path):
    marker = tmp_path / "MARKER"

    def runner():
        model = Small()
        return EpochBasedRunner(model, torch.optim.SGD(model.parameters(), lr=0.1),
                                work_dir=str(tmp_path / "work"))  # fmt: skip

    for path, global_name in malicious_files(tmp_path, marker):
        with pytest.raises(CheckpointError, match=f"it refers to {global_name}"):
            runner().resume(str(path))
    assert not marker.exists()
    for path, expected in not_checkpoints(tmp_path):
        with pytest.raises(CheckpointError) as info:
            runner().resume(str(path))
        assert expected in str(info.value)
    path = good_checkpoint(tmp_path / "other.pth", Small(hidden=5))
    with pytest.raises(CheckpointError, match=r"shape mismatch \(not loaded\) \| \(5, 3\)"):
        runner().resume(str(path))
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match=r"list.pth: expected a dict, got list"):
        runner().resume(str(tmp_path / "list.pth"))
    resumed = runner()
    resumed.resume(str(good_checkpoint(tmp_path / "good.pth")))
    assert resumed.epoch == 1 and resumed.iter == 4


def test_backbone_pretrained_file_is_read_weights_only(tmp_path):
    marker = tmp_path / "MARKER"
    for path, global_name in malicious_files(tmp_path, marker):
        with pytest.raises(PretrainedWeightsError, match=f"it refers to {global_name}"):
            load_pretrained(Small(), str(path))
    assert not marker.exists()
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(PretrainedWeightsError, match=r"empty.pth: the file is empty"):
        load_pretrained(Small(), str(tmp_path / "empty.pth"))


def test_init_detector_refuses_bad_and_foreign_checkpoints(tmp_path):
    from mmdet_like.apis import init_detector
    from tests.apis.test_inference import tiny_cfg

    marker = tmp_path / "MARKER"
    cfg = tiny_cfg()
    path, global_name = malicious_files(tmp_path, marker)[0]
    with pytest.raises(CheckpointError, match=f"it refers to {global_name}"):
        init_detector(cfg, str(path))
    assert not marker.exists()
    foreign = good_checkpoint(tmp_path / "small.pth")
    with pytest.raises(CheckpointError, match=r"none of the checkpoint's 4 weights fits this "
                                              r"MaskRCNN"):  # fmt: skip
        init_detector(cfg, str(foreign))


TOY_TEST_CONFIG = """
custom_imports = dict(imports=["tests.engine.toy"])
model = dict(type="ToyRegressor")
data = dict(imgs_per_gpu=2, workers_per_gpu=0, test=dict(type="ToyRegressionDataset",
            num_samples=4))
"""


def test_test_tool_refuses_a_malicious_checkpoint(tmp_path):
    marker = tmp_path / "MARKER"
    (tmp_path / "toy.py").write_text(TOY_TEST_CONFIG)
    path, global_name = malicious_files(tmp_path, marker)[1]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "test.py"), str(tmp_path / "toy.py"), str(path),
         "--out", "results.pkl"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )  # fmt: skip
    assert out.returncode != 0
    # the project's error as one message, no traceback
    assert out.stderr.startswith("test.py: error: ") and "Traceback" not in out.stderr
    assert f"it refers to {global_name}" in out.stderr
    assert not marker.exists()
