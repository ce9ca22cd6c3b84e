// Soft-NMS (Bodla et al., 2017) on the CPU.
//
// Repeatedly selects the remaining box of highest (decayed) score, then decays the scores of
// the remaining boxes by their IoU with it: method 0 (hard) drops boxes above iou_threshold,
// 1 (linear) multiplies by 1 - IoU above iou_threshold, 2 (gaussian) by exp(-IoU^2 / sigma).
// Boxes whose score falls below min_score are discarded. Returns (dets (M, 5) as
// [x1, y1, x2, y2, decayed score], keep (M,) indices into the input) in selection order.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <cmath>
#include <tuple>
#include <vector>

#include "nms/nms_common.h"

namespace mmdet_like {
namespace {

template <typename T>
std::tuple<at::Tensor, at::Tensor> soft_nms_kernel(const at::Tensor& boxes,
                                                   const at::Tensor& scores, double iou_threshold,
                                                   double sigma, double min_score,
                                                   int64_t method) {
  const int64_t n = boxes.size(0);
  // Candidates in descending score order (stable), so ties select the earlier input box.
  const at::Tensor order = std::get<1>(scores.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  const int64_t* ord = order.const_data_ptr<int64_t>();
  const at::Tensor boxes_c = boxes.contiguous();
  const at::Tensor scores_c = scores.contiguous();
  const T* bx = boxes_c.const_data_ptr<T>();
  const T* sc = scores_c.const_data_ptr<T>();

  std::vector<int64_t> alive;  // input indices still in play
  std::vector<T> score;        // their decayed scores
  alive.reserve(n);
  score.reserve(n);
  for (int64_t i = 0; i < n; ++i) {
    if (static_cast<double>(sc[ord[i]]) >= min_score) {
      alive.push_back(ord[i]);
      score.push_back(sc[ord[i]]);
    }
  }
  auto area = [&](int64_t k) {
    const T* b = bx + k * 4;
    return (b[2] - b[0]) * (b[3] - b[1]);
  };

  std::vector<int64_t> keep;
  std::vector<T> dets;
  while (!alive.empty()) {
    size_t best = 0;
    for (size_t j = 1; j < alive.size(); ++j) {
      if (score[j] > score[best]) best = j;
    }
    const int64_t i = alive[best];
    const T* bi = bx + i * 4;
    keep.push_back(i);
    dets.insert(dets.end(), {bi[0], bi[1], bi[2], bi[3], score[best]});
    const T ia = area(i);
    // Remove the selected box, keeping the order of the others (stable tie-breaking).
    alive.erase(alive.begin() + static_cast<std::ptrdiff_t>(best));
    score.erase(score.begin() + static_cast<std::ptrdiff_t>(best));

    size_t out = 0;
    for (size_t j = 0; j < alive.size(); ++j) {
      const int64_t q = alive[j];
      const T* bq = bx + q * 4;
      const T iou = nms_detail::box_iou(bi[0], bi[1], bi[2], bi[3], ia, bq[0], bq[1], bq[2],
                                        bq[3], area(q));
      T weight = T(1);
      if (method == 0) {
        weight = static_cast<double>(iou) > iou_threshold ? T(0) : T(1);
      } else if (method == 1) {
        weight = static_cast<double>(iou) > iou_threshold ? T(1) - iou : T(1);
      } else {
        weight = static_cast<T>(std::exp(-static_cast<double>(iou) * iou / sigma));
      }
      const T s = score[j] * weight;
      if (static_cast<double>(s) >= min_score) {
        alive[out] = q;
        score[out] = s;
        ++out;
      }
    }
    alive.resize(out);
    score.resize(out);
  }
  const int64_t m = static_cast<int64_t>(keep.size());
  at::Tensor dets_t = at::empty({m, 5}, boxes.options());
  std::copy(dets.begin(), dets.end(), dets_t.data_ptr<T>());
  return {dets_t, at::tensor(keep, boxes.options().dtype(at::kLong))};
}

std::tuple<at::Tensor, at::Tensor> soft_nms_cpu(const at::Tensor& boxes, const at::Tensor& scores,
                                                double iou_threshold, double sigma,
                                                double min_score, int64_t method) {
  nms_detail::check_nms_args(boxes, scores, "soft_nms");
  TORCH_CHECK(method >= 0 && method <= 2,
              "soft_nms: method must be 0 (hard), 1 (linear) or 2 (gaussian), got ", method);
  TORCH_CHECK(method != 2 || sigma > 0, "soft_nms: sigma must be positive, got ", sigma);
  TORCH_CHECK(boxes.scalar_type() == scores.scalar_type(),
              "soft_nms: boxes and scores must have the same dtype, got ", boxes.scalar_type(),
              " and ", scores.scalar_type());
  std::tuple<at::Tensor, at::Tensor> result;
  AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "soft_nms_cpu", [&] {
    result = soft_nms_kernel<scalar_t>(boxes, scores, iou_threshold, sigma, min_score, method);
  });
  return result;
}

}  // namespace

TORCH_LIBRARY_IMPL(mmdet_like, CPU, m) { m.impl("soft_nms", &soft_nms_cpu); }

}  // namespace mmdet_like
