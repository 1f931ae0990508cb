#include "autodiff/allocator.hpp"

#include <cstdlib>
#include <unordered_map>
#include <vector>

namespace ad::memory {

namespace {

struct Cache {
  std::unordered_map<std::size_t, std::vector<void*>> free;  // by exact size
  std::size_t bytes = 0;
  ~Cache();
  void clear() {
    for (auto& [size, blocks] : free)
      for (void* p : blocks) std::free(p);
    free.clear();
    bytes = 0;
  }
};

// Blocks freed while a thread exits, after its cache is gone, go straight back to the system.
thread_local bool cache_alive = false;

Cache& cache() {
  thread_local Cache c;
  cache_alive = true;
  return c;
}

Cache::~Cache() {
  cache_alive = false;
  clear();
}

}  // namespace

namespace detail {

void* allocate_block(std::size_t bytes) {
  if (bytes >= cached_block_min) {
    Cache& c = cache();
    auto it = c.free.find(bytes);
    if (it != c.free.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      c.bytes -= bytes;
      return p;
    }
  }
  void* p = std::malloc(bytes ? bytes : 1);
  if (!p) throw std::bad_alloc();
  return p;
}

void free_block(void* p, std::size_t bytes) noexcept {
  if (!p) return;
  if (bytes >= cached_block_min && bytes <= cache_capacity) {
    Cache& c = cache();
    if (cache_alive) {
      if (c.bytes + bytes > cache_capacity) c.clear();
      try {
        c.free[bytes].push_back(p);
        c.bytes += bytes;
        return;
      } catch (...) {
      }
    }
  }
  std::free(p);
}

namespace {

std::vector<void (*)()>& releases() {
  static std::vector<void (*)()> r;
  return r;
}

}  // namespace

void on_release(void (*release)()) {
  releases().push_back(release);
}

}  // namespace detail

void release_cached_memory() {
  for (auto release : detail::releases()) release();
  cache().clear();
}

}  // namespace ad::memory
