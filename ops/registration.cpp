// Schemas of the mmdet_like operators and the Python module entry point of mmdet_like._ext.
//
// Kernels are registered per backend next to their sources (TORCH_LIBRARY_IMPL in
// roi_align_cpu.cpp, roi_align_cuda.cu, ms_deform_attn_cpu.cpp, ...). Autograd, fake-tensor and autocast
// registrations live in Python (mmdet_like/ops/).
#include <Python.h>
#include <torch/library.h>
#include <torch/version.h>

#include <atomic>
#include <cstdint>
#include <string>

#include "common/parallel.h"

namespace mmdet_like {

// What this binary was built against; mmdet_like/ops/_ext_loader.py compares it with the
// running torch so that a stale build fails with a rebuild command, not a segfault.
std::string build_info() {
  std::string info = "torch=" + std::to_string(TORCH_VERSION_MAJOR) + "." +
                     std::to_string(TORCH_VERSION_MINOR) + "." +
                     std::to_string(TORCH_VERSION_PATCH);
#ifdef MMDET_LIKE_WITH_CUDA
  info += ";cuda=1";
#else
  info += ";cuda=0";
#endif
  return info;
}

std::atomic<int64_t>& parallel_regions_opened() {
  static std::atomic<int64_t> count{0};
  return count;
}

int64_t parallel_regions_opened_op() { return parallel_regions_opened().load(); }

}  // namespace mmdet_like

TORCH_LIBRARY(mmdet_like, m) {
  m.def("build_info() -> str", &mmdet_like::build_info);
  // parallel regions opened by the CPU kernels so far (ops/common/parallel.h)
  m.def("parallel_regions_opened() -> int", &mmdet_like::parallel_regions_opened_op);
  m.def(
      "roi_align(Tensor input, Tensor rois, float spatial_scale, int pooled_height, "
      "int pooled_width, int sampling_ratio, bool aligned) -> Tensor");
  m.def(
      "_roi_align_backward(Tensor grad, Tensor rois, float spatial_scale, int pooled_height, "
      "int pooled_width, int batch_size, int channels, int height, int width, "
      "int sampling_ratio, bool aligned) -> Tensor");
  m.def(
      "ms_deform_attn(Tensor value, Tensor spatial_shapes, Tensor level_start_index, "
      "Tensor sampling_locations, Tensor attention_weights) -> Tensor");
  m.def(
      "_ms_deform_attn_backward(Tensor value, Tensor spatial_shapes, Tensor level_start_index, "
      "Tensor sampling_locations, Tensor attention_weights, Tensor grad_output) "
      "-> (Tensor, Tensor, Tensor)");
  m.def("nms(Tensor boxes, Tensor scores, float iou_threshold) -> Tensor");
  m.def(
      "soft_nms(Tensor boxes, Tensor scores, float iou_threshold, float sigma, "
      "float min_score, int method) -> (Tensor, Tensor)");
}

// mmdet_like._ext is imported as a Python module; importing it runs the static
// registrations above. It exposes no Python functions of its own.
static struct PyModuleDef mmdet_like_ext_module = {PyModuleDef_HEAD_INIT, "_ext", nullptr, -1,
                                                   nullptr};

PyMODINIT_FUNC PyInit__ext(void) { return PyModule_Create(&mmdet_like_ext_module); }
