"""The heaviest-first order of the test modules under pytest-xdist (tests/conftest.py) and
the script that writes its cost table (tools/dev/update_test_costs.py)."""

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

from tests.conftest import MODULE_COSTS, heaviest_modules_first

ROOT = Path(__file__).resolve().parents[1]


def load_script():
    path = ROOT / "tools" / "dev" / "update_test_costs.py"
    spec = importlib.util.spec_from_file_location("update_test_costs", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_durations_report_sums_setup_call_and_teardown_per_module():
    report = [
        "============================= slowest durations =============================",
        "45.51s call     tests/engine/test_a.py::test_one",
        "4.02s setup    tests/engine/test_a.py::test_two[param-x]",
        "0.50s teardown tests/engine/test_a.py::test_two[param-x]",
        "12.00s call     tests/models/test_b.py::TestCls::test_three",
        "(1200 durations < 0.005s hidden.  Use -vv to show these durations.)",
        "1504 passed, 30 skipped in 536.01s (0:08:56)",
    ]
    costs = load_script().module_costs(report)
    assert costs == {"tests/engine/test_a.py": 50.0, "tests/models/test_b.py": 12.0}
    assert list(costs) == ["tests/engine/test_a.py", "tests/models/test_b.py"]


def test_script_refuses_a_log_without_durations(tmp_path, capsys):
    log = tmp_path / "empty.log"
    log.write_text("1 passed in 0.1s\n")
    assert load_script().main([str(log)]) == 1
    assert "--durations=0" in capsys.readouterr().err


def test_items_come_heaviest_module_first_and_unknown_modules_keep_their_order():
    costs = json.loads(MODULE_COSTS.read_text())
    heavy = list(costs)[0]
    light = [m for m, seconds in costs.items() if seconds > 0][-1]
    names = [
        "tests/not_in_the_table.py::test_1",
        f"{light}::test_a",
        f"{light}::test_b",
        "tests/also_new.py::test_2",
        f"{heavy}::test_c",
        f"{heavy}::test_d",
    ]
    items = [SimpleNamespace(nodeid=n) for n in names]
    heaviest_modules_first(items)
    assert [i.nodeid for i in items] == [
        f"{heavy}::test_c",
        f"{heavy}::test_d",
        f"{light}::test_a",
        f"{light}::test_b",
        "tests/not_in_the_table.py::test_1",
        "tests/also_new.py::test_2",
    ]


def test_every_module_in_the_cost_table_exists():
    costs = json.loads(MODULE_COSTS.read_text())
    missing = [m for m in costs if not (ROOT / m).is_file()]
    assert not missing, (
        f"{MODULE_COSTS.name} names modules that are gone: {missing}; rerun "
        "tools/dev/update_test_costs.py on a fresh --durations=0 report"
    )
