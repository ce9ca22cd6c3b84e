// RoIAlign forward and backward on the CPU, parallel over RoIs (forward) and channels (backward).
//
// Each call opens at most one parallel region, and only when it has enough work: when
// another process keeps the cores busy (data-loader workers in a training run), OpenMP
// threads wait for a core at every region, so a region costs more than small work saves.
//
// For every RoI the bilinear taps of all its samples (spatial offset, weight) are computed once
// and reused for all channels. Input may have any strides: contiguous (NCHW), channels_last
// (NHWC, then the channel loop is innermost and reads contiguous memory) or a strided view.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "common/parallel.h"
#include "roi_align/roi_align_common.h"

namespace mmdet_like {
namespace {

using roi_align_detail::bilinear_taps;
using roi_align_detail::BilinearTaps;
using roi_align_detail::roi_geometry;
using roi_align_detail::RoIGeometry;
using roi_align_detail::sample_coord;

// All bilinear taps of one RoI, grouped by output bin (CSR layout: taps of bin i are
// [bin_start[i], bin_start[i + 1])). Offsets are y * stride_h + x * stride_w.
template <typename acc_t>
struct RoITaps {
  int64_t batch = 0;
  acc_t inv_count = acc_t(1);
  std::vector<int64_t> bin_start;
  std::vector<int64_t> offset;
  std::vector<acc_t> weight;
};

template <typename acc_t>
void collect_taps(const acc_t* roi, int64_t roi_index, int64_t batch_size, acc_t spatial_scale,
                  int pooled_height, int pooled_width, int sampling_ratio, bool aligned,
                  int height, int width, int64_t stride_h, int64_t stride_w,
                  RoITaps<acc_t>& taps) {
  const int64_t batch = static_cast<int64_t>(roi[0]);
  TORCH_CHECK(batch >= 0 && batch < batch_size, "roi_align: rois[", roi_index, ", 0] = ", roi[0],
              " is not a batch index of the input (batch size ", batch_size, ")");
  const RoIGeometry<acc_t> g =
      roi_geometry(roi, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned);
  taps.batch = batch;
  taps.inv_count = g.inv_count;
  taps.bin_start.assign(1, 0);
  taps.offset.clear();
  taps.weight.clear();
  const int64_t samples = static_cast<int64_t>(g.grid_h) * g.grid_w;
  taps.offset.reserve(4 * samples * pooled_height * pooled_width);
  taps.weight.reserve(4 * samples * pooled_height * pooled_width);
  for (int ph = 0; ph < pooled_height; ++ph) {
    for (int pw = 0; pw < pooled_width; ++pw) {
      for (int iy = 0; iy < g.grid_h; ++iy) {
        const acc_t y = sample_coord(g.start_h, g.bin_h, ph, iy, g.grid_h);
        for (int ix = 0; ix < g.grid_w; ++ix) {
          const acc_t x = sample_coord(g.start_w, g.bin_w, pw, ix, g.grid_w);
          const BilinearTaps<acc_t> t = bilinear_taps(y, x, height, width);
          if (!t.valid) continue;
          taps.offset.push_back(t.y_low * stride_h + t.x_low * stride_w);
          taps.weight.push_back(t.w_ll);
          taps.offset.push_back(t.y_low * stride_h + t.x_high * stride_w);
          taps.weight.push_back(t.w_lh);
          taps.offset.push_back(t.y_high * stride_h + t.x_low * stride_w);
          taps.weight.push_back(t.w_hl);
          taps.offset.push_back(t.y_high * stride_h + t.x_high * stride_w);
          taps.weight.push_back(t.w_hh);
        }
      }
      taps.bin_start.push_back(static_cast<int64_t>(taps.offset.size()));
    }
  }
}

// A call with fewer multiply-adds than kMinParallelWork runs serially; a parallel task gets
// at least kMinTaskWork of them.
constexpr int64_t kMinParallelWork = int64_t(1) << 21;
constexpr int64_t kMinTaskWork = int64_t(1) << 20;

// The grain for at::parallel_for over `items` items of about `work_per_item` multiply-adds:
// all items in one task (serial) when the whole call is small.
inline int64_t parallel_grain(int64_t items, int64_t work_per_item) {
  work_per_item = std::max<int64_t>(work_per_item, 1);
  if (items * work_per_item < kMinParallelWork) return std::max<int64_t>(items, 1);
  return std::max<int64_t>(1, kMinTaskWork / work_per_item);
}

// Taps of an RoI estimated before they are collected: 4 per sample, sampling_ratio^2
// samples per bin (adaptive sampling: at least 1, usually about 4).
inline int64_t estimated_taps(int64_t bins, int sampling_ratio) {
  const int64_t samples = sampling_ratio > 0 ? int64_t(sampling_ratio) * sampling_ratio : 4;
  return 4 * samples * bins;
}

// Channels handled together by one pass over an RoI's taps: the tap list is read once per
// block instead of once per channel, and the block's sums are independent (more ILP).
constexpr int64_t kChannelBlock = 8;

// out_k[c + cc, bin] for cc < CB: the average of the RoI's taps in channels c .. c + CB - 1.
template <int64_t CB, typename scalar_t, typename acc_t>
inline void pool_channels(const scalar_t* base, int64_t stride_c, int64_t c, int64_t bins,
                          const RoITaps<acc_t>& taps, scalar_t* out_k) {
  const scalar_t* planes[CB];
  for (int64_t cc = 0; cc < CB; ++cc) planes[cc] = base + (c + cc) * stride_c;
  const int64_t* off = taps.offset.data();
  const acc_t* w = taps.weight.data();
  for (int64_t bin = 0; bin < bins; ++bin) {
    acc_t sum[CB] = {};
    for (int64_t t = taps.bin_start[bin]; t < taps.bin_start[bin + 1]; ++t) {
      const acc_t wt = w[t];
      const int64_t o = off[t];
      for (int64_t cc = 0; cc < CB; ++cc) sum[cc] += wt * static_cast<acc_t>(planes[cc][o]);
    }
    for (int64_t cc = 0; cc < CB; ++cc) {
      out_k[(c + cc) * bins + bin] = static_cast<scalar_t>(sum[cc] * taps.inv_count);
    }
  }
}

// grad_input[c + cc] += taps^T grad[k, c + cc] for cc < CB (the adjoint of pool_channels).
template <int64_t CB, typename scalar_t, typename acc_t>
inline void scatter_channels(const scalar_t* grad_k, acc_t* grad_input_b, int64_t plane,
                             int64_t c, int64_t bins, const RoITaps<acc_t>& taps) {
  acc_t* dst[CB];
  const scalar_t* src[CB];
  for (int64_t cc = 0; cc < CB; ++cc) {
    dst[cc] = grad_input_b + (c + cc) * plane;
    src[cc] = grad_k + (c + cc) * bins;
  }
  const int64_t* off = taps.offset.data();
  const acc_t* w = taps.weight.data();
  for (int64_t bin = 0; bin < bins; ++bin) {
    acc_t g[CB];
    bool any = false;
    for (int64_t cc = 0; cc < CB; ++cc) {
      g[cc] = static_cast<acc_t>(src[cc][bin]) * taps.inv_count;
      any |= g[cc] != acc_t(0);
    }
    if (!any) continue;
    for (int64_t t = taps.bin_start[bin]; t < taps.bin_start[bin + 1]; ++t) {
      const acc_t wt = w[t];
      const int64_t o = off[t];
      for (int64_t cc = 0; cc < CB; ++cc) dst[cc][o] += wt * g[cc];
    }
  }
}

template <typename scalar_t>
void roi_align_forward_kernel(const at::Tensor& input, const at::Tensor& rois,
                              double spatial_scale, int pooled_height, int pooled_width,
                              int sampling_ratio, bool aligned, at::Tensor& output) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t num_rois = rois.size(0);
  const int64_t batch_size = input.size(0), channels = input.size(1);
  const int height = static_cast<int>(input.size(2)), width = static_cast<int>(input.size(3));
  const int64_t stride_n = input.stride(0), stride_c = input.stride(1);
  const int64_t stride_h = input.stride(2), stride_w = input.stride(3);
  const int64_t bins = static_cast<int64_t>(pooled_height) * pooled_width;
  const scalar_t* in = input.const_data_ptr<scalar_t>();
  const acc_t* roi_data = rois.const_data_ptr<acc_t>();
  scalar_t* out = output.data_ptr<scalar_t>();
  // channels_last: one tap reads C contiguous values, so loop channels innermost.
  const bool channels_inner = stride_c == 1 && channels > 1;

  const int64_t grain = parallel_grain(num_rois, channels * estimated_taps(bins, sampling_ratio));
  mmdet_like::parallel_for(0, num_rois, grain, [&](int64_t begin, int64_t end) {
    RoITaps<acc_t> taps;
    std::vector<acc_t> acc(channels_inner ? channels : 0);
    for (int64_t k = begin; k < end; ++k) {
      collect_taps(roi_data + k * 5, k, batch_size, static_cast<acc_t>(spatial_scale),
                   pooled_height, pooled_width, sampling_ratio, aligned, height, width, stride_h,
                   stride_w, taps);
      const scalar_t* base = in + taps.batch * stride_n;
      scalar_t* out_k = out + k * channels * bins;
      const int64_t* off = taps.offset.data();
      const acc_t* w = taps.weight.data();
      if (!channels_inner) {
        int64_t c = 0;
        for (; c + kChannelBlock <= channels; c += kChannelBlock) {
          pool_channels<kChannelBlock>(base, stride_c, c, bins, taps, out_k);
        }
        for (; c < channels; ++c) pool_channels<1>(base, stride_c, c, bins, taps, out_k);
      } else {
        for (int64_t bin = 0; bin < bins; ++bin) {
          std::fill(acc.begin(), acc.end(), acc_t(0));
          for (int64_t t = taps.bin_start[bin]; t < taps.bin_start[bin + 1]; ++t) {
            const scalar_t* row = base + off[t];
            const acc_t wt = w[t];
            for (int64_t c = 0; c < channels; ++c) acc[c] += wt * static_cast<acc_t>(row[c]);
          }
          for (int64_t c = 0; c < channels; ++c) {
            out_k[c * bins + bin] = static_cast<scalar_t>(acc[c] * taps.inv_count);
          }
        }
      }
    }
  });
}

// grad_input (N, C, H, W) contiguous, accumulated in acc_t. One parallel region over blocks
// of channels: each task owns whole channel blocks of grad_input (no two threads write one
// element) and walks every RoI, computing its taps once for all its blocks. With T tasks the
// taps are computed T times, against a scatter C / T channels wide; every element receives
// its RoIs' contributions in RoI order, whatever the number of threads.
template <typename scalar_t>
void roi_align_backward_kernel(const at::Tensor& grad, const at::Tensor& rois,
                               double spatial_scale, int pooled_height, int pooled_width,
                               int sampling_ratio, bool aligned, at::Tensor& grad_input) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t num_rois = rois.size(0);
  const int64_t batch_size = grad_input.size(0), channels = grad_input.size(1);
  const int height = static_cast<int>(grad_input.size(2));
  const int width = static_cast<int>(grad_input.size(3));
  const int64_t plane = static_cast<int64_t>(height) * width;
  const int64_t bins = static_cast<int64_t>(pooled_height) * pooled_width;
  const scalar_t* g = grad.const_data_ptr<scalar_t>();
  const acc_t* roi_data = rois.const_data_ptr<acc_t>();
  acc_t* gin = grad_input.data_ptr<acc_t>();

  const int64_t channel_blocks = (channels + kChannelBlock - 1) / kChannelBlock;
  const int64_t block_work = num_rois * kChannelBlock * estimated_taps(bins, sampling_ratio);
  const int64_t grain = parallel_grain(channel_blocks, block_work);
  mmdet_like::parallel_for(0, channel_blocks, grain, [&](int64_t cb_begin, int64_t cb_end) {
    RoITaps<acc_t> t;
    for (int64_t k = 0; k < num_rois; ++k) {
      collect_taps(roi_data + k * 5, k, batch_size, static_cast<acc_t>(spatial_scale),
                   pooled_height, pooled_width, sampling_ratio, aligned, height, width,
                   static_cast<int64_t>(width), int64_t(1), t);
      const scalar_t* grad_k = g + k * channels * bins;
      acc_t* grad_input_b = gin + t.batch * channels * plane;
      for (int64_t cb = cb_begin; cb < cb_end; ++cb) {
        const int64_t c_begin = cb * kChannelBlock;
        const int64_t c_end = std::min(channels, c_begin + kChannelBlock);
        if (c_end - c_begin == kChannelBlock) {
          scatter_channels<kChannelBlock>(grad_k, grad_input_b, plane, c_begin, bins, t);
        } else {
          for (int64_t c = c_begin; c < c_end; ++c) {
            scatter_channels<1>(grad_k, grad_input_b, plane, c, bins, t);
          }
        }
      }
    }
  });
}

at::Tensor roi_align_forward_cpu(const at::Tensor& input, const at::Tensor& rois,
                                 double spatial_scale, int64_t pooled_height,
                                 int64_t pooled_width, int64_t sampling_ratio, bool aligned) {
  roi_align_detail::check_roi_align_args(input, rois, pooled_height, pooled_width, "roi_align");
  // Every element is written by the kernel (bins without samples get 0).
  auto output = at::empty({rois.size(0), input.size(1), pooled_height, pooled_width},
                          input.options().memory_format(at::MemoryFormat::Contiguous));
  if (output.numel() == 0) return output;
  if (input.size(2) == 0 || input.size(3) == 0) return output.zero_();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, input.scalar_type(), "roi_align_forward_cpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const auto rois_acc = rois.to(c10::CppTypeToScalarType<acc_t>::value).contiguous();
        roi_align_forward_kernel<scalar_t>(input, rois_acc, spatial_scale,
                                           static_cast<int>(pooled_height),
                                           static_cast<int>(pooled_width),
                                           static_cast<int>(sampling_ratio), aligned, output);
      });
  return output;
}

at::Tensor roi_align_backward_cpu(const at::Tensor& grad, const at::Tensor& rois,
                                  double spatial_scale, int64_t pooled_height,
                                  int64_t pooled_width, int64_t batch_size, int64_t channels,
                                  int64_t height, int64_t width, int64_t sampling_ratio,
                                  bool aligned) {
  TORCH_CHECK(grad.dim() == 4 && grad.size(0) == rois.size(0) && grad.size(1) == channels &&
                  grad.size(2) == pooled_height && grad.size(3) == pooled_width,
              "_roi_align_backward: grad must be (K, C, ph, pw) = (", rois.size(0), ", ",
              channels, ", ", pooled_height, ", ", pooled_width, "), got ", grad.sizes());
  const auto acc_type = at::toOpMathType(grad.scalar_type());
  auto grad_input =
      at::zeros({batch_size, channels, height, width}, grad.options().dtype(acc_type));
  if (grad.numel() == 0 || height == 0 || width == 0) return grad_input.to(grad.scalar_type());
  const auto grad_c = grad.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad.scalar_type(), "roi_align_backward_cpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const auto rois_acc = rois.to(c10::CppTypeToScalarType<acc_t>::value).contiguous();
        roi_align_backward_kernel<scalar_t>(grad_c, rois_acc, spatial_scale,
                                            static_cast<int>(pooled_height),
                                            static_cast<int>(pooled_width),
                                            static_cast<int>(sampling_ratio), aligned,
                                            grad_input);
      });
  return grad_input.to(grad.scalar_type());
}

}  // namespace

TORCH_LIBRARY_IMPL(mmdet_like, CPU, m) {
  m.impl("roi_align", &roi_align_forward_cpu);
  m.impl("_roi_align_backward", &roi_align_backward_cpu);
}

}  // namespace mmdet_like
