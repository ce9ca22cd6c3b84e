// Geometry shared by the CPU and CUDA roi_align kernels, and the argument checks of the op.
//
// An RoI [batch_idx, x1, y1, x2, y2] (image coordinates) is scaled by spatial_scale into
// feature-map coordinates and split into pooled_height x pooled_width bins. Each bin
// averages grid_h x grid_w bilinear samples taken at the centres of a regular sub-grid;
// sampling_ratio <= 0 picks the sub-grid adaptively, ceil(bin size) samples per side.
// aligned=True shifts coordinates by half a pixel (pixel centres at +0.5), so that a box
// maps exactly onto the pixels it covers; aligned=False keeps the legacy behaviour, where
// an RoI is at least one feature pixel wide.
#pragma once

#include <ATen/ATen.h>
#include <c10/macros/Macros.h>

#include <cmath>

namespace mmdet_like {
namespace roi_align_detail {

template <typename T>
struct RoIGeometry {
  T start_h;
  T start_w;
  T bin_h;
  T bin_w;
  int grid_h;
  int grid_w;
  T inv_count;  // 1 / number of samples per bin (1 when there are none)
};

template <typename T>
C10_HOST_DEVICE inline RoIGeometry<T> roi_geometry(const T* roi, T spatial_scale,
                                                   int pooled_height, int pooled_width,
                                                   int sampling_ratio, bool aligned) {
  const T offset = aligned ? T(0.5) : T(0);
  RoIGeometry<T> g;
  g.start_w = roi[1] * spatial_scale - offset;
  g.start_h = roi[2] * spatial_scale - offset;
  T roi_w = roi[3] * spatial_scale - offset - g.start_w;
  T roi_h = roi[4] * spatial_scale - offset - g.start_h;
  if (!aligned) {
    roi_w = roi_w > T(1) ? roi_w : T(1);
    roi_h = roi_h > T(1) ? roi_h : T(1);
  }
  g.bin_h = roi_h / static_cast<T>(pooled_height);
  g.bin_w = roi_w / static_cast<T>(pooled_width);
  g.grid_h = sampling_ratio > 0 ? sampling_ratio : static_cast<int>(ceil(g.bin_h));
  g.grid_w = sampling_ratio > 0 ? sampling_ratio : static_cast<int>(ceil(g.bin_w));
  // Degenerate (zero or negative size) RoIs get no samples and pool to zero.
  if (g.grid_h < 0) g.grid_h = 0;
  if (g.grid_w < 0) g.grid_w = 0;
  const int count = g.grid_h * g.grid_w;
  g.inv_count = T(1) / static_cast<T>(count > 0 ? count : 1);
  return g;
}

// The four neighbours of a sample point and their bilinear weights. valid=false when the
// point lies more than one pixel outside the map; it then contributes zero.
template <typename T>
struct BilinearTaps {
  int y_low;
  int x_low;
  int y_high;
  int x_high;
  T w_ll;  // weight of (y_low, x_low)
  T w_lh;  // (y_low, x_high)
  T w_hl;  // (y_high, x_low)
  T w_hh;  // (y_high, x_high)
  bool valid;
};

template <typename T>
C10_HOST_DEVICE inline BilinearTaps<T> bilinear_taps(T y, T x, int height, int width) {
  BilinearTaps<T> t;
  if (y < T(-1) || y > static_cast<T>(height) || x < T(-1) || x > static_cast<T>(width)) {
    t.valid = false;
    t.y_low = t.x_low = t.y_high = t.x_high = 0;
    t.w_ll = t.w_lh = t.w_hl = t.w_hh = T(0);
    return t;
  }
  t.valid = true;
  if (y <= T(0)) y = T(0);
  if (x <= T(0)) x = T(0);
  t.y_low = static_cast<int>(y);
  t.x_low = static_cast<int>(x);
  if (t.y_low >= height - 1) {
    t.y_low = t.y_high = height - 1;
    y = static_cast<T>(t.y_low);
  } else {
    t.y_high = t.y_low + 1;
  }
  if (t.x_low >= width - 1) {
    t.x_low = t.x_high = width - 1;
    x = static_cast<T>(t.x_low);
  } else {
    t.x_high = t.x_low + 1;
  }
  const T ly = y - static_cast<T>(t.y_low);
  const T lx = x - static_cast<T>(t.x_low);
  const T hy = T(1) - ly;
  const T hx = T(1) - lx;
  t.w_ll = hy * hx;
  t.w_lh = hy * lx;
  t.w_hl = ly * hx;
  t.w_hh = ly * lx;
  return t;
}

// Sample coordinate iy (of grid) inside bin p, along one axis.
template <typename T>
C10_HOST_DEVICE inline T sample_coord(T start, T bin, int p, int i, int grid) {
  return start + static_cast<T>(p) * bin +
         (static_cast<T>(i) + T(0.5)) * bin / static_cast<T>(grid);
}

inline void check_roi_align_args(const at::Tensor& input, const at::Tensor& rois,
                                 int64_t pooled_height, int64_t pooled_width,
                                 const char* op) {
  TORCH_CHECK(input.dim() == 4, op, ": input must be (N, C, H, W), got shape ", input.sizes());
  TORCH_CHECK(rois.dim() == 2 && rois.size(1) == 5, op,
              ": rois must be (K, 5) [batch_idx, x1, y1, x2, y2], got shape ", rois.sizes());
  TORCH_CHECK(pooled_height > 0 && pooled_width > 0, op,
              ": output_size must be positive, got (", pooled_height, ", ", pooled_width, ")");
  TORCH_CHECK(at::isFloatingType(input.scalar_type()), op,
              ": input must be a floating tensor, got ", input.scalar_type());
  TORCH_CHECK(at::isFloatingType(rois.scalar_type()), op,
              ": rois must be a floating tensor, got ", rois.scalar_type());
  TORCH_CHECK(input.device() == rois.device(), op, ": input is on ", input.device(),
              " but rois are on ", rois.device(), "; move both to the same device");
}

}  // namespace roi_align_detail
}  // namespace mmdet_like
