// Sampling geometry shared by the CPU and CUDA ms_deform_attn kernels, and the argument checks
// of the op.
//
// Multi-scale deformable attention (Zhu et al., Deformable DETR): for every query and head,
// the sum over levels l and points p of attention_weights[l, p] times the value map of level l
// sampled bilinearly at sampling_locations[l, p]. A location (x, y) in [0, 1] of a w x h level
// is the pixel (x * w - 0.5, y * h - 0.5) (align_corners=False); pixels outside the map read
// zero (grid_sample's padding_mode="zeros"), so a point more than one pixel outside reads none.
#pragma once

#include <ATen/ATen.h>
#include <c10/macros/Macros.h>

#include <cmath>

namespace mmdet_like {
namespace ms_deform_attn_detail {

// The four neighbours of a sample point: (y0, x0), (y0, x0 + 1), (y0 + 1, x0), (y0 + 1, x0 + 1)
// with bilinear weights w[0..3]; in[k] says whether neighbour k lies inside the map (outside
// ones read zero and receive no gradient).
template <typename T>
struct Corners {
  int x0;
  int y0;
  T lx;  // x - x0, in [0, 1)
  T ly;  // y - y0
  T w[4];
  bool in[4];
};

// False when the point reads nothing (all four neighbours outside the map, or a NaN location).
template <typename T>
C10_HOST_DEVICE inline bool corners(T loc_x, T loc_y, int height, int width, Corners<T>& c) {
  const T x = loc_x * static_cast<T>(width) - T(0.5);
  const T y = loc_y * static_cast<T>(height) - T(0.5);
  if (!(x > T(-1) && y > T(-1) && x < static_cast<T>(width) && y < static_cast<T>(height))) {
    return false;
  }
  const T fx = floor(x);
  const T fy = floor(y);
  c.x0 = static_cast<int>(fx);
  c.y0 = static_cast<int>(fy);
  c.lx = x - fx;
  c.ly = y - fy;
  const T hx = T(1) - c.lx;
  const T hy = T(1) - c.ly;
  c.w[0] = hy * hx;
  c.w[1] = hy * c.lx;
  c.w[2] = c.ly * hx;
  c.w[3] = c.ly * c.lx;
  const bool x0_in = c.x0 >= 0;
  const bool x1_in = c.x0 + 1 < width;
  const bool y0_in = c.y0 >= 0;
  const bool y1_in = c.y0 + 1 < height;
  c.in[0] = y0_in && x0_in;
  c.in[1] = y0_in && x1_in;
  c.in[2] = y1_in && x0_in;
  c.in[3] = y1_in && x1_in;
  return true;
}

// Key index (within its level) of neighbour k.
template <typename T>
C10_HOST_DEVICE inline int64_t corner_key(const Corners<T>& c, int k, int width) {
  return static_cast<int64_t>(c.y0 + (k >> 1)) * width + (c.x0 + (k & 1));
}

// d w[k] / dx and d w[k] / dy (pixel units), from the sum over the neighbours of
// dot[k] = <grad_output, value at neighbour k>: returns (sum dot[k] dw[k]/dx, ... /dy).
template <typename T>
C10_HOST_DEVICE inline void weight_grads(const Corners<T>& c, const T dot[4], T& gx, T& gy) {
  const T hx = T(1) - c.lx;
  const T hy = T(1) - c.ly;
  gx = hy * (dot[1] - dot[0]) + c.ly * (dot[3] - dot[2]);
  gy = hx * (dot[2] - dot[0]) + c.lx * (dot[3] - dot[1]);
}

inline const char* type_name(const at::Tensor& t) { return c10::toString(t.scalar_type()); }

// Shapes, dtypes and devices (nothing that reads tensor data, so CUDA inputs need no sync).
inline void check_args(const at::Tensor& value, const at::Tensor& spatial_shapes,
                       const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                       const at::Tensor& attention_weights, const char* op) {
  TORCH_CHECK(value.dim() == 4, op,
              ": value must be (bs, num_keys, num_heads, dim_per_head), got shape ",
              value.sizes());
  TORCH_CHECK(spatial_shapes.dim() == 2 && spatial_shapes.size(1) == 2, op,
              ": spatial_shapes must be (num_levels, 2) [h, w], got shape ",
              spatial_shapes.sizes());
  const int64_t bs = value.size(0), heads = value.size(2), levels = spatial_shapes.size(0);
  TORCH_CHECK(levels > 0, op, ": spatial_shapes must hold at least one level, got shape ",
              spatial_shapes.sizes());
  TORCH_CHECK(level_start_index.dim() == 1 && level_start_index.size(0) == levels, op,
              ": level_start_index must be (num_levels,) = (", levels, ",), got shape ",
              level_start_index.sizes());
  TORCH_CHECK(sampling_locations.dim() == 6 && sampling_locations.size(0) == bs &&
                  sampling_locations.size(2) == heads && sampling_locations.size(3) == levels &&
                  sampling_locations.size(5) == 2,
              op,
              ": sampling_locations must be (bs, num_queries, num_heads, num_levels, "
              "num_points, 2) with bs = ",
              bs, ", num_heads = ", heads, " (from value) and num_levels = ", levels,
              " (from spatial_shapes), got shape ", sampling_locations.sizes());
  const int64_t queries = sampling_locations.size(1), points = sampling_locations.size(4);
  TORCH_CHECK(attention_weights.dim() == 5 && attention_weights.size(0) == bs &&
                  attention_weights.size(1) == queries && attention_weights.size(2) == heads &&
                  attention_weights.size(3) == levels && attention_weights.size(4) == points,
              op,
              ": attention_weights must be (bs, num_queries, num_heads, num_levels, num_points) "
              "= (",
              bs, ", ", queries, ", ", heads, ", ", levels, ", ", points, "), got shape ",
              attention_weights.sizes());
  TORCH_CHECK(spatial_shapes.scalar_type() == at::kLong, op,
              ": spatial_shapes must be int64 (long), got ", type_name(spatial_shapes));
  TORCH_CHECK(level_start_index.scalar_type() == at::kLong, op,
              ": level_start_index must be int64 (long), got ", type_name(level_start_index));
  TORCH_CHECK(at::isFloatingType(value.scalar_type()) &&
                  sampling_locations.scalar_type() == value.scalar_type() &&
                  attention_weights.scalar_type() == value.scalar_type(),
              op,
              ": value, sampling_locations and attention_weights must have one floating dtype, "
              "got ",
              type_name(value), ", ", type_name(sampling_locations), " and ",
              type_name(attention_weights), "; convert them to one (e.g. with .float())");
  const at::Tensor* others[] = {&spatial_shapes, &level_start_index, &sampling_locations,
                                &attention_weights};
  const char* names[] = {"spatial_shapes", "level_start_index", "sampling_locations",
                         "attention_weights"};
  for (int i = 0; i < 4; ++i) {
    TORCH_CHECK(others[i]->device() == value.device(), op, ": value is on ", value.device(),
                " but ", names[i], " is on ", others[i]->device(),
                "; move all five tensors to the same device");
  }
}

// The values of spatial_shapes and level_start_index (CPU tensors, contiguous): every level at
// least 1 x 1, value holding exactly their keys, level_start_index their running sum.
inline void check_levels(const int64_t* shapes, const int64_t* starts, int64_t levels,
                         int64_t num_keys, const char* op) {
  int64_t total = 0;
  for (int64_t l = 0; l < levels; ++l) {
    const int64_t h = shapes[2 * l], w = shapes[2 * l + 1];
    TORCH_CHECK(h >= 1 && w >= 1, op, ": spatial_shapes[", l, "] = (", h, ", ", w,
                "): every level must be at least 1 x 1");
    TORCH_CHECK(starts[l] == total, op, ": level_start_index[", l, "] = ", starts[l],
                " but the levels before it hold ", total,
                " keys; level_start_index must be the running sum of h * w, starting at 0");
    total += h * w;
  }
  TORCH_CHECK(total == num_keys, op, ": value has ", num_keys,
              " keys but spatial_shapes sum to ", total,
              " (h * w over the levels); value must be (bs, ", total,
              ", num_heads, dim_per_head)");
}

}  // namespace ms_deform_attn_detail
}  // namespace mmdet_like
