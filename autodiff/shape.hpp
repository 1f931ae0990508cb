// Ops that move, pick or join elements: reshape, permute, slicing, indexing, concatenation,
// broadcasting.
#pragma once

#include <vector>

#include "autodiff/index.hpp"
#include "autodiff/variable.hpp"

namespace ad {

/// The same elements in a new shape of the same size.
template <class T>
Variable<T> reshape(const Variable<T>& a, const Shape& shape);
/// Merges axes start..end (inclusive; negative counts from the end) into one.
template <class T>
Variable<T> flatten(const Variable<T>& a, long start = 0, long end = -1);
/// Reorders the axes: output axis i is input axis axes[i].
template <class T>
Variable<T> permute(const Variable<T>& a, const std::vector<std::size_t>& axes);
/// Swaps two axes (the last two by default).
template <class T>
Variable<T> transpose(const Variable<T>& a, long axis0 = -2, long axis1 = -1);
/// Elements start, start+step, ... (< stop) along `axis`; stop is clipped to the axis' extent.
template <class T>
Variable<T> slice(const Variable<T>& a, long axis, std::size_t start, std::size_t stop,
                  std::size_t step = 1);
/// The entries at `index` along `axis`, without that axis (NumPy's a[:, index] for axis 1): one
/// step of a sequence, for instance.
template <class T>
Variable<T> select(const Variable<T>& a, long axis, std::size_t index);
/// Places `a` at start:stop:step along `axis` of a zero tensor of `shape` (slice's adjoint).
template <class T>
Variable<T> unslice(const Variable<T>& a, const Shape& shape, long axis, std::size_t start,
                    std::size_t step = 1);
/// The entries at `indices` along `axis` (rows of an embedding table, for instance).
template <class T>
Variable<T> index_select(const Variable<T>& a, long axis, const Index& indices);
/// Adds the slices of `a` along `axis` into a zero tensor of `shape` at `indices` (the adjoint of
/// index_select; repeated indices add up).
template <class T>
Variable<T> index_add(const Variable<T>& a, const Shape& shape, long axis, const Index& indices);
/// out[..., i, ...] = a[..., index[..., i, ...], ...] along `axis`; index has a's shape except
/// along `axis` (picking each row's label: gather(logp, 1, labels of shape (N, 1))).
template <class T>
Variable<T> gather(const Variable<T>& a, long axis, const Index& index);
/// Adds a into a zero tensor of `shape` at `index` along `axis` (the adjoint of gather).
template <class T>
Variable<T> scatter_add(const Variable<T>& a, const Shape& shape, long axis, const Index& index);
/// Joins tensors along an existing axis; the other extents must agree.
template <class T>
Variable<T> concatenate(const std::vector<Variable<T>>& parts, long axis = 0);
/// Joins tensors of one shape along a new axis.
template <class T>
Variable<T> stack(const std::vector<Variable<T>>& parts, long axis = 0);
/// Repeats a along broadcast axes up to `shape`.
template <class T>
Variable<T> broadcast_to(const Variable<T>& a, const Shape& shape);
/// Sums a down to `shape`, which broadcasts to a's shape (broadcast_to's adjoint).
template <class T>
Variable<T> sum_to(const Variable<T>& a, const Shape& shape);

/// The rows of `table` (count, dim) at the positions that `ids` holds, as whole numbers of any
/// shape: the result is (ids..., dim) (an embedding lookup: index_select along axis 0, with the
/// positions read from a Variable, so that a trace sees them as an input). An id that is not a
/// whole number in [0, count) throws, naming it. No gradient flows to ids.
template <class T>
Variable<T> embedding(const Variable<T>& table, const Variable<T>& ids);

/// A constant tensor of `shape` filled with `value` (an initial state, for instance). In a trace
/// it is a node, so its extents may follow the batch size.
template <class T>
Variable<T> full(const Shape& shape, T value);

}  // namespace ad
