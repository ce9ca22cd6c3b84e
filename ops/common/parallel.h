// at::parallel_for, counted: how many parallel regions the CPU kernels open.
//
// A parallel region is cheap on an idle machine and expensive beside another busy process
// (OpenMP threads wait for a core), so each kernel opens at most one per call and none for
// small work. The counter lets the tests check that (mmdet_like::parallel_regions_opened).
#pragma once

#include <ATen/Parallel.h>

#include <atomic>
#include <cstdint>

namespace mmdet_like {

// Calls of parallel_for below that split their range into more than one task, in this
// process (defined in registration.cpp).
std::atomic<int64_t>& parallel_regions_opened();

template <typename F>
inline void parallel_for(int64_t begin, int64_t end, int64_t grain, const F& f) {
  if (end - begin > grain && at::get_num_threads() > 1 && !at::in_parallel_region()) {
    parallel_regions_opened().fetch_add(1, std::memory_order_relaxed);
  }
  at::parallel_for(begin, end, grain, f);
}

}  // namespace mmdet_like
