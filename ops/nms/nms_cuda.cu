// Greedy NMS on CUDA.
//
// 1. Sort by score (stable, descending) and gather the boxes in that order.
// 2. mask kernel: for every box i and every block of 64 later boxes, a 64-bit word whose
//    bit j says "box i overlaps box j above the threshold" (only blocks at or after i's).
// 3. keep kernel: one thread block walks the sorted boxes 64 at a time; thread 0 resolves a
//    block sequentially from its diagonal mask words, then all threads OR the rows of the
//    boxes kept there into the suppression words of the later blocks. Everything stays on
//    the device; the only host sync is the final nonzero that sizes the result.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "nms/nms_common.h"

namespace mmdet_like {
namespace {

constexpr int kBlock = 64;
constexpr int kKeepThreads = 256;

// Number of boxes in block `block` of n boxes.
__device__ inline int block_size(int64_t n, int64_t block) {
  const int64_t left = n - block * kBlock;
  return static_cast<int>(left < kBlock ? left : kBlock);
}

template <typename T>
__global__ void nms_mask_kernel(int64_t n, int64_t col_blocks, const T* __restrict__ boxes,
                                T threshold, unsigned long long* __restrict__ mask) {
  const int64_t row_block = blockIdx.y, col_block = blockIdx.x;
  if (col_block < row_block) return;
  const int row_size = block_size(n, row_block);
  const int col_size = block_size(n, col_block);
  __shared__ T cols[kBlock * 5];
  if (threadIdx.x < col_size) {
    const T* b = boxes + (col_block * kBlock + threadIdx.x) * 4;
    cols[threadIdx.x * 5 + 0] = b[0];
    cols[threadIdx.x * 5 + 1] = b[1];
    cols[threadIdx.x * 5 + 2] = b[2];
    cols[threadIdx.x * 5 + 3] = b[3];
    cols[threadIdx.x * 5 + 4] = (b[2] - b[0]) * (b[3] - b[1]);
  }
  __syncthreads();
  if (threadIdx.x >= row_size) return;
  const int64_t i = row_block * kBlock + threadIdx.x;
  const T* a = boxes + i * 4;
  const T a_area = (a[2] - a[0]) * (a[3] - a[1]);
  unsigned long long bits = 0;
  const int start = row_block == col_block ? static_cast<int>(threadIdx.x) + 1 : 0;
  for (int j = start; j < col_size; ++j) {
    const T* c = cols + j * 5;
    if (nms_detail::box_iou(a[0], a[1], a[2], a[3], a_area, c[0], c[1], c[2], c[3], c[4]) >
        threshold) {
      bits |= 1ULL << j;
    }
  }
  mask[i * col_blocks + col_block] = bits;
}

__global__ void nms_keep_kernel(int64_t n, int64_t col_blocks,
                                const unsigned long long* __restrict__ mask,
                                unsigned long long* __restrict__ removed, bool* __restrict__ keep) {
  __shared__ int64_t kept[kBlock];
  __shared__ int num_kept;
  for (int64_t blk = 0; blk < col_blocks; ++blk) {
    if (threadIdx.x == 0) {
      unsigned long long r = removed[blk];
      const int size = block_size(n, blk);
      int count = 0;
      for (int bit = 0; bit < size; ++bit) {
        if ((r >> bit) & 1ULL) continue;
        const int64_t i = blk * kBlock + bit;
        keep[i] = true;
        kept[count++] = i;
        r |= mask[i * col_blocks + blk];
      }
      num_kept = count;
    }
    __syncthreads();
    for (int64_t w = blk + 1 + threadIdx.x; w < col_blocks; w += blockDim.x) {
      unsigned long long r = removed[w];
      for (int k = 0; k < num_kept; ++k) r |= mask[kept[k] * col_blocks + w];
      removed[w] = r;
    }
    __syncthreads();
  }
}

at::Tensor nms_cuda(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) {
  nms_detail::check_nms_args(boxes, scores, "nms");
  const c10::cuda::CUDAGuard guard(boxes.device());
  const int64_t n = boxes.size(0);
  if (n == 0) return at::empty({0}, boxes.options().dtype(at::kLong));
  const int64_t col_blocks = (n + kBlock - 1) / kBlock;
  TORCH_CHECK(col_blocks <= 65535, "nms: at most ", 65535 * kBlock,
              " boxes per call on CUDA, got ", n, "; split the input (batched_nms does)");
  const at::Tensor order = std::get<1>(scores.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  const auto work_type = at::toOpMathType(boxes.scalar_type());
  const at::Tensor sorted = boxes.index_select(0, order).to(work_type).contiguous();
  at::Tensor mask = at::empty({n * col_blocks}, boxes.options().dtype(at::kLong));
  at::Tensor removed = at::zeros({col_blocks}, boxes.options().dtype(at::kLong));
  at::Tensor keep = at::zeros({n}, boxes.options().dtype(at::kBool));
  auto stream = c10::cuda::getCurrentCUDAStream();
  const dim3 grid(static_cast<unsigned>(col_blocks), static_cast<unsigned>(col_blocks));
  AT_DISPATCH_FLOATING_TYPES(work_type, "nms_cuda", [&] {
    // Same threshold as torchvision's CUDA kernel: the threshold rounded to float.
    const scalar_t threshold = static_cast<scalar_t>(static_cast<float>(iou_threshold));
    nms_mask_kernel<scalar_t><<<grid, kBlock, 0, stream>>>(
        n, col_blocks, sorted.const_data_ptr<scalar_t>(), threshold,
        reinterpret_cast<unsigned long long*>(mask.data_ptr<int64_t>()));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  nms_keep_kernel<<<1, kKeepThreads, 0, stream>>>(
      n, col_blocks, reinterpret_cast<const unsigned long long*>(mask.const_data_ptr<int64_t>()),
      reinterpret_cast<unsigned long long*>(removed.data_ptr<int64_t>()), keep.data_ptr<bool>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return order.masked_select(keep);
}

}  // namespace

TORCH_LIBRARY_IMPL(mmdet_like, CUDA, m) { m.impl("nms", &nms_cuda); }

}  // namespace mmdet_like
