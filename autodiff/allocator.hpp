// The allocator of the library's arrays and of the tape's records: per-thread caches of freed
// blocks. Training allocates the same arrays (batches, activations, gradients) and records the
// same ops at every step. For large blocks, handing them back to the system and faulting fresh
// pages in each time cost the CNN about a tenth of its step (a fresh 10 MB block needs 2,500
// page faults); for small ones, glibc keeps only 7 freed blocks of a size per thread, so most of
// a small model's few dozen arrays and records per step went through its slower paths.
#pragma once

#include <cstddef>
#include <new>

// A namespace of its own: argument-dependent lookup from xtensor's internals then never reaches
// namespace ad's functions (ad::sum would otherwise compete with xtensor's sum inside xt::mean).
namespace ad::memory {

/// The std::bad_alloc of a block the system would not give: what() says its size, so that a
/// program can say which of its options asked for too much.
class OutOfMemory : public std::bad_alloc {
 public:
  /// A failure to allocate `bytes`.
  explicit OutOfMemory(std::size_t bytes);
  /// "out of memory: an array of N bytes (X GB) was asked for".
  const char* what() const noexcept override { return message_; }
  /// The size asked for.
  std::size_t bytes() const { return bytes_; }

 private:
  std::size_t bytes_;
  char message_[96];
};

namespace detail {
/// A block of at least `bytes`, from the cache when one of that size is there.
void* allocate_block(std::size_t bytes);
/// Returns a block (of the size it was asked with) to the cache, or to the system.
void free_block(void* p, std::size_t bytes) noexcept;
/// A block of at least `bytes` from the calling thread's caches, not counted in memory_stats():
/// what the tape's own records (Variables and nodes) take; allocate_block is this and the count.
void* allocate_record(std::size_t bytes);
/// Returns a block from allocate_record (of the size it was asked with).
void free_record(void* p, std::size_t bytes) noexcept;
/// Registers a function that frees another per-thread cache (the kernels' scratch memory) when
/// release_cached_memory() is called.
void on_release(void (*release)());
}  // namespace detail

/// Blocks of at least this size are cached by exact size; smaller ones by size class (multiples
/// of 64 bytes), at most small_cache_capacity bytes of them per thread. Builds with a sanitizer
/// cache no small blocks, so that it sees every small block's use after free.
inline constexpr std::size_t cached_block_min = 16 * 1024;
/// At most this much memory is kept in a thread's cache of small blocks.
inline constexpr std::size_t small_cache_capacity = 4u * 1024 * 1024;
/// At most this much memory is kept in a thread's cache.
inline constexpr std::size_t cache_capacity = 256u * 1024 * 1024;

/// The standard allocator interface over the block cache.
template <class T>
struct Allocator {
  using value_type = T;
  Allocator() = default;
  template <class U>
  Allocator(const Allocator<U>&) noexcept {}
  T* allocate(std::size_t n) { return static_cast<T*>(detail::allocate_block(n * sizeof(T))); }
  void deallocate(T* p, std::size_t n) noexcept { detail::free_block(p, n * sizeof(T)); }
  template <class U>
  bool operator==(const Allocator<U>&) const noexcept {
    return true;
  }
  template <class U>
  bool operator!=(const Allocator<U>&) const noexcept {
    return false;
  }
};

/// The standard allocator interface over allocate_record: what the tape's shared records
/// (std::allocate_shared of a Variable's data) are allocated with.
template <class T>
struct RecordAllocator {
  using value_type = T;
  RecordAllocator() = default;
  template <class U>
  RecordAllocator(const RecordAllocator<U>&) noexcept {}
  T* allocate(std::size_t n) { return static_cast<T*>(detail::allocate_record(n * sizeof(T))); }
  void deallocate(T* p, std::size_t n) noexcept { detail::free_record(p, n * sizeof(T)); }
  template <class U>
  bool operator==(const RecordAllocator<U>&) const noexcept {
    return true;
  }
  template <class U>
  bool operator!=(const RecordAllocator<U>&) const noexcept {
    return false;
  }
};

/// A block that arrays can be placed in: flat buffers of parameters and gradients, where each
/// parameter's array is a view of its slice. An array allocated while a Placement is active takes
/// its memory from the arena; freeing it leaves the arena alone. The arena's memory is freed when
/// the Arena and every array placed in it are gone (arrays may outlive the Arena).
class Arena {
 public:
  /// An arena of `bytes` bytes (64-byte aligned).
  explicit Arena(std::size_t bytes);
  ~Arena();
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
  /// Its first byte.
  char* data() const { return data_; }
  /// Its size in bytes.
  std::size_t bytes() const { return bytes_; }

 private:
  char* data_;
  std::size_t bytes_;
};

/// While alive, the next allocation of exactly `bytes` on this thread returns `at` (inside an
/// Arena) instead of new memory: Array<T>::from_shape then makes a view.
class Placement {
 public:
  /// Places the next allocation of `bytes` bytes on this thread at `at`.
  Placement(void* at, std::size_t bytes);
  ~Placement();
  Placement(const Placement&) = delete;
  Placement& operator=(const Placement&) = delete;
};

/// Bytes held by the library's arrays (the cache not counted), as the calling thread sees them:
/// allocated on it and not yet freed on it. With one thread (ad::set_num_threads(1)) that is all
/// of them; the kernels' scratch buffers and parameter arenas are not arrays and not counted.
struct MemoryStats {
  std::size_t in_use = 0;  ///< now
  std::size_t peak = 0;    ///< the most since the thread started or reset_peak_memory()
};
MemoryStats memory_stats();
/// Starts a new peak from what is in use now.
void reset_peak_memory();

/// Frees every block the calling thread's caches hold: the allocator's caches of large and small
/// blocks and the kernels' scratch buffers.
void release_cached_memory();

}  // namespace ad::memory
