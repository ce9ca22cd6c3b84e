// RoIAlign forward and backward on CUDA, for float, double, half and bfloat16.
//
// Forward: one thread per output element, reading the input through its strides, so
// contiguous, channels_last and strided views need no copy. Backward: one thread per
// gradient element, scattering with atomic adds into a float (or double) buffer, which is
// cast to the input's dtype at the end (atomic adds in half precision lose too much).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/Atomic.cuh>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "roi_align/roi_align_common.h"

namespace mmdet_like {
namespace {

using roi_align_detail::bilinear_taps;
using roi_align_detail::BilinearTaps;
using roi_align_detail::roi_geometry;
using roi_align_detail::RoIGeometry;
using roi_align_detail::sample_coord;

constexpr int kThreads = 256;

inline int num_blocks(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<int>(std::min<int64_t>(blocks, 65535 * 8));
}

template <typename scalar_t, typename acc_t>
__global__ void roi_align_forward_cuda_kernel(
    int64_t total, const scalar_t* __restrict__ input, int64_t batch_size, int64_t channels,
    int height, int width, int64_t stride_n, int64_t stride_c, int64_t stride_h,
    int64_t stride_w, const acc_t* __restrict__ rois, acc_t spatial_scale, int pooled_height,
    int pooled_width, int sampling_ratio, bool aligned, scalar_t* __restrict__ output) {
  for (int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
       index < total; index += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int pw = static_cast<int>(index % pooled_width);
    const int ph = static_cast<int>((index / pooled_width) % pooled_height);
    const int64_t c = (index / pooled_width / pooled_height) % channels;
    const int64_t k = index / pooled_width / pooled_height / channels;
    const acc_t* roi = rois + k * 5;
    const int64_t batch = static_cast<int64_t>(roi[0]);
    CUDA_KERNEL_ASSERT(batch >= 0 && batch < batch_size);
    const RoIGeometry<acc_t> g =
        roi_geometry(roi, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned);
    const scalar_t* plane = input + batch * stride_n + c * stride_c;
    acc_t sum = acc_t(0);
    for (int iy = 0; iy < g.grid_h; ++iy) {
      const acc_t y = sample_coord(g.start_h, g.bin_h, ph, iy, g.grid_h);
      for (int ix = 0; ix < g.grid_w; ++ix) {
        const acc_t x = sample_coord(g.start_w, g.bin_w, pw, ix, g.grid_w);
        const BilinearTaps<acc_t> t = bilinear_taps(y, x, height, width);
        if (!t.valid) continue;
        sum += t.w_ll * static_cast<acc_t>(plane[t.y_low * stride_h + t.x_low * stride_w]) +
               t.w_lh * static_cast<acc_t>(plane[t.y_low * stride_h + t.x_high * stride_w]) +
               t.w_hl * static_cast<acc_t>(plane[t.y_high * stride_h + t.x_low * stride_w]) +
               t.w_hh * static_cast<acc_t>(plane[t.y_high * stride_h + t.x_high * stride_w]);
      }
    }
    output[index] = static_cast<scalar_t>(sum * g.inv_count);
  }
}

template <typename scalar_t, typename acc_t>
__global__ void roi_align_backward_cuda_kernel(
    int64_t total, const scalar_t* __restrict__ grad, int64_t batch_size, int64_t channels,
    int height, int width, const acc_t* __restrict__ rois, acc_t spatial_scale,
    int pooled_height, int pooled_width, int sampling_ratio, bool aligned,
    acc_t* __restrict__ grad_input) {
  for (int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
       index < total; index += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int pw = static_cast<int>(index % pooled_width);
    const int ph = static_cast<int>((index / pooled_width) % pooled_height);
    const int64_t c = (index / pooled_width / pooled_height) % channels;
    const int64_t k = index / pooled_width / pooled_height / channels;
    const acc_t* roi = rois + k * 5;
    const int64_t batch = static_cast<int64_t>(roi[0]);
    CUDA_KERNEL_ASSERT(batch >= 0 && batch < batch_size);
    const RoIGeometry<acc_t> g =
        roi_geometry(roi, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned);
    const acc_t gb = static_cast<acc_t>(grad[index]) * g.inv_count;
    if (gb == acc_t(0)) continue;
    acc_t* plane = grad_input + (batch * channels + c) * height * width;
    for (int iy = 0; iy < g.grid_h; ++iy) {
      const acc_t y = sample_coord(g.start_h, g.bin_h, ph, iy, g.grid_h);
      for (int ix = 0; ix < g.grid_w; ++ix) {
        const acc_t x = sample_coord(g.start_w, g.bin_w, pw, ix, g.grid_w);
        const BilinearTaps<acc_t> t = bilinear_taps(y, x, height, width);
        if (!t.valid) continue;
        gpuAtomicAdd(plane + t.y_low * width + t.x_low, t.w_ll * gb);
        gpuAtomicAdd(plane + t.y_low * width + t.x_high, t.w_lh * gb);
        gpuAtomicAdd(plane + t.y_high * width + t.x_low, t.w_hl * gb);
        gpuAtomicAdd(plane + t.y_high * width + t.x_high, t.w_hh * gb);
      }
    }
  }
}

at::Tensor roi_align_forward_cuda(const at::Tensor& input, const at::Tensor& rois,
                                  double spatial_scale, int64_t pooled_height,
                                  int64_t pooled_width, int64_t sampling_ratio, bool aligned) {
  roi_align_detail::check_roi_align_args(input, rois, pooled_height, pooled_width, "roi_align");
  const c10::cuda::CUDAGuard guard(input.device());
  auto output = at::empty({rois.size(0), input.size(1), pooled_height, pooled_width},
                          input.options().memory_format(at::MemoryFormat::Contiguous));
  if (output.numel() == 0) return output;
  if (input.size(2) == 0 || input.size(3) == 0) return output.zero_();
  const int64_t total = output.numel();
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, input.scalar_type(), "roi_align_forward_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const auto rois_acc = rois.to(c10::CppTypeToScalarType<acc_t>::value).contiguous();
        roi_align_forward_cuda_kernel<scalar_t, acc_t><<<num_blocks(total), kThreads, 0, stream>>>(
            total, input.const_data_ptr<scalar_t>(), input.size(0), input.size(1),
            static_cast<int>(input.size(2)), static_cast<int>(input.size(3)), input.stride(0),
            input.stride(1), input.stride(2), input.stride(3), rois_acc.const_data_ptr<acc_t>(),
            static_cast<acc_t>(spatial_scale), static_cast<int>(pooled_height),
            static_cast<int>(pooled_width), static_cast<int>(sampling_ratio), aligned,
            output.data_ptr<scalar_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return output;
}

at::Tensor roi_align_backward_cuda(const at::Tensor& grad, const at::Tensor& rois,
                                   double spatial_scale, int64_t pooled_height,
                                   int64_t pooled_width, int64_t batch_size, int64_t channels,
                                   int64_t height, int64_t width, int64_t sampling_ratio,
                                   bool aligned) {
  TORCH_CHECK(grad.dim() == 4 && grad.size(0) == rois.size(0) && grad.size(1) == channels &&
                  grad.size(2) == pooled_height && grad.size(3) == pooled_width,
              "_roi_align_backward: grad must be (K, C, ph, pw) = (", rois.size(0), ", ",
              channels, ", ", pooled_height, ", ", pooled_width, "), got ", grad.sizes());
  const c10::cuda::CUDAGuard guard(grad.device());
  const auto acc_type = at::toOpMathType(grad.scalar_type());
  auto grad_input =
      at::zeros({batch_size, channels, height, width}, grad.options().dtype(acc_type));
  if (grad.numel() == 0 || height == 0 || width == 0) return grad_input.to(grad.scalar_type());
  const auto grad_c = grad.contiguous();
  const int64_t total = grad_c.numel();
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad.scalar_type(), "roi_align_backward_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const auto rois_acc = rois.to(c10::CppTypeToScalarType<acc_t>::value).contiguous();
        roi_align_backward_cuda_kernel<scalar_t, acc_t><<<num_blocks(total), kThreads, 0, stream>>>(
            total, grad_c.const_data_ptr<scalar_t>(), batch_size, channels,
            static_cast<int>(height), static_cast<int>(width), rois_acc.const_data_ptr<acc_t>(),
            static_cast<acc_t>(spatial_scale), static_cast<int>(pooled_height),
            static_cast<int>(pooled_width), static_cast<int>(sampling_ratio), aligned,
            grad_input.data_ptr<acc_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return grad_input.to(grad.scalar_type());
}

}  // namespace

TORCH_LIBRARY_IMPL(mmdet_like, CUDA, m) {
  m.impl("roi_align", &roi_align_forward_cuda);
  m.impl("_roi_align_backward", &roi_align_backward_cuda);
}

}  // namespace mmdet_like
