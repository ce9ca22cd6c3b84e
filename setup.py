"""Build script of mmdet_like: the Python package plus one compiled extension, ``mmdet_like._ext``.

The extension holds the roi_align and nms kernels in ``ops/``. CPU kernels are always built.
CUDA kernels are built when a CUDA toolkit is found (or ``FORCE_CUDA=1``), for the
architectures in ``TORCH_CUDA_ARCH_LIST`` (default "8.0;9.0").

The toolkit is looked up here, before ``torch.utils.cpp_extension`` is imported, because
that module guesses ``CUDA_HOME`` from the folder of the first ``nvcc`` on the PATH. On
machines where ``nvcc`` is a wrapper script (``/usr/local/bin/nvcc``) that guess is
``/usr/local``, which holds no ``lib64/libcudart``, and the link fails.

torch is imported only where the ops are built: a build without them
(``MMDET_LIKE_WITH_OPS=0``, or no C++ compiler) needs no torch, and build_backend.py asks
pip for torch in the build environment only then.
"""

import glob
import os
import re
import shutil
import subprocess

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

ROOT = os.path.dirname(os.path.abspath(__file__))


def _is_toolkit(folder):
    """A CUDA toolkit folder has bin/nvcc and libcudart in lib64 (or targets/*/lib)."""
    if not folder or not os.path.isfile(os.path.join(folder, "bin", "nvcc")):
        return False
    patterns = ("lib64/libcudart.so*", "lib/libcudart.so*", "targets/*/lib/libcudart.so*")
    return any(glob.glob(os.path.join(folder, p)) for p in patterns)


def _toolkit_of_nvcc(nvcc):
    """Ask nvcc where it lives: its dry run prints ``TOP=<toolkit>/bin/..``."""
    try:
        out = subprocess.run(
            [nvcc, "--dryrun", "--version"], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"TOP=(\S+)", out.stdout + out.stderr)
    return os.path.realpath(match.group(1)) if match else None


def find_cuda_home():
    """Return the CUDA toolkit folder, or None. Raises if CUDA_HOME is set but wrong."""
    env = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if env:
        if not _is_toolkit(env):
            raise SystemExit(
                f"setup.py: CUDA_HOME={env!r} is not a CUDA toolkit folder (it needs bin/nvcc and "
                "lib64/libcudart.so). Point CUDA_HOME at the toolkit itself, e.g. "
                "/usr/local/cuda-13.0, or unset it to let setup.py find one."
            )
        return env
    candidates = []
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(_toolkit_of_nvcc(nvcc))
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    candidates.append("/usr/local/cuda")
    for folder in candidates:
        if _is_toolkit(folder):
            return os.path.realpath(folder)
    return None


CUDA_HOME = find_cuda_home()
if CUDA_HOME:
    os.environ["CUDA_HOME"] = CUDA_HOME
os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")


def read_version():
    with open(os.path.join(ROOT, "mmdet_like", "version.py")) as f:
        return re.search(r'__version__ = "([^"]+)"', f.read()).group(1)


def make_extensions():
    """The compiled ops as a list of one extension, or none (a pure-Python package that runs
    the PyTorch/torchvision fallback ops, see mmdet_like/ops/_ext_loader.py).

    ``MMDET_LIKE_WITH_OPS=0`` builds none; ``=1`` requires them (no C++ compiler is then an
    error); unset, they are built where the C++ compiler (``$CXX``, default ``c++``) exists.
    """
    with_ops = os.environ.get("MMDET_LIKE_WITH_OPS", "").strip()
    if with_ops == "0":
        print("setup.py: MMDET_LIKE_WITH_OPS=0: building no compiled ops; mmdet_like will run "
              "the slower PyTorch/torchvision fallback ops")  # fmt: skip
        return []
    compiler = (os.environ.get("CXX") or "c++").split()[0]
    if shutil.which(compiler) is None:
        if with_ops == "1":
            raise SystemExit(
                f"setup.py: MMDET_LIKE_WITH_OPS=1 but no C++ compiler {compiler!r} was found "
                "(set CXX to one, or MMDET_LIKE_WITH_OPS=0 to install without the compiled ops)."
            )
        print(f"setup.py: no C++ compiler {compiler!r} found (set CXX to one): building no "
              "compiled ops; mmdet_like will run the slower PyTorch/torchvision fallback ops. "
              "Install a compiler and reinstall to build them.")  # fmt: skip
        return []
    return [make_extension()]


def make_extension():
    # imported here (with CUDA_HOME set above): a build without the ops needs no torch
    from torch.utils.cpp_extension import CppExtension, CUDAExtension

    sources = sorted(glob.glob(os.path.join("ops", "**", "*.cpp"), recursive=True))
    cuda_sources = sorted(glob.glob(os.path.join("ops", "**", "*.cu"), recursive=True))
    force_cuda = os.environ.get("FORCE_CUDA", "0") == "1"
    # MMDET_LIKE_NO_CUDA=1 skips the CUDA kernels (a faster build for CPU-only development).
    skip_cuda = os.environ.get("MMDET_LIKE_NO_CUDA", "0") == "1"
    with_cuda = (CUDA_HOME is not None or force_cuda) and not skip_cuda
    if force_cuda and CUDA_HOME is None and not skip_cuda:
        raise SystemExit(
            "setup.py: FORCE_CUDA=1 but no CUDA toolkit was found. Set CUDA_HOME to the toolkit "
            "folder (the one whose lib64 holds libcudart)."
        )
    # -fopenmp: at::parallel_for is a header template that only runs in parallel when the
    # extension itself is compiled with OpenMP, like ATen.
    cxx_flags = ["-O3", "-fopenmp"]
    link_flags = ["-fopenmp"]
    define_macros = []
    if with_cuda:
        define_macros.append(("MMDET_LIKE_WITH_CUDA", None))
        nvcc_flags = ["-O3", "--expt-relaxed-constexpr"]
        return CUDAExtension(
            "mmdet_like._ext",
            sources + cuda_sources,
            include_dirs=[os.path.join(ROOT, "ops")],
            define_macros=define_macros,
            extra_compile_args={"cxx": cxx_flags, "nvcc": nvcc_flags},
            extra_link_args=link_flags,
        )
    return CppExtension(
        "mmdet_like._ext",
        sources,
        include_dirs=[os.path.join(ROOT, "ops")],
        define_macros=define_macros,
        extra_compile_args={"cxx": cxx_flags},
        extra_link_args=link_flags,
    )


def build_ops_extension():
    """torch's ``BuildExtension`` compiling in ``build/temp`` (not pip's throw-away folder), so
    that ninja recompiles only the sources that changed since the last build."""
    from torch.utils.cpp_extension import BuildExtension

    class BuildOpsExtension(BuildExtension):
        def finalize_options(self):
            super().finalize_options()
            self.build_temp = os.path.join(ROOT, "build", "temp")

    return BuildOpsExtension


def read_requirements(path):
    """The requirement lines of a requirements file (``-r`` includes followed; comments,
    options and blank lines dropped)."""
    found = []
    with open(os.path.join(ROOT, path)) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line.startswith("-r "):
                include = os.path.join(os.path.dirname(path), line[3:].strip())
                found += read_requirements(include)
            elif line and not line.startswith("-"):
                found.append(line)
    return found


def runtime_requirements(with_ops):
    """requirements.txt, with torch pinned to the release the compiled ops are built against.

    The extension links against one torch's C++ ABI, so a build with ops requires exactly
    that torch (major.minor.patch, any local tag such as +cpu or +cu130); without ops the
    range of requirements.txt stands.
    """
    requirements = read_requirements("requirements.txt")
    if with_ops:
        import torch

        built_for = torch.__version__.split("+")[0]
        requirements = [
            f"torch=={built_for}" if re.match(r"torch\b", r) else r for r in requirements
        ]
    return requirements


class BuildPyWithResources(build_py):
    """Copies configs/, tools/ and demo/ into mmdet_like/.mim of the build (the wheel), so
    an installed package finds them (mmdet_like.get_config, the mmdet-like command)."""

    def run(self):
        super().run()
        if self.editable_mode:  # an editable install reads the repository's folders
            return
        for kind in ("configs", "tools", "demo"):
            target = os.path.join(self.build_lib, "mmdet_like", ".mim", kind)
            if os.path.isdir(target):
                shutil.rmtree(target)
            shutil.copytree(
                os.path.join(ROOT, kind),
                target,
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
            )


EXTENSIONS = make_extensions()
COMMANDS = {"build_py": BuildPyWithResources}
if EXTENSIONS:
    COMMANDS["build_ext"] = build_ops_extension()

setup(
    name="mmdet_like",
    version=read_version(),
    description="Object detection toolbox: config-driven two-stage and one-stage detectors",
    packages=find_packages(exclude=("tests", "tests.*", "tools", "configs")),
    python_requires=">=3.10",
    install_requires=runtime_requirements(with_ops=bool(EXTENSIONS)),
    extras_require={
        "export": read_requirements("requirements/export.txt"),
        "tensorboard": read_requirements("requirements/tensorboard.txt"),
        "wandb": read_requirements("requirements/wandb.txt"),
        "mlflow": read_requirements("requirements/mlflow.txt"),
        "timm": read_requirements("requirements/timm.txt"),
        "tests": read_requirements("requirements/tests.txt"),
    },
    entry_points={"console_scripts": ["mmdet-like = mmdet_like.cli:main"]},
    ext_modules=EXTENSIONS,
    cmdclass=COMMANDS,
    zip_safe=False,
)
