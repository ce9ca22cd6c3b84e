# mmdet_like set-up commands. `make test` and `make demo` work from a fresh clone.
#
# Each step leaves a stamp file in .venv, so running a target twice redoes nothing that has
# not changed: dependencies are reinstalled only when a requirements file changes, and the
# compiled ops are rebuilt only when setup.py or a source under ops/ changes (and then ninja
# recompiles only the changed files, in build/temp).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
MAX_JOBS ?= 2
OP_SOURCES := $(shell find ops -name '*.cpp' -o -name '*.cu' -o -name '*.h' -o -name '*.cuh')

.PHONY: install test test-slow lint format bench-ops demo demo-retinanet demo-keypoints demo-cascade \
	demo-atss demo-gfl demo-dino constraints clean mmdet-side-env mmdet-fixtures

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

REQUIREMENTS := requirements.txt $(wildcard requirements/*.txt)

# The runtime ranges of requirements.txt, the extras the suite tests ([export], [tensorboard],
# [wandb], [mlflow], [tests]) and the build tools, at the exact versions of
# requirements/constraints.txt.
$(VENV)/.deps: $(REQUIREMENTS) | $(VENV)/bin/python
	$(PIP) install --upgrade pip
	$(PIP) install -c requirements/constraints.txt -r requirements.txt \
		-r requirements/build.txt -r requirements/tests.txt
	touch $@

# The package in editable mode, its ops compiled against the torch of .venv (hence
# --no-build-isolation). MMDET_LIKE_WITH_OPS=0 installs it without compiling anything.
$(VENV)/.ops: $(VENV)/.deps setup.py build_backend.py pyproject.toml $(OP_SOURCES)
	MAX_JOBS=$(MAX_JOBS) $(PIP) install -e . --no-build-isolation --no-deps
	touch $@

install: $(VENV)/.ops

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# pytest on every core (pytest-xdist; each worker gets its share of torch's threads, see
# tests/conftest.py); TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= auto

test: lint
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder --durations=25

test-slow: install
	$(PY) -m pytest -q -m slow

# The demo: draw the shapes dataset, train the small Mask R-CNN on it, evaluate it on the
# val split (COCO bbox and segm tables) and draw a few of its detections.
# (the config reads its data from data/demo)
DEMO_DATA := data/demo
DEMO_WORK ?= work_dirs/mask_rcnn_r18_fpn_demo
DEMO_CONFIG := configs/demo/mask_rcnn_r18_fpn_demo.py

demo: install
	$(PY) tools/make_demo_dataset.py $(DEMO_DATA)
	$(PY) tools/train.py $(DEMO_CONFIG) --work-dir $(DEMO_WORK) --no-validate
	$(PY) tools/test.py $(DEMO_CONFIG) $(DEMO_WORK)/latest.pth --eval bbox segm
	$(PY) tools/demo_pictures.py $(DEMO_CONFIG) $(DEMO_WORK)/latest.pth $(DEMO_DATA)/val \
		$(DEMO_WORK)/detections.png
	@echo "demo done: checkpoint, logs and detections.png in $(DEMO_WORK)"

# The RetinaNet demo: the same data, a small RetinaNet (box AP only).
RETINANET_WORK ?= work_dirs/retinanet_r18_fpn_demo
RETINANET_CONFIG := configs/demo/retinanet_r18_fpn_demo.py

demo-retinanet: install
	$(PY) tools/make_demo_dataset.py $(DEMO_DATA)
	$(PY) tools/train.py $(RETINANET_CONFIG) --work-dir $(RETINANET_WORK) --no-validate
	$(PY) tools/test.py $(RETINANET_CONFIG) $(RETINANET_WORK)/latest.pth --eval bbox
	$(PY) tools/demo_pictures.py $(RETINANET_CONFIG) $(RETINANET_WORK)/latest.pth \
		$(DEMO_DATA)/val $(RETINANET_WORK)/detections.png
	@echo "demo done: checkpoint, logs and detections.png in $(RETINANET_WORK)"

# The ATSS and GFL demos: the RetinaNet demo's data, sizes and schedule, each family's head.
ATSS_WORK ?= work_dirs/atss_r18_fpn_demo
ATSS_CONFIG := configs/demo/atss_r18_fpn_demo.py
GFL_WORK ?= work_dirs/gfl_r18_fpn_demo
GFL_CONFIG := configs/demo/gfl_r18_fpn_demo.py

demo-atss: install
	$(PY) tools/make_demo_dataset.py $(DEMO_DATA)
	$(PY) tools/train.py $(ATSS_CONFIG) --work-dir $(ATSS_WORK) --no-validate
	$(PY) tools/test.py $(ATSS_CONFIG) $(ATSS_WORK)/latest.pth --eval bbox
	$(PY) tools/demo_pictures.py $(ATSS_CONFIG) $(ATSS_WORK)/latest.pth \
		$(DEMO_DATA)/val $(ATSS_WORK)/detections.png
	@echo "demo done: checkpoint, logs and detections.png in $(ATSS_WORK)"

demo-gfl: install
	$(PY) tools/make_demo_dataset.py $(DEMO_DATA)
	$(PY) tools/train.py $(GFL_CONFIG) --work-dir $(GFL_WORK) --no-validate
	$(PY) tools/test.py $(GFL_CONFIG) $(GFL_WORK)/latest.pth --eval bbox
	$(PY) tools/demo_pictures.py $(GFL_CONFIG) $(GFL_WORK)/latest.pth \
		$(DEMO_DATA)/val $(GFL_WORK)/detections.png
	@echo "demo done: checkpoint, logs and detections.png in $(GFL_WORK)"

# The DINO demo: the same data, sizes, batch and epochs, a small DINO (box AP only).
DINO_WORK ?= work_dirs/dino_r18_demo
DINO_CONFIG := configs/demo/dino_r18_demo.py

demo-dino: install
	$(PY) tools/make_demo_dataset.py $(DEMO_DATA)
	$(PY) tools/train.py $(DINO_CONFIG) --work-dir $(DINO_WORK) --no-validate
	$(PY) tools/test.py $(DINO_CONFIG) $(DINO_WORK)/latest.pth --eval bbox
	$(PY) tools/demo_pictures.py $(DINO_CONFIG) $(DINO_WORK)/latest.pth \
		$(DEMO_DATA)/val $(DINO_WORK)/detections.png
	@echo "demo done: checkpoint, logs and detections.png in $(DINO_WORK)"

# The keypoint demo: the same images with the shapes' named vertices, a small Keypoint R-CNN
# (box and keypoint AP).
KEYPOINT_WORK ?= work_dirs/keypoint_rcnn_r18_fpn_demo
KEYPOINT_CONFIG := configs/demo/keypoint_rcnn_r18_fpn_demo.py

demo-keypoints: install
	$(PY) tools/make_demo_dataset.py $(DEMO_DATA) --keypoints
	$(PY) tools/train.py $(KEYPOINT_CONFIG) --work-dir $(KEYPOINT_WORK) --no-validate
	$(PY) tools/test.py $(KEYPOINT_CONFIG) $(KEYPOINT_WORK)/latest.pth --eval bbox keypoints
	$(PY) tools/demo_pictures.py $(KEYPOINT_CONFIG) $(KEYPOINT_WORK)/latest.pth \
		$(DEMO_DATA)/val $(KEYPOINT_WORK)/detections.png
	@echo "demo done: checkpoint, logs and detections.png in $(KEYPOINT_WORK)"

# The Cascade Mask R-CNN demo: the Mask R-CNN demo's data, model and schedule with three box
# stages (IoU 0.5 / 0.6 / 0.7).
CASCADE_WORK ?= work_dirs/cascade_mask_rcnn_r18_fpn_demo
CASCADE_CONFIG := configs/demo/cascade_mask_rcnn_r18_fpn_demo.py

demo-cascade: install
	$(PY) tools/make_demo_dataset.py $(DEMO_DATA)
	$(PY) tools/train.py $(CASCADE_CONFIG) --work-dir $(CASCADE_WORK) --no-validate
	$(PY) tools/test.py $(CASCADE_CONFIG) $(CASCADE_WORK)/latest.pth --eval bbox segm
	$(PY) tools/demo_pictures.py $(CASCADE_CONFIG) $(CASCADE_WORK)/latest.pth \
		$(DEMO_DATA)/val $(CASCADE_WORK)/detections.png
	@echo "demo done: checkpoint, logs and detections.png in $(CASCADE_WORK)"

# mmdetection 3.3 in a side environment of its own (it cannot share .venv's torch): the
# reference that tools/dev/make_mmdet_fixtures.py runs to write tests/fixtures/mmdet/. Needs
# python3.11 and about 16 minutes of 2 cores (mmcv 2.1.0's CPU ops compile from source); the
# suite reads only the fixture files.
MMDET_ENV ?= mmdet-side-env
MMDET_PY := $(MMDET_ENV)/bin/python

$(MMDET_ENV)/.done:
	python3.11 -m venv $(MMDET_ENV)
	$(MMDET_PY) -m pip install --upgrade pip
	$(MMDET_PY) -m pip install "setuptools<81" wheel ninja torch==2.9.1 torchvision==0.24.1
	$(MMDET_PY) -m pip install "numpy<2" "opencv-python-headless<4.11" mmengine==0.10.7 \
		scikit-image scipy pycocotools terminaltables shapely tqdm six importlib_metadata einops \
		modelindex rich mat4py
	env -u CUDA_HOME FORCE_CUDA=0 MMCV_WITH_OPS=1 MAX_JOBS=$(MAX_JOBS) \
		$(MMDET_PY) -m pip install --no-build-isolation mmcv==2.1.0
	$(MMDET_PY) -m pip install --no-deps mmdet==3.3.0 mmpretrain==1.2.0
	$(MMDET_PY) -c "import mmdet, mmcv.ops, mmpretrain; print('mmdetection', mmdet.__version__)"
	touch $@

mmdet-side-env: $(MMDET_ENV)/.done

mmdet-fixtures: $(MMDET_ENV)/.done
	$(MMDET_PY) tools/dev/make_mmdet_fixtures.py

bench-ops: install
	$(PY) tools/benchmark_ops.py --out docs/benchmarks.md

# Rewrite requirements/constraints.txt from .venv, after a tested upgrade.
constraints: install
	{ sed -n '1,3p' requirements/constraints.txt; $(PIP) freeze --exclude-editable | \
		grep -v -e '^nvidia-' -e '^mmdet.like'; } > requirements/constraints.txt.new
	mv requirements/constraints.txt.new requirements/constraints.txt

clean:
	rm -rf build *.egg-info mmdet_like/_ext*.so $(VENV)/.ops
