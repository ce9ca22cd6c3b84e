# Sourced by the launch scripts: the Python interpreter that runs the tools.
#
# PYTHON when it is set; else the active virtual environment's (VIRTUAL_ENV); else the
# project's own .venv (what `make install` creates); else python3 (or python) from the PATH.
# A bare `python` from the PATH is often another installation without torch or mmdet_like.
project_python() {
    local root
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    if [ -n "${PYTHON:-}" ]; then
        echo "$PYTHON"
    elif [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/python" ]; then
        echo "$VIRTUAL_ENV/bin/python"
    elif [ -x "$root/.venv/bin/python" ]; then
        echo "$root/.venv/bin/python"
    elif command -v python3 >/dev/null 2>&1; then
        command -v python3
    else
        echo python
    fi
}
