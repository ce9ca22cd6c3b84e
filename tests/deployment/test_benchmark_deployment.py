"""tools/benchmark_deployment.py on a tiny model: the three runtimes do equal work (checked
before timing, and a difference stops the run) and the table holds one row per runtime.
The test exports for the input's size only (``--fixed-size``: half the export time; the
dynamic-size export of each family is proven in test_export*.py)."""

import pytest
import torch

from tests.engine.cli_utils import ROOT, load_tool

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
skdata = pytest.importorskip("skimage.data")

RETINANET = str(ROOT / "configs" / "demo" / "retinanet_r18_fpn_demo.py")


@pytest.fixture(scope="module")
def tool():
    return load_tool("benchmark_deployment")


def test_benchmark_deployment_table(tool, tmp_path):
    import cv2

    image = tmp_path / "photo.jpg"
    cv2.imwrite(str(image), skdata.astronaut()[..., ::-1])
    out = tmp_path / "deployment.md"
    out.write_text("# Deployment\n\nkept text\n")
    assert tool.main(["--config", RETINANET, "--image", str(image), "--iters", "1",
                      "--warmup", "0", "--rounds", "1", "--fixed-size",
                      "--out", str(out)]) == 0  # fmt: skip
    text = out.read_text()
    assert text.startswith("# Deployment\n\nkept text\n")
    assert "; fixed-size exports" in text
    rows = [line for line in text.splitlines() if line.startswith("| retinanet_r18_fpn_demo")]
    assert [row.split(" | ")[3] for row in rows] == ["pytorch", "onnxruntime", "torch.export"]
    for row in rows:
        cells = row.strip("| ").split(" | ")
        assert cells[1] == "128x128" and cells[2] == "100"  # the input, 100 detections
        assert float(cells[4]) > 0 and cells[6].endswith("x")
    assert rows[0].endswith("| 1.00x |")


def test_unequal_work_stops_the_run(tool):
    """check_equal_work on stand-in runtimes (the real ones run in the test above)."""
    from mmdet_like.structures.instance_data import InstanceData

    boxes = torch.tensor([[0.0, 0, 10, 10], [20, 20, 40, 40]])

    class StandIn:
        shift = {"pytorch": 0.0, "onnxruntime": 0.0, "torch.export": 0.0}
        image = torch.zeros(1, 3, 128, 128)  # box bound: BOX_TOLERANCE x 128 = 0.0256 px

        def call(self, runtime):
            moved = boxes + torch.tensor([0.0, 0, self.shift[runtime], 0])
            return InstanceData(bboxes=moved, scores=torch.tensor([0.9, 0.8]),
                                labels=torch.tensor([0, 1]))  # fmt: skip

        def pytorch(self):
            return self.call("pytorch")

    runtimes = StandIn()
    assert tool.check_equal_work(runtimes) == 2
    runtimes.shift = dict(runtimes.shift, onnxruntime=0.1)
    with pytest.raises(RuntimeError, match="onnxruntime: not the same work as PyTorch: boxes"):
        tool.check_equal_work(runtimes)
