// The array type of the library, under every Variable and every kernel.
#pragma once

#include <xtensor/xarray.hpp>

#include "autodiff/allocator.hpp"
#include "autodiff/error.hpp"

namespace ad {

/// The array type of the library (under every Variable, and in every interface that takes an
/// array): dynamic rank, row-major, with the library's allocator (autodiff/allocator.hpp), not
/// xsimd's 64-byte aligned one, which goes through posix_memalign: that made glibc's malloc the
/// largest cost of a small op (xsimd then uses unaligned loads, at no measurable cost here). And
/// unlike xt::xarray<T>, whose allocator changes with the SIMD flags, this type is the same in
/// every translation unit. Any xtensor expression converts to it. `Array<T>(shape)` allocates
/// without initialising (as `Array<T>::from_shape`, which first copies the shape once more: the
/// kernels use the constructor).
template <class T>
using Array = xt::xarray<T, xt::layout_type::row_major, memory::Allocator<T>>;

}  // namespace ad
