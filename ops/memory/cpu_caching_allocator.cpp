// A caching allocator for large CPU blocks: freed blocks are kept mapped and handed out again.
//
// torch's default CPU allocator takes every block from malloc. glibc maps each block above
// its mmap threshold (at most 32 MiB) afresh and unmaps it when it is freed, so every
// training iteration of a detector maps its large activations again and the kernel faults
// in and zeroes each of their 4 KiB pages on first touch (2.7 million page faults an
// iteration for Mask R-CNN R50-FPN on 2 images of 800 x 1216).
//
// This allocator serves blocks of at least `min_block_bytes` from anonymous mappings of its
// own, rounded up to one of 8 sizes per power of two, and keeps them in a cache when they
// are freed; a later request of the same size class gets a block whose pages are already
// mapped. Smaller blocks go to c10::alloc_cpu as before.
//
// Memory bound: the mapped bytes (in use plus cached) never exceed the largest amount that
// was ever in use at once. On a miss that would pass that mark, cached blocks are unmapped
// (least recently freed first) before a new block is mapped. So the cache only holds memory
// the process has needed before, and the high-water mark stays what it is without the cache
// (up to the rounding of sizes, whose untouched tail pages cost nothing). Blocks of a size
// class that is no longer asked for are released by later misses.
//
// Like torch's default CPU allocator, it reports every allocation and free to the profiler
// (c10::profiledCPUMemoryReporter), so `torch.profiler.profile(profile_memory=True)` sees
// the same memory events with the cache on as without it.
//
// Python face: mmdet_like/ops/cpu_caching_allocator.py.
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#include <c10/util/Exception.h>
#include <sys/mman.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <list>
#include <map>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

namespace mmdet_like {
namespace {

constexpr size_t kPageBytes = 4096;
// A cached block may serve a request down to half its size.
constexpr size_t kMaxOversize = 2;

// `nbytes` rounded up to one of 8 steps per power of two, and to whole pages.
size_t size_class(size_t nbytes) {
  const int log2_floor = 63 - __builtin_clzll(static_cast<unsigned long long>(nbytes));
  const size_t step = std::max<size_t>(size_t{1} << std::max(log2_floor - 3, 0), kPageBytes);
  return (nbytes + step - 1) / step * step;
}

class CachingCPUAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t nbytes) override {
    if (nbytes < min_block_bytes_) {
      void* data = c10::alloc_cpu(nbytes);
      c10::profiledCPUMemoryReporter().New(data, nbytes);
      return {data, data, &delete_small, c10::Device(c10::DeviceType::CPU)};
    }
    void* data = take(size_class(nbytes));
    c10::profiledCPUMemoryReporter().New(data, nbytes);
    return {data, data, &delete_block, c10::Device(c10::DeviceType::CPU)};
  }

  // raw_allocate() blocks of either kind come back here.
  c10::DeleterFnPtr raw_deleter() const override { return &delete_any; }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }

  void set_min_block_bytes(size_t bytes) { min_block_bytes_ = std::max(bytes, kPageBytes); }

  void set_caching(bool caching) {
    std::lock_guard<std::mutex> lock(mutex_);
    caching_ = caching;
    if (!caching_) release_locked(SIZE_MAX);
  }

  // Unmap every cached block (blocks in use are not touched).
  void release_cached() {
    std::lock_guard<std::mutex> lock(mutex_);
    release_locked(SIZE_MAX);
  }

  // [cached bytes, bytes in use in large blocks, their high-water mark, hits, misses,
  //  blocks unmapped]
  std::vector<int64_t> stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return {static_cast<int64_t>(cached_bytes_),       static_cast<int64_t>(in_use_bytes_),
            static_cast<int64_t>(peak_in_use_bytes_), hits_,
            misses_,                                   released_blocks_};
  }

  static CachingCPUAllocator& instance() {
    // Never destroyed: tensors may be freed during interpreter shutdown, after static
    // destructors have run.
    static auto* allocator = new CachingCPUAllocator();
    return *allocator;
  }

 private:
  using FreeList = std::list<std::pair<void*, size_t>>;  // (block, size class), oldest first

  void* take(size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    // The smallest cached size class that fits, up to kMaxOversize times the request.
    auto cls = free_by_size_.lower_bound(bytes);
    void* data = nullptr;
    if (cls != free_by_size_.end() && cls->first <= bytes * kMaxOversize) {
      auto entry = cls->second.back();  // the most recently freed block of that size
      cls->second.pop_back();
      data = entry->first;
      bytes = entry->second;
      free_order_.erase(entry);
      if (cls->second.empty()) free_by_size_.erase(cls);
      cached_bytes_ -= bytes;
      ++hits_;
    } else {
      ++misses_;
      // Keep in use + cached within the high-water mark of in use (counting this block).
      peak_in_use_bytes_ = std::max(peak_in_use_bytes_, in_use_bytes_ + bytes);
      const size_t mapped_after = in_use_bytes_ + cached_bytes_ + bytes;
      if (mapped_after > peak_in_use_bytes_) release_locked(mapped_after - peak_in_use_bytes_);
      data = map_block(bytes);
      if (data == nullptr) {
        release_locked(SIZE_MAX);
        data = map_block(bytes);
      }
      TORCH_CHECK_WITH(OutOfMemoryError, data != nullptr,
                       "mmdet_like CPU caching allocator: cannot map ", bytes,
                       " bytes (out of host memory)");
    }
    in_use_.emplace(data, bytes);
    in_use_bytes_ += bytes;
    peak_in_use_bytes_ = std::max(peak_in_use_bytes_, in_use_bytes_);
    return data;
  }

  void give_back(void* data) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = in_use_.find(data);
    TORCH_INTERNAL_ASSERT(it != in_use_.end(), "freeing a block this allocator did not hand out");
    const size_t bytes = it->second;
    in_use_.erase(it);
    in_use_bytes_ -= bytes;
    if (!caching_) {  // switched off since this block was handed out
      munmap(data, bytes);
      ++released_blocks_;
      return;
    }
    free_order_.emplace_back(data, bytes);
    free_by_size_[bytes].push_back(std::prev(free_order_.end()));
    cached_bytes_ += bytes;
  }

  bool owns(void* data) {
    std::lock_guard<std::mutex> lock(mutex_);
    return in_use_.count(data) != 0;
  }

  // Unmap cached blocks, least recently freed first, until `bytes` have been released.
  void release_locked(size_t bytes) {
    size_t released = 0;
    while (released < bytes && !free_order_.empty()) {
      auto [data, size] = free_order_.front();
      auto same_size = free_by_size_.find(size);
      // the oldest entry of the list is the oldest of its size class too
      same_size->second.erase(same_size->second.begin());
      if (same_size->second.empty()) free_by_size_.erase(same_size);
      free_order_.pop_front();
      munmap(data, size);
      cached_bytes_ -= size;
      released += size;
      ++released_blocks_;
    }
  }

  static void* map_block(size_t bytes) {
    void* data = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return data == MAP_FAILED ? nullptr : data;
  }

  static void delete_small(void* data) {
    c10::profiledCPUMemoryReporter().Delete(data);
    c10::free_cpu(data);
  }

  static void delete_block(void* data) {
    c10::profiledCPUMemoryReporter().Delete(data);
    instance().give_back(data);
  }

  static void delete_any(void* data) {
    if (data == nullptr) return;
    c10::profiledCPUMemoryReporter().Delete(data);
    if (instance().owns(data)) {
      instance().give_back(data);
    } else {
      c10::free_cpu(data);
    }
  }

  std::mutex mutex_;
  bool caching_ = true;
  size_t min_block_bytes_ = size_t{1} << 20;
  FreeList free_order_;
  std::map<size_t, std::vector<FreeList::iterator>> free_by_size_;  // non-empty lists only
  std::unordered_map<void*, size_t> in_use_;
  size_t cached_bytes_ = 0;
  size_t in_use_bytes_ = 0;
  size_t peak_in_use_bytes_ = 0;
  int64_t hits_ = 0;
  int64_t misses_ = 0;
  int64_t released_blocks_ = 0;
};

c10::Allocator* g_previous_allocator = nullptr;

// Make the caching allocator torch's CPU allocator (true if it is in place afterwards).
bool enable_cpu_caching_allocator(int64_t min_block_bytes) {
  TORCH_CHECK(min_block_bytes > 0, "min_block_bytes must be positive, got ", min_block_bytes);
  auto& allocator = CachingCPUAllocator::instance();
  allocator.set_min_block_bytes(static_cast<size_t>(min_block_bytes));
  allocator.set_caching(true);
  c10::Allocator* current = c10::GetCPUAllocator();
  if (current != &allocator) {
    g_previous_allocator = current;
    c10::SetCPUAllocator(&allocator);
  }
  return c10::GetCPUAllocator() == &allocator;
}

// Put the previous CPU allocator back and unmap the cache. Blocks still in use are unmapped
// when their tensors go.
bool disable_cpu_caching_allocator() {
  auto& allocator = CachingCPUAllocator::instance();
  if (c10::GetCPUAllocator() == &allocator && g_previous_allocator != nullptr) {
    c10::SetCPUAllocator(g_previous_allocator);
  }
  allocator.set_caching(false);
  return c10::GetCPUAllocator() != &allocator;
}

bool cpu_caching_allocator_enabled() {
  return c10::GetCPUAllocator() == &CachingCPUAllocator::instance();
}

std::vector<int64_t> cpu_caching_allocator_stats() {
  return CachingCPUAllocator::instance().stats();
}

void cpu_caching_allocator_release() { CachingCPUAllocator::instance().release_cached(); }

}  // namespace
}  // namespace mmdet_like

TORCH_LIBRARY_FRAGMENT(mmdet_like, m) {
  m.def("enable_cpu_caching_allocator(int min_block_bytes) -> bool",
        &mmdet_like::enable_cpu_caching_allocator);
  m.def("disable_cpu_caching_allocator() -> bool", &mmdet_like::disable_cpu_caching_allocator);
  m.def("cpu_caching_allocator_enabled() -> bool", &mmdet_like::cpu_caching_allocator_enabled);
  m.def("cpu_caching_allocator_stats() -> int[]", &mmdet_like::cpu_caching_allocator_stats);
  m.def("cpu_caching_allocator_release() -> ()", &mmdet_like::cpu_caching_allocator_release);
}
