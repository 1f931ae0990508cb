// Kernels that move, pick or join elements: permutations, slices, index selection, gather and
// scatter, concatenation. Indices are valid (the ops check them).
#pragma once

#include <vector>

#include "autodiff/array.hpp"
#include "autodiff/index.hpp"
#include "autodiff/kernels/elementwise.hpp"

namespace ad::kernels {

/// The axes of `a` reordered: output axis i is input axis axes[i].
template <class T>
Array<T> permute(const Array<T>& a, const std::vector<std::size_t>& axes);

/// `len` entries start, start + step, ... along `axis`.
template <class T>
Array<T> slice(const Array<T>& a, std::size_t axis, std::size_t start, std::size_t len,
               std::size_t step);

/// `a` placed at start:...:step along `axis` of zeros of `shape` (slice's adjoint).
template <class T>
Array<T> unslice(const Array<T>& a, const Shape& shape, std::size_t axis, std::size_t start,
                 std::size_t step);

/// dst[start:...:step along axis] += part (the in-place form of adding unslice's result).
template <class T>
void add_slice(Array<T>& dst, const Array<T>& part, std::size_t axis, std::size_t start,
               std::size_t step);

/// The entries at `indices` along `axis`.
template <class T>
Array<T> index_select(const Array<T>& a, std::size_t axis, const Index& indices);

/// The slices of `a` along `axis` added into zeros of `shape` at `indices` (index_select's
/// adjoint).
template <class T>
Array<T> index_add(const Array<T>& a, const Shape& shape, std::size_t axis, const Index& indices);

/// out[..., i, ...] = a[..., index[..., i, ...], ...] along `axis`; out has the index's shape.
template <class T>
Array<T> gather(const Array<T>& a, std::size_t axis, const Index& index);

/// a added into zeros of `shape` at `index` along `axis` (gather's adjoint).
template <class T>
Array<T> scatter_add(const Array<T>& a, const Shape& shape, std::size_t axis, const Index& index);

/// The parts joined along `axis` (their other extents agree).
template <class T>
Array<T> concatenate(const std::vector<const Array<T>*>& parts, std::size_t axis);

}  // namespace ad::kernels
