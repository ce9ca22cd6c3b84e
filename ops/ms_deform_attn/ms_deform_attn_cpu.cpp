// Multi-scale deformable attention on the CPU, forward and backward.
//
// Every (batch, key, head) row of value holds dim_per_head contiguous channels, so each sample
// point reads four such rows (its bilinear neighbours) and all loops over channels are
// contiguous (the compiler vectorises them). Each call opens at most one parallel region, and
// none for small work (ops/common/parallel.h):
// - forward: over the (batch, query) rows of the output;
// - backward: over (batch, head) pairs. The task of a pair owns the grad_value rows of that
//   pair and the gradients of its sampling locations and attention weights, so no two threads
//   write one element, and every element receives its contributions in query order, whatever
//   the number of threads: the result is deterministic.
// float and double compute in their own type; half and bfloat16 in float32.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "common/parallel.h"
#include "ms_deform_attn/ms_deform_attn_common.h"

namespace mmdet_like {
namespace {

using ms_deform_attn_detail::corner_key;
using ms_deform_attn_detail::corners;
using ms_deform_attn_detail::Corners;
using ms_deform_attn_detail::weight_grads;

// A call with fewer multiply-adds than kMinParallelWork runs serially; a parallel task gets at
// least kMinTaskWork of them (as roi_align's kernels).
constexpr int64_t kMinParallelWork = int64_t(1) << 21;
constexpr int64_t kMinTaskWork = int64_t(1) << 20;

inline int64_t parallel_grain(int64_t items, int64_t work_per_item) {
  work_per_item = std::max<int64_t>(work_per_item, 1);
  if (items * work_per_item < kMinParallelWork) return std::max<int64_t>(items, 1);
  return std::max<int64_t>(1, kMinTaskWork / work_per_item);
}

// The geometry of the levels, read once per call.
struct Levels {
  std::vector<int> height;
  std::vector<int> width;
  std::vector<int64_t> start;
};

Levels read_levels(const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
                   int64_t num_keys, const char* op) {
  const auto shapes = spatial_shapes.contiguous();
  const auto starts = level_start_index.contiguous();
  const int64_t levels = shapes.size(0);
  const int64_t* s = shapes.const_data_ptr<int64_t>();
  const int64_t* st = starts.const_data_ptr<int64_t>();
  ms_deform_attn_detail::check_levels(s, st, levels, num_keys, op);
  Levels out;
  for (int64_t l = 0; l < levels; ++l) {
    out.height.push_back(static_cast<int>(s[2 * l]));
    out.width.push_back(static_cast<int>(s[2 * l + 1]));
    out.start.push_back(st[l]);
  }
  return out;
}

struct Sizes {
  int64_t bs, num_keys, heads, dim, queries, levels, points;
};

Sizes sizes_of(const at::Tensor& value, const at::Tensor& sampling_locations) {
  return {value.size(0),
          value.size(1),
          value.size(2),
          value.size(3),
          sampling_locations.size(1),
          sampling_locations.size(3),
          sampling_locations.size(4)};
}

// acc[d] += sum_k w[k] * row_k[d]: the four neighbours in one pass over acc.
template <typename scalar_t, typename acc_t>
inline void add_corners(acc_t* __restrict acc, const scalar_t* __restrict r0,
                        const scalar_t* __restrict r1, const scalar_t* __restrict r2,
                        const scalar_t* __restrict r3, const acc_t w[4], int64_t dim) {
  const acc_t w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3];
  for (int64_t d = 0; d < dim; ++d) {
    acc[d] += w0 * static_cast<acc_t>(r0[d]) + w1 * static_cast<acc_t>(r1[d]) +
              w2 * static_cast<acc_t>(r2[d]) + w3 * static_cast<acc_t>(r3[d]);
  }
}

// dot[k] = <g, row_k> for the four neighbours, in kLanes interleaved partial sums (a
// vectorisable reduction whose order does not depend on anything but dim).
constexpr int64_t kLanes = 8;

template <typename scalar_t, typename acc_t>
inline void dot_corners(const acc_t* __restrict g, const scalar_t* __restrict r0,
                        const scalar_t* __restrict r1, const scalar_t* __restrict r2,
                        const scalar_t* __restrict r3, int64_t dim, acc_t dot[4]) {
  acc_t s0[kLanes] = {}, s1[kLanes] = {}, s2[kLanes] = {}, s3[kLanes] = {};
  int64_t d = 0;
  for (; d + kLanes <= dim; d += kLanes) {
    for (int64_t k = 0; k < kLanes; ++k) {
      const acc_t gk = g[d + k];
      s0[k] += gk * static_cast<acc_t>(r0[d + k]);
      s1[k] += gk * static_cast<acc_t>(r1[d + k]);
      s2[k] += gk * static_cast<acc_t>(r2[d + k]);
      s3[k] += gk * static_cast<acc_t>(r3[d + k]);
    }
  }
  for (int64_t k = 0; d < dim; ++d, ++k) {
    const acc_t gk = g[d];
    s0[k] += gk * static_cast<acc_t>(r0[d]);
    s1[k] += gk * static_cast<acc_t>(r1[d]);
    s2[k] += gk * static_cast<acc_t>(r2[d]);
    s3[k] += gk * static_cast<acc_t>(r3[d]);
  }
  acc_t t[4] = {};
  for (int64_t k = 0; k < kLanes; ++k) {
    t[0] += s0[k];
    t[1] += s1[k];
    t[2] += s2[k];
    t[3] += s3[k];
  }
  for (int k = 0; k < 4; ++k) dot[k] = t[k];
}

template <typename acc_t>
inline void axpy(acc_t* __restrict y, const acc_t* __restrict x, acc_t a, int64_t dim) {
  for (int64_t d = 0; d < dim; ++d) y[d] += a * x[d];
}

// The value rows of a sample's four neighbours (a row of zeros for those outside the map).
template <typename scalar_t, typename acc_t>
inline void corner_rows(const Corners<acc_t>& c, const scalar_t* level_base, int width,
                        int64_t row_stride, const scalar_t* zeros, const scalar_t* rows[4]) {
  for (int k = 0; k < 4; ++k) {
    rows[k] = c.in[k] ? level_base + corner_key(c, k, width) * row_stride : zeros;
  }
}

template <typename scalar_t>
void forward_kernel(const scalar_t* value, const Levels& lv, const scalar_t* loc,
                    const scalar_t* attn, const Sizes& n, scalar_t* out) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t row_stride = n.heads * n.dim;  // between keys
  const int64_t samples = n.levels * n.points;
  const int64_t rows = n.bs * n.queries;
  // per output row: heads * samples points of 4 neighbours x dim channels
  const int64_t grain = parallel_grain(rows, n.heads * samples * 4 * n.dim);
  mmdet_like::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(n.dim);
    const std::vector<scalar_t> zeros(n.dim, scalar_t(0));
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / n.queries;
      const scalar_t* value_b = value + b * n.num_keys * row_stride;
      for (int64_t h = 0; h < n.heads; ++h) {
        const int64_t sample0 = (r * n.heads + h) * samples;
        const scalar_t* loc_rh = loc + 2 * sample0;
        const scalar_t* attn_rh = attn + sample0;
        std::fill(acc.begin(), acc.end(), acc_t(0));
        for (int64_t l = 0; l < n.levels; ++l) {
          const int height = lv.height[l], width = lv.width[l];
          const scalar_t* level_base = value_b + lv.start[l] * row_stride + h * n.dim;
          for (int64_t p = 0; p < n.points; ++p) {
            const int64_t s = l * n.points + p;
            Corners<acc_t> c;
            if (!corners(static_cast<acc_t>(loc_rh[2 * s]), static_cast<acc_t>(loc_rh[2 * s + 1]),
                         height, width, c)) {
              continue;
            }
            const acc_t a = static_cast<acc_t>(attn_rh[s]);
            const acc_t w[4] = {a * c.w[0], a * c.w[1], a * c.w[2], a * c.w[3]};
            const scalar_t* rows_k[4];
            corner_rows(c, level_base, width, row_stride, zeros.data(), rows_k);
            add_corners(acc.data(), rows_k[0], rows_k[1], rows_k[2], rows_k[3], w, n.dim);
          }
        }
        scalar_t* out_rh = out + r * row_stride + h * n.dim;
        for (int64_t d = 0; d < n.dim; ++d) out_rh[d] = static_cast<scalar_t>(acc[d]);
      }
    }
  });
}

// grad_value: (bs, num_keys, heads, dim), accumulated in grad_value_acc (acc_t; the same
// memory as grad_value when acc_t is scalar_t), both uninitialised on entry: each task zeroes
// and (for half and bfloat16) converts the rows of its own pairs, so that the whole backward
// opens no parallel region but its own.
// grad_out is read through its strides (an expanded gradient, as of a sum, needs no copy).
template <typename scalar_t>
void backward_kernel(const scalar_t* value, const Levels& lv, const scalar_t* loc,
                     const scalar_t* attn, const scalar_t* grad_out,
                     const at::IntArrayRef grad_strides, const Sizes& n,
                     at::opmath_type<scalar_t>* grad_value_acc, scalar_t* grad_value,
                     scalar_t* grad_loc, scalar_t* grad_attn) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t row_stride = n.heads * n.dim;
  const int64_t samples = n.levels * n.points;
  const int64_t pairs = n.bs * n.heads;
  // per (batch, head) pair: queries * samples points, each 4 dots and 4 axpys over dim
  const int64_t grain = parallel_grain(pairs, n.queries * samples * 8 * n.dim);
  mmdet_like::parallel_for(0, pairs, grain, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> g(n.dim);
    const std::vector<scalar_t> zeros(n.dim, scalar_t(0));
    for (int64_t pair = begin; pair < end; ++pair) {
      const int64_t b = pair / n.heads, h = pair % n.heads;
      const int64_t pair_offset = b * n.num_keys * row_stride + h * n.dim;
      const scalar_t* value_b = value + pair_offset;
      acc_t* grad_value_b = grad_value_acc + pair_offset;
      for (int64_t key = 0; key < n.num_keys; ++key) {
        std::fill_n(grad_value_b + key * row_stride, n.dim, acc_t(0));
      }
      for (int64_t q = 0; q < n.queries; ++q) {
        const int64_t r = b * n.queries + q;
        const scalar_t* g_src = grad_out + b * grad_strides[0] + q * grad_strides[1] +
                                h * n.dim * grad_strides[2];
        for (int64_t d = 0; d < n.dim; ++d) {
          g[d] = static_cast<acc_t>(g_src[d * grad_strides[2]]);
        }
        const int64_t sample0 = (r * n.heads + h) * samples;
        const scalar_t* loc_rh = loc + 2 * sample0;
        const scalar_t* attn_rh = attn + sample0;
        scalar_t* grad_loc_rh = grad_loc + 2 * sample0;
        scalar_t* grad_attn_rh = grad_attn + sample0;
        for (int64_t l = 0; l < n.levels; ++l) {
          const int height = lv.height[l], width = lv.width[l];
          const scalar_t* level_base = value_b + lv.start[l] * row_stride;
          acc_t* grad_level = grad_value_b + lv.start[l] * row_stride;
          for (int64_t p = 0; p < n.points; ++p) {
            const int64_t s = l * n.points + p;
            Corners<acc_t> c;
            if (!corners(static_cast<acc_t>(loc_rh[2 * s]), static_cast<acc_t>(loc_rh[2 * s + 1]),
                         height, width, c)) {
              grad_loc_rh[2 * s] = grad_loc_rh[2 * s + 1] = grad_attn_rh[s] = scalar_t(0);
              continue;
            }
            const acc_t a = static_cast<acc_t>(attn_rh[s]);
            const scalar_t* rows_k[4];
            corner_rows(c, level_base, width, row_stride, zeros.data(), rows_k);
            acc_t dot[4];
            dot_corners(g.data(), rows_k[0], rows_k[1], rows_k[2], rows_k[3], n.dim, dot);
            for (int k = 0; k < 4; ++k) {
              if (c.in[k]) {
                axpy(grad_level + corner_key(c, k, width) * row_stride, g.data(), a * c.w[k],
                     n.dim);
              }
            }
            grad_attn_rh[s] = static_cast<scalar_t>(c.w[0] * dot[0] + c.w[1] * dot[1] +
                                                    c.w[2] * dot[2] + c.w[3] * dot[3]);
            acc_t gx, gy;
            weight_grads(c, dot, gx, gy);
            grad_loc_rh[2 * s] = static_cast<scalar_t>(a * gx * static_cast<acc_t>(width));
            grad_loc_rh[2 * s + 1] = static_cast<scalar_t>(a * gy * static_cast<acc_t>(height));
          }
        }
      }
      if (static_cast<const void*>(grad_value_acc) != static_cast<const void*>(grad_value)) {
        for (int64_t key = 0; key < n.num_keys; ++key) {
          const acc_t* src = grad_value_b + key * row_stride;
          scalar_t* dst = grad_value + pair_offset + key * row_stride;
          for (int64_t d = 0; d < n.dim; ++d) dst[d] = static_cast<scalar_t>(src[d]);
        }
      }
    }
  });
}

at::Tensor ms_deform_attn_forward_cpu(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                      const at::Tensor& level_start_index,
                                      const at::Tensor& sampling_locations,
                                      const at::Tensor& attention_weights) {
  const char* op = "ms_deform_attn";
  ms_deform_attn_detail::check_args(value, spatial_shapes, level_start_index, sampling_locations,
                                    attention_weights, op);
  const Sizes n = sizes_of(value, sampling_locations);
  const Levels lv = read_levels(spatial_shapes, level_start_index, n.num_keys, op);
  // every element is written by the kernel
  auto output = at::empty({n.bs, n.queries, n.heads * n.dim}, value.options());
  if (output.numel() == 0) return output;
  const auto value_c = value.contiguous();
  const auto loc_c = sampling_locations.contiguous();
  const auto attn_c = attention_weights.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(),
                                  "ms_deform_attn_forward_cpu", [&] {
                                    forward_kernel<scalar_t>(
                                        value_c.const_data_ptr<scalar_t>(), lv,
                                        loc_c.const_data_ptr<scalar_t>(),
                                        attn_c.const_data_ptr<scalar_t>(), n,
                                        output.data_ptr<scalar_t>());
                                  });
  return output;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ms_deform_attn_backward_cpu(
    const at::Tensor& value, const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights, const at::Tensor& grad_output) {
  const char* op = "_ms_deform_attn_backward";
  ms_deform_attn_detail::check_args(value, spatial_shapes, level_start_index, sampling_locations,
                                    attention_weights, op);
  const Sizes n = sizes_of(value, sampling_locations);
  TORCH_CHECK(grad_output.dim() == 3 && grad_output.size(0) == n.bs &&
                  grad_output.size(1) == n.queries && grad_output.size(2) == n.heads * n.dim,
              op, ": grad_output must be (bs, num_queries, num_heads * dim_per_head) = (", n.bs,
              ", ", n.queries, ", ", n.heads * n.dim, "), got shape ", grad_output.sizes());
  TORCH_CHECK(grad_output.scalar_type() == value.scalar_type(), op,
              ": grad_output must have the dtype of value (",
              ms_deform_attn_detail::type_name(value), "), got ",
              ms_deform_attn_detail::type_name(grad_output));
  const Levels lv = read_levels(spatial_shapes, level_start_index, n.num_keys, op);
  const auto acc_type = at::toOpMathType(value.scalar_type());
  auto grad_loc = at::empty(sampling_locations.sizes(), sampling_locations.options());
  auto grad_attn = at::empty(attention_weights.sizes(), attention_weights.options());
  if (grad_attn.numel() == 0 || n.dim == 0) {
    return {at::zeros(value.sizes(), value.options()), grad_loc.zero_(), grad_attn.zero_()};
  }
  // every element of these is written by the kernel
  auto grad_value = at::empty(value.sizes(), value.options());
  auto grad_value_acc = acc_type == value.scalar_type()
                            ? grad_value
                            : at::empty(value.sizes(), value.options().dtype(acc_type));
  const auto value_c = value.contiguous();
  const auto loc_c = sampling_locations.contiguous();
  const auto attn_c = attention_weights.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, value.scalar_type(), "ms_deform_attn_backward_cpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        backward_kernel<scalar_t>(value_c.const_data_ptr<scalar_t>(), lv,
                                  loc_c.const_data_ptr<scalar_t>(),
                                  attn_c.const_data_ptr<scalar_t>(),
                                  grad_output.const_data_ptr<scalar_t>(),
                                  grad_output.strides(), n,
                                  grad_value_acc.data_ptr<acc_t>(),
                                  grad_value.data_ptr<scalar_t>(), grad_loc.data_ptr<scalar_t>(),
                                  grad_attn.data_ptr<scalar_t>());
      });
  return {grad_value, grad_loc, grad_attn};
}

}  // namespace

TORCH_LIBRARY_IMPL(mmdet_like, CPU, m) {
  m.impl("ms_deform_attn", &ms_deform_attn_forward_cpu);
  m.impl("_ms_deform_attn_backward", &ms_deform_attn_backward_cpu);
}

}  // namespace mmdet_like
