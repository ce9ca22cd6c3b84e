#!/usr/bin/env bash
# Regenerates the pictures of docs/useful_tools.md and the README with the tools themselves,
# from the trained demo Mask R-CNN (configs/demo/mask_rcnn_r18_fpn_demo.py, 8 epochs on
# data/demo, `make demo`), the log of the Cascade Mask R-CNN demo run (`make demo-cascade`;
# without it the loss-curve picture is kept) and the demo Keypoint R-CNN (`make
# demo-keypoints`; without it the keypoint picture is kept). Run from the repository root:
#
#     bash docs/images/make_pictures.sh
#
# The tools write into $OUT (default /tmp/docpics); the chosen pictures are copied into
# docs/images/, re-encoded losslessly at PNG compression 9 and, for the 128-pixel demo images,
# enlarged 3 times (nearest neighbour, no pixel changed otherwise); the README's grids as JPEG
# (quality 90). Nothing is drawn here: the tools draw with their default line width, font
# and palette (docs/useful_tools.md, "Drawing").
set -euo pipefail

PYTHON=${PYTHON:-python}
OUT=${OUT:-/tmp/docpics}
CONFIG=configs/demo/mask_rcnn_r18_fpn_demo.py
CKPT=${CKPT:-work_dirs/mask_rcnn_r18_fpn_demo/latest.pth}
MASK_LOG=${MASK_LOG:-$(ls "$(dirname "$CKPT")"/*.log.json | tail -1)}
CASCADE_LOG=$(ls work_dirs/cascade_mask_rcnn_r18_fpn_demo/*.log.json 2>/dev/null | tail -1 || true)
KEYPOINT_CONFIG=configs/demo/keypoint_rcnn_r18_fpn_demo.py
KEYPOINT_CKPT=${KEYPOINT_CKPT:-work_dirs/keypoint_rcnn_r18_fpn_demo/latest.pth}
ANN=data/demo/annotations/instances_val.json
IMAGES=docs/images

mkdir -p "$OUT" "$IMAGES"

# copy SRC to DST, enlarged SCALE times (nearest neighbour), PNG compression 9
save() {
    "$PYTHON" -c 'import sys, cv2
img = cv2.imread(sys.argv[1])
s = int(sys.argv[3])
img = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_NEAREST) if s > 1 else img
assert cv2.imwrite(sys.argv[2], img, [cv2.IMWRITE_PNG_COMPRESSION, 9])' "$1" "$2" "${3:-1}"
}

# copy SRC to DST as a JPEG of quality 90
save_jpeg() {
    "$PYTHON" -c 'import sys, cv2
assert cv2.imwrite(sys.argv[2], cv2.imread(sys.argv[1]), [cv2.IMWRITE_JPEG_QUALITY, 90])' "$1" "$2"
}

# results of the demo model on data/demo/val: results.pkl and results.{bbox,segm}.json
"$PYTHON" tools/test.py $CONFIG "$CKPT" --out "$OUT/results.pkl" --eval bbox segm \
    --eval-options jsonfile_prefix="$OUT/results"

# analyze_logs plot_curve: loss curves of the two runs
if [ -n "$CASCADE_LOG" ]; then
    "$PYTHON" tools/analysis_tools/analyze_logs.py plot_curve "$MASK_LOG" "$CASCADE_LOG" \
        --keys loss loss_mask --legend "Mask R-CNN" "Cascade Mask R-CNN" --out "$OUT/curves.png"
    save "$OUT/curves.png" $IMAGES/analyze_logs_loss.png
else
    echo "no Cascade Mask R-CNN log in work_dirs/: $IMAGES/analyze_logs_loss.png kept"
fi

# confusion_matrix
"$PYTHON" tools/analysis_tools/confusion_matrix.py $CONFIG "$OUT/results.pkl" "$OUT/confusion"
save "$OUT/confusion/confusion_matrix.png" $IMAGES/confusion_matrix.png

# analyze_results: one of the worst images (val/000154.png), ground truth | predictions
"$PYTHON" tools/analysis_tools/analyze_results.py $CONFIG "$OUT/results.pkl" "$OUT/show" \
    --topk 3 --scale 3
save "$(ls "$OUT"/show/bad/*_000154_*.png)" $IMAGES/analyze_results_bad.png

# coco_error_analysis: the overall picture (mean over the categories, all areas)
"$PYTHON" tools/analysis_tools/coco_error_analysis.py "$OUT/results.bbox.json" "$OUT/errors" \
    --ann $ANN
save "$OUT/errors/bbox/bbox-allclass-all.png" $IMAGES/coco_error_analysis_bbox_allclass.png

# browse_dataset: training sample 4 as the model receives it (RandomFlip at random)
"$PYTHON" tools/analysis_tools/browse_dataset.py $CONFIG --output-dir "$OUT/browse" \
    --not-show --num-samples 5
save "$OUT/browse/00004_000004.png" $IMAGES/browse_dataset.png 3

# image_demo on one validation image
"$PYTHON" demo/image_demo.py data/demo/val/000002.png $CONFIG "$CKPT" --out-dir "$OUT/demo"
save "$OUT/demo/000002.png" $IMAGES/image_demo.png 3

# the README's grids (`make demo`, `make demo-keypoints`): 8 validation images, enlarged 3 times
"$PYTHON" tools/demo_pictures.py $CONFIG "$CKPT" data/demo/val "$OUT/detections.png"
save_jpeg "$OUT/detections.png" $IMAGES/demo_detections.jpg
if [ -f "$KEYPOINT_CKPT" ]; then
    "$PYTHON" tools/demo_pictures.py $KEYPOINT_CONFIG "$KEYPOINT_CKPT" data/demo/val \
        "$OUT/keypoint_detections.png"
    save_jpeg "$OUT/keypoint_detections.png" $IMAGES/keypoint_demo_detections.jpg
else
    echo "no $KEYPOINT_CKPT: $IMAGES/keypoint_demo_detections.jpg kept"
fi

ls -l $IMAGES/*.png $IMAGES/*.jpg
