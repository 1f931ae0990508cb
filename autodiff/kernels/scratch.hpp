// The kernels' scratch memory: per-thread buffers that only grow, reused by every call, so that a
// training step allocates (and page-faults) no temporary matrices. release_cached_memory() (in
// autodiff/allocator.hpp) frees them with the allocator's cache.
#pragma once

#include <cstddef>

namespace ad::kernels {

/// A buffer of at least n elements of this thread; `slot` (0 or 1) tells apart two in use at once.
/// Valid until the next call with the same slot and type.
template <class T>
T* scratch(std::size_t n, int slot);

}  // namespace ad::kernels
