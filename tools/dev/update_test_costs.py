"""Write tests/module_costs.json from a pytest ``--durations=0`` report.

    python -m pytest -q -n auto --dist loadscope --durations=0 > durations.log
    python tools/dev/update_test_costs.py durations.log

The file maps each test module to the seconds its tests took (setup, call and teardown
summed). ``tests/conftest.py`` hands the modules to the pytest-xdist workers heaviest first,
so that no long module starts last while the other worker idles (``make test`` runs
``--dist loadscope --no-loadscope-reorder``). Modules missing from the file run after the
known ones, in collection order; rerun this after adding a heavy module.
"""

import json
import re
import sys
from collections import defaultdict
from pathlib import Path

LINE = re.compile(r"^\s*([0-9.]+)s\s+(setup|call|teardown)\s+(\S+?\.py)::")
OUT = Path(__file__).resolve().parents[2] / "tests" / "module_costs.json"


def module_costs(lines):
    """``--durations`` report lines -> {module path: seconds}, heaviest first."""
    costs = defaultdict(float)
    for line in lines:
        match = LINE.match(line)
        if match:
            costs[match.group(3)] += float(match.group(1))
    return dict(sorted(((m, round(s, 1)) for m, s in costs.items()), key=lambda kv: -kv[1]))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python tools/dev/update_test_costs.py DURATIONS_LOG", file=sys.stderr)
        return 2
    log = Path(argv[0])
    if not log.is_file():
        print(f"update_test_costs: {log}: no such file", file=sys.stderr)
        return 1
    costs = module_costs(log.read_text().splitlines())
    if not costs:
        print(
            f"update_test_costs: {log} holds no duration lines; run pytest with --durations=0",
            file=sys.stderr,
        )
        return 1
    OUT.write_text(json.dumps(costs, indent=1) + "\n")
    print(f"{OUT}: {len(costs)} modules, {sum(costs.values()):.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
