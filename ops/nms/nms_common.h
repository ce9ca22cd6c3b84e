// Argument checks and the IoU test shared by the NMS kernels.
#pragma once

#include <ATen/ATen.h>
#include <c10/macros/Macros.h>

namespace mmdet_like {
namespace nms_detail {

inline void check_nms_args(const at::Tensor& boxes, const at::Tensor& scores, const char* op) {
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4, op,
              ": boxes must be (N, 4) [x1, y1, x2, y2], got shape ", boxes.sizes());
  TORCH_CHECK(scores.dim() == 1 && scores.size(0) == boxes.size(0), op,
              ": scores must be (N,) with N = ", boxes.size(0), " boxes, got shape ",
              scores.sizes());
  TORCH_CHECK(at::isFloatingType(boxes.scalar_type()) && at::isFloatingType(scores.scalar_type()),
              op, ": boxes and scores must be floating tensors, got ", boxes.scalar_type(),
              " and ", scores.scalar_type());
  TORCH_CHECK(boxes.device() == scores.device(), op, ": boxes are on ", boxes.device(),
              " but scores are on ", scores.device(), "; move both to the same device");
}

// IoU of two boxes given their areas, computed in the same order of operations as
// torchvision's kernels so that results on a threshold boundary agree.
template <typename T>
C10_HOST_DEVICE inline T box_iou(T ax1, T ay1, T ax2, T ay2, T a_area, T bx1, T by1, T bx2,
                                 T by2, T b_area) {
  const T xx1 = ax1 > bx1 ? ax1 : bx1;
  const T yy1 = ay1 > by1 ? ay1 : by1;
  const T xx2 = ax2 < bx2 ? ax2 : bx2;
  const T yy2 = ay2 < by2 ? ay2 : by2;
  const T w = xx2 - xx1 > T(0) ? xx2 - xx1 : T(0);
  const T h = yy2 - yy1 > T(0) ? yy2 - yy1 : T(0);
  const T inter = w * h;
  return inter / (a_area + b_area - inter);
}

}  // namespace nms_detail
}  // namespace mmdet_like
