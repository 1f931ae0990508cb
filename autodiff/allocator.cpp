#include "autodiff/allocator.hpp"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace ad::memory {

OutOfMemory::OutOfMemory(std::size_t bytes) : bytes_(bytes) {
  std::snprintf(message_, sizeof message_,
                "out of memory: an array of %zu bytes (%.3g GB) was asked for", bytes,
                double(bytes) / 1e9);
}

namespace {

// Blocks freed while a thread exits, after its caches are gone, go straight back to the system.
thread_local bool caches_gone = false;

struct Cache {
  std::unordered_map<std::size_t, std::vector<void*>> free;  // by exact size
  std::size_t bytes = 0;
  ~Cache() {
    caches_gone = true;
    clear();
  }
  void clear() {
    for (auto& [size, blocks] : free)
      for (void* p : blocks) std::free(p);
    free.clear();
    bytes = 0;
  }
};

Cache& cache() {
  thread_local Cache c;
  return c;
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool cache_small = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
constexpr bool cache_small = false;
#else
constexpr bool cache_small = true;
#endif
#else
constexpr bool cache_small = true;
#endif

// Small blocks by size class: class i holds blocks of (i + 1) * 64 bytes, each free block's first
// bytes pointing to the next. The lists are plain data (constant-initialised, no destructor), so
// that taking a block costs no check of a thread-local object's construction; an owner object,
// made the first time the thread fills the cache, empties it when the thread exits. Taking and
// giving a block test nothing else: the lists are empty, and there is no room, unless the owner
// exists (and has not yet been destroyed) in a build that caches small blocks.
constexpr std::size_t small_grain = 64;
constexpr std::size_t small_classes = cached_block_min / small_grain;

struct SmallCache {
  void* head[small_classes];
  std::size_t room;  ///< bytes the lists may still take
  bool owned;        ///< the thread's SmallCacheOwner exists
  /// Frees every listed block.
  void clear() {
    for (void*& h : head)
      while (h) {
        void* next = *static_cast<void**>(h);
        std::free(h);
        h = next;
      }
    room = owned && !caches_gone ? small_cache_capacity : 0;
  }
};

thread_local SmallCache small_cache{};

struct SmallCacheOwner {
  SmallCacheOwner() {
    small_cache.owned = true;
    small_cache.room = small_cache_capacity;
  }
  ~SmallCacheOwner() {
    caches_gone = true;
    small_cache.clear();
  }
};

/// Makes sure that the calling thread's small blocks are freed when it exits.
void own_small_cache() {
  thread_local SmallCacheOwner owner;
}

std::size_t small_class(std::size_t bytes) {
  return bytes ? (bytes - 1) / small_grain : 0;
}

/// The block at the head of its class's list, or null (then allocate_small).
void* take_small(std::size_t bytes) {
  const std::size_t cls = small_class(bytes);
  void* p = small_cache.head[cls];
  if (p) {
    small_cache.head[cls] = *static_cast<void**>(p);
    small_cache.room += (cls + 1) * small_grain;
  }
  return p;
}

/// Puts a block at the head of its class's list; false when the lists are full or not kept (then
/// free_small).
bool give_small(void* p, std::size_t bytes) {
  const std::size_t cls = small_class(bytes), size = (cls + 1) * small_grain;
  if (size > small_cache.room) return false;
  *static_cast<void**>(p) = small_cache.head[cls];
  small_cache.head[cls] = p;
  small_cache.room -= size;
  return true;
}

/// A small block from the system: of its class's size, or of the exact size in sanitizer builds
/// (for their bounds).
[[gnu::noinline]] void* allocate_small(std::size_t bytes) {
  const std::size_t size = cache_small ? (small_class(bytes) + 1) * small_grain : bytes ? bytes : 1;
  void* p = std::malloc(size);
  if (!p) throw std::bad_alloc();
  return p;
}

/// A small block that give_small did not keep: kept after all once the thread owns its lists,
/// else back to the system.
[[gnu::noinline]] void free_small(void* p, std::size_t bytes) noexcept {
  if (cache_small && !caches_gone && !small_cache.owned) {
    own_small_cache();
    if (give_small(p, bytes)) return;
  }
  std::free(p);
}

[[gnu::noinline]] void* allocate_large(std::size_t bytes) {
  if (!caches_gone) {
    Cache& c = cache();
    auto it = c.free.find(bytes);
    if (it != c.free.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      c.bytes -= bytes;
      return p;
    }
  }
  void* p = std::malloc(bytes);
  if (!p) throw OutOfMemory(bytes);
  return p;
}

[[gnu::noinline]] void free_large(void* p, std::size_t bytes) noexcept {
  // A block that would overfill the cache goes back to the system, and the cache keeps what it
  // has: emptying it instead made a step that frees more than the capacity fault all of its
  // memory in again at the next step.
  if (!caches_gone) {
    Cache& c = cache();
    if (c.bytes + bytes <= cache_capacity) {
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

// Bytes of arrays allocated and freed on this thread (see MemoryStats).
thread_local long long in_use = 0, peak = 0;

}  // namespace

namespace detail {

namespace {

// Arenas: registered address ranges with a count of the arrays placed in each. free_block first
// compares against the span of all arenas (two relaxed loads), so that ordinary frees cost
// nothing more; only a block inside that span takes the lock.
struct ArenaRecord {
  char* begin;
  char* end;
  std::size_t views = 0;
  bool owner_alive = true;
};

std::mutex& arena_lock() {
  static std::mutex m;
  return m;
}
std::vector<ArenaRecord>& arenas() {
  static std::vector<ArenaRecord> a;
  return a;
}
std::atomic<std::uintptr_t> arena_lo{UINTPTR_MAX}, arena_hi{0};

void update_span() {  // under the lock
  std::uintptr_t lo = UINTPTR_MAX, hi = 0;
  for (const auto& a : arenas()) {
    lo = std::min(lo, reinterpret_cast<std::uintptr_t>(a.begin));
    hi = std::max(hi, reinterpret_cast<std::uintptr_t>(a.end));
  }
  arena_lo = lo;
  arena_hi = hi;
}

/// Whether `p` lies within the span of all arenas (two relaxed loads).
bool in_arena_span(void* p) {
  const auto at = reinterpret_cast<std::uintptr_t>(p);
  return at >= arena_lo.load(std::memory_order_relaxed) &&
         at < arena_hi.load(std::memory_order_relaxed);
}

/// Frees `p` if it lies in an arena (dropping a view, and the arena when it was the last); returns
/// whether it did lie in one.
[[gnu::noinline]] bool release_if_placed(void* p) {
  std::lock_guard<std::mutex> lock(arena_lock());
  auto& all = arenas();
  for (std::size_t i = 0; i < all.size(); ++i) {
    ArenaRecord& a = all[i];
    if (static_cast<char*>(p) < a.begin || static_cast<char*>(p) >= a.end) continue;
    if (--a.views == 0 && !a.owner_alive) {
      std::free(a.begin);
      all.erase(all.begin() + static_cast<std::ptrdiff_t>(i));
      update_span();
    }
    return true;
  }
  return false;
}

thread_local void* placement_at = nullptr;
thread_local std::size_t placement_bytes = 0;

/// The block that a Placement names, a view of its arena.
[[gnu::noinline]] void* take_placement() {
  void* p = placement_at;
  placement_at = nullptr;
  std::lock_guard<std::mutex> lock(arena_lock());
  for (auto& a : arenas())
    if (static_cast<char*>(p) >= a.begin && static_cast<char*>(p) < a.end) ++a.views;
  return p;
}

/// allocate_record's ways other than the head of a small list.
[[gnu::noinline]] void* allocate_other(std::size_t bytes) {
  return bytes >= cached_block_min ? allocate_large(bytes) : allocate_small(bytes);
}

/// free_record's ways other than the head of a small list.
[[gnu::noinline]] void free_other(void* p, std::size_t bytes) noexcept {
  if (bytes >= cached_block_min)
    free_large(p, bytes);
  else
    free_small(p, bytes);
}

}  // namespace

void* allocate_block(std::size_t bytes) {
  if (placement_at && bytes == placement_bytes) return take_placement();
  void* p = allocate_record(bytes);
  in_use += static_cast<long long>(bytes);
  peak = std::max(peak, in_use);
  return p;
}

void free_block(void* p, std::size_t bytes) noexcept {
  if (!p || (in_arena_span(p) && release_if_placed(p))) return;
  in_use -= static_cast<long long>(bytes);
  free_record(p, bytes);
}

// A small block's usual way, the head of its list, costs no call: the other ways are kept out of
// line, so that they do not weigh on it.
void* allocate_record(std::size_t bytes) {
  if (bytes < cached_block_min)
    if (void* p = take_small(bytes)) return p;
  return allocate_other(bytes);
}

void free_record(void* p, std::size_t bytes) noexcept {
  if (bytes >= cached_block_min || !give_small(p, bytes)) free_other(p, bytes);
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

Arena::Arena(std::size_t bytes) : data_(nullptr), bytes_(bytes) {
  data_ =
      static_cast<char*>(std::aligned_alloc(64, (std::max<std::size_t>(bytes, 1) + 63) / 64 * 64));
  if (!data_) throw std::bad_alloc();
  std::lock_guard<std::mutex> lock(detail::arena_lock());
  detail::arenas().push_back({data_, data_ + std::max<std::size_t>(bytes, 1)});
  detail::update_span();
}

Arena::~Arena() {
  std::lock_guard<std::mutex> lock(detail::arena_lock());
  auto& all = detail::arenas();
  for (std::size_t i = 0; i < all.size(); ++i) {
    if (all[i].begin != data_) continue;
    all[i].owner_alive = false;
    if (all[i].views == 0) {
      std::free(data_);
      all.erase(all.begin() + static_cast<std::ptrdiff_t>(i));
      detail::update_span();
    }
    return;
  }
}

Placement::Placement(void* at, std::size_t bytes) {
  detail::placement_at = at;
  detail::placement_bytes = bytes;
}

Placement::~Placement() {
  detail::placement_at = nullptr;
}

MemoryStats memory_stats() {
  return {static_cast<std::size_t>(std::max(in_use, 0LL)),
          static_cast<std::size_t>(std::max(peak, 0LL))};
}

void reset_peak_memory() {
  peak = std::max(in_use, 0LL);
}

void release_cached_memory() {
  for (auto release : detail::releases()) release();
  if (caches_gone) return;
  cache().clear();
  small_cache.clear();
}

}  // namespace ad::memory
