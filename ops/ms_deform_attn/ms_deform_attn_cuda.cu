// Multi-scale deformable attention on CUDA, forward and backward, for float, double, half and
// bfloat16 (half and bfloat16 compute in float32).
//
// One warp per (batch, query, head): its lanes hold the channels (lane, lane + 32, ...), so
// every read of a value row and every write of an output row is coalesced, and the sample
// geometry (the same for all channels) is computed by every lane without divergence.
// Backward: each lane scatters its channels' share of grad_value with atomic adds into a float
// (or double) buffer, cast to value's dtype at the end (atomic adds in half precision lose too
// much); the gradients of a sample's location and attention weight are sums over channels,
// reduced across the warp with shuffles and written by lane 0 (no atomics, deterministic).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/Atomic.cuh>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "ms_deform_attn/ms_deform_attn_common.h"

namespace mmdet_like {
namespace {

using ms_deform_attn_detail::corner_key;
using ms_deform_attn_detail::corners;
using ms_deform_attn_detail::Corners;
using ms_deform_attn_detail::weight_grads;

constexpr int kThreads = 256;
constexpr int kWarp = 32;

inline int num_blocks(int64_t groups) {
  const int64_t blocks = (groups * kWarp + kThreads - 1) / kThreads;
  return static_cast<int>(std::min<int64_t>(blocks, 65535 * 8));
}

template <typename T>
__device__ inline T warp_sum(T v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  }
  return v;
}

struct Dims {
  int64_t num_keys;
  int64_t queries;
  int heads;
  int dim;
  int levels;
  int points;
};

// Sizes of a level, checked against value (a device-side assert: reading spatial_shapes on the
// host would wait for the GPU).
__device__ inline void level_geometry(const int64_t* shapes, const int64_t* starts, int l,
                                      int64_t num_keys, int& height, int& width,
                                      int64_t& start) {
  height = static_cast<int>(shapes[2 * l]);
  width = static_cast<int>(shapes[2 * l + 1]);
  start = starts[l];
  CUDA_KERNEL_ASSERT(height >= 1 && width >= 1 && start >= 0 &&
                     start + static_cast<int64_t>(height) * width <= num_keys);
}

template <typename scalar_t, typename acc_t>
__global__ void ms_deform_attn_forward_cuda_kernel(int64_t groups,
                                                   const scalar_t* __restrict__ value,
                                                   const int64_t* __restrict__ shapes,
                                                   const int64_t* __restrict__ starts,
                                                   const scalar_t* __restrict__ loc,
                                                   const scalar_t* __restrict__ attn, Dims n,
                                                   scalar_t* __restrict__ out) {
  const int lane = threadIdx.x % kWarp;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x / kWarp);
  const int64_t row_stride = static_cast<int64_t>(n.heads) * n.dim;
  const int samples = n.levels * n.points;
  for (int64_t group = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / kWarp;
       group < groups; group += warps) {
    // group = (b * queries + q) * heads + h
    const int64_t r = group / n.heads;
    const int h = static_cast<int>(group % n.heads);
    const int64_t b = r / n.queries;
    const scalar_t* value_bh = value + b * n.num_keys * row_stride + h * n.dim;
    const scalar_t* loc_g = loc + 2 * group * samples;
    const scalar_t* attn_g = attn + group * samples;
    for (int c = lane; c < n.dim; c += kWarp) {
      acc_t acc = acc_t(0);
      for (int l = 0; l < n.levels; ++l) {
        int height, width;
        int64_t start;
        level_geometry(shapes, starts, l, n.num_keys, height, width, start);
        const scalar_t* level = value_bh + start * row_stride + c;
        for (int p = 0; p < n.points; ++p) {
          const int s = l * n.points + p;
          Corners<acc_t> cr;
          if (!corners(static_cast<acc_t>(loc_g[2 * s]), static_cast<acc_t>(loc_g[2 * s + 1]),
                       height, width, cr)) {
            continue;
          }
          acc_t sampled = acc_t(0);
#pragma unroll
          for (int k = 0; k < 4; ++k) {
            if (cr.in[k]) {
              sampled += cr.w[k] * static_cast<acc_t>(level[corner_key(cr, k, width) * row_stride]);
            }
          }
          acc += static_cast<acc_t>(attn_g[s]) * sampled;
        }
      }
      out[r * row_stride + h * n.dim + c] = static_cast<scalar_t>(acc);
    }
  }
}

template <typename scalar_t, typename acc_t>
__global__ void ms_deform_attn_backward_cuda_kernel(
    int64_t groups, const scalar_t* __restrict__ value, const int64_t* __restrict__ shapes,
    const int64_t* __restrict__ starts, const scalar_t* __restrict__ loc,
    const scalar_t* __restrict__ attn, const scalar_t* __restrict__ grad_out, Dims n,
    acc_t* __restrict__ grad_value, scalar_t* __restrict__ grad_loc,
    scalar_t* __restrict__ grad_attn) {
  const int lane = threadIdx.x % kWarp;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x / kWarp);
  const int64_t row_stride = static_cast<int64_t>(n.heads) * n.dim;
  const int samples = n.levels * n.points;
  // The loop bounds below are the same for all lanes of a warp (one group per warp), so every
  // lane reaches the shuffles of warp_sum.
  for (int64_t group = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / kWarp;
       group < groups; group += warps) {
    const int64_t r = group / n.heads;
    const int h = static_cast<int>(group % n.heads);
    const int64_t b = r / n.queries;
    const int64_t bh_offset = b * n.num_keys * row_stride + h * n.dim;
    const scalar_t* loc_g = loc + 2 * group * samples;
    const scalar_t* attn_g = attn + group * samples;
    const scalar_t* grad_out_g = grad_out + r * row_stride + h * n.dim;
    for (int l = 0; l < n.levels; ++l) {
      int height, width;
      int64_t start;
      level_geometry(shapes, starts, l, n.num_keys, height, width, start);
      const scalar_t* level = value + bh_offset + start * row_stride;
      acc_t* grad_level = grad_value + bh_offset + start * row_stride;
      for (int p = 0; p < n.points; ++p) {
        const int s = l * n.points + p;
        Corners<acc_t> cr;
        if (!corners(static_cast<acc_t>(loc_g[2 * s]), static_cast<acc_t>(loc_g[2 * s + 1]),
                     height, width, cr)) {
          if (lane == 0) {
            grad_loc[2 * (group * samples + s)] = scalar_t(0);
            grad_loc[2 * (group * samples + s) + 1] = scalar_t(0);
            grad_attn[group * samples + s] = scalar_t(0);
          }
          continue;
        }
        const acc_t a = static_cast<acc_t>(attn_g[s]);
        acc_t dot[4] = {acc_t(0), acc_t(0), acc_t(0), acc_t(0)};
        for (int c = lane; c < n.dim; c += kWarp) {
          const acc_t g = static_cast<acc_t>(grad_out_g[c]);
#pragma unroll
          for (int k = 0; k < 4; ++k) {
            if (cr.in[k]) {
              const int64_t offset = corner_key(cr, k, width) * row_stride + c;
              dot[k] += g * static_cast<acc_t>(level[offset]);
              gpuAtomicAdd(grad_level + offset, a * cr.w[k] * g);
            }
          }
        }
#pragma unroll
        for (int k = 0; k < 4; ++k) dot[k] = warp_sum(dot[k]);
        if (lane == 0) {
          acc_t gx, gy;
          weight_grads(cr, dot, gx, gy);
          grad_attn[group * samples + s] = static_cast<scalar_t>(
              cr.w[0] * dot[0] + cr.w[1] * dot[1] + cr.w[2] * dot[2] + cr.w[3] * dot[3]);
          grad_loc[2 * (group * samples + s)] =
              static_cast<scalar_t>(a * gx * static_cast<acc_t>(width));
          grad_loc[2 * (group * samples + s) + 1] =
              static_cast<scalar_t>(a * gy * static_cast<acc_t>(height));
        }
      }
    }
  }
}

Dims dims_of(const at::Tensor& value, const at::Tensor& sampling_locations) {
  return {value.size(1),
          sampling_locations.size(1),
          static_cast<int>(value.size(2)),
          static_cast<int>(value.size(3)),
          static_cast<int>(sampling_locations.size(3)),
          static_cast<int>(sampling_locations.size(4))};
}

at::Tensor ms_deform_attn_forward_cuda(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                       const at::Tensor& level_start_index,
                                       const at::Tensor& sampling_locations,
                                       const at::Tensor& attention_weights) {
  ms_deform_attn_detail::check_args(value, spatial_shapes, level_start_index, sampling_locations,
                                    attention_weights, "ms_deform_attn");
  const c10::cuda::CUDAGuard guard(value.device());
  const Dims n = dims_of(value, sampling_locations);
  const int64_t bs = value.size(0);
  auto output = at::empty({bs, n.queries, static_cast<int64_t>(n.heads) * n.dim}, value.options());
  if (output.numel() == 0) return output;
  const int64_t groups = bs * n.queries * n.heads;
  const auto value_c = value.contiguous();
  const auto shapes_c = spatial_shapes.contiguous();
  const auto starts_c = level_start_index.contiguous();
  const auto loc_c = sampling_locations.contiguous();
  const auto attn_c = attention_weights.contiguous();
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, value.scalar_type(), "ms_deform_attn_forward_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        ms_deform_attn_forward_cuda_kernel<scalar_t, acc_t>
            <<<num_blocks(groups), kThreads, 0, stream>>>(
                groups, value_c.const_data_ptr<scalar_t>(), shapes_c.const_data_ptr<int64_t>(),
                starts_c.const_data_ptr<int64_t>(), loc_c.const_data_ptr<scalar_t>(),
                attn_c.const_data_ptr<scalar_t>(), n, output.data_ptr<scalar_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return output;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ms_deform_attn_backward_cuda(
    const at::Tensor& value, const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights, const at::Tensor& grad_output) {
  const char* op = "_ms_deform_attn_backward";
  ms_deform_attn_detail::check_args(value, spatial_shapes, level_start_index, sampling_locations,
                                    attention_weights, op);
  const Dims n = dims_of(value, sampling_locations);
  const int64_t bs = value.size(0), channels = static_cast<int64_t>(n.heads) * n.dim;
  TORCH_CHECK(grad_output.dim() == 3 && grad_output.size(0) == bs &&
                  grad_output.size(1) == n.queries && grad_output.size(2) == channels,
              op, ": grad_output must be (bs, num_queries, num_heads * dim_per_head) = (", bs,
              ", ", n.queries, ", ", channels, "), got shape ", grad_output.sizes());
  TORCH_CHECK(grad_output.scalar_type() == value.scalar_type(), op,
              ": grad_output must have the dtype of value (",
              ms_deform_attn_detail::type_name(value), "), got ",
              ms_deform_attn_detail::type_name(grad_output));
  TORCH_CHECK(grad_output.device() == value.device(), op, ": value is on ", value.device(),
              " but grad_output is on ", grad_output.device());
  const c10::cuda::CUDAGuard guard(value.device());
  const auto acc_type = at::toOpMathType(value.scalar_type());
  auto grad_value = at::zeros(value.sizes(), value.options().dtype(acc_type));
  auto grad_loc = at::empty(sampling_locations.sizes(), sampling_locations.options());
  auto grad_attn = at::empty(attention_weights.sizes(), attention_weights.options());
  if (grad_attn.numel() == 0 || n.dim == 0) {
    return {grad_value.to(value.scalar_type()), grad_loc.zero_(), grad_attn.zero_()};
  }
  const int64_t groups = bs * n.queries * n.heads;
  const auto value_c = value.contiguous();
  const auto shapes_c = spatial_shapes.contiguous();
  const auto starts_c = level_start_index.contiguous();
  const auto loc_c = sampling_locations.contiguous();
  const auto attn_c = attention_weights.contiguous();
  const auto grad_c = grad_output.contiguous();
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, value.scalar_type(), "ms_deform_attn_backward_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        ms_deform_attn_backward_cuda_kernel<scalar_t, acc_t>
            <<<num_blocks(groups), kThreads, 0, stream>>>(
                groups, value_c.const_data_ptr<scalar_t>(), shapes_c.const_data_ptr<int64_t>(),
                starts_c.const_data_ptr<int64_t>(), loc_c.const_data_ptr<scalar_t>(),
                attn_c.const_data_ptr<scalar_t>(), grad_c.const_data_ptr<scalar_t>(), n,
                grad_value.data_ptr<acc_t>(), grad_loc.data_ptr<scalar_t>(),
                grad_attn.data_ptr<scalar_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return {grad_value.to(value.scalar_type()), grad_loc, grad_attn};
}

}  // namespace

TORCH_LIBRARY_IMPL(mmdet_like, CUDA, m) {
  m.impl("ms_deform_attn", &ms_deform_attn_forward_cuda);
  m.impl("_ms_deform_attn_backward", &ms_deform_attn_backward_cuda);
}

}  // namespace mmdet_like
