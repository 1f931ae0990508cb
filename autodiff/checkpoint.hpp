// Recomputation to trade time for memory: a part of the forward pass that keeps nothing for
// backward and runs again when backward reaches it (as torch.utils.checkpoint).
#pragma once

#include <functional>
#include <tuple>
#include <utility>
#include <vector>

#include "autodiff/variable.hpp"

namespace ad {

/// The part of the forward pass that checkpoint() runs twice.
template <class T>
using CheckpointFn = std::function<Variable<T>(const std::vector<Variable<T>>&)>;

namespace detail {
template <class X>
struct identity {
  using type = X;
};
template <class F, class T, std::size_t... I>
Variable<T> call_with(const F& f, const std::vector<Variable<T>>& v, std::index_sequence<I...>) {
  return f(v[I]...);
}
}  // namespace detail

/// fn(inputs), recorded as one op that keeps only its inputs and its output: the intermediates of
/// fn are freed when it returns, and backward runs fn again to get them back. Parameters that fn
/// uses without taking them as inputs (a layer's weights) are found while it runs and get their
/// gradients as usual. Gradients of gradients (create_graph) work through it.
///
/// fn must compute the same output when run again: backward checks that it does and throws
/// otherwise (dropout draws new masks on the second run; keep it outside, or seed it). Without
/// grad mode, or when nothing requires grad, it is just fn(inputs). fn is kept until backward
/// has run: capture by value what goes out of scope before that.
template <class T>
Variable<T> checkpoint(const typename detail::identity<CheckpointFn<T>>::type& fn,
                       const std::vector<Variable<T>>& inputs);

/// checkpoint() for a function of one or more Variables: checkpoint(block, x) or
/// checkpoint([&](const auto& a, const auto& b) { ... }, a, b).
template <class F, class T, class... Rest>
Variable<T> checkpoint(F&& fn, const Variable<T>& first, const Rest&... rest) {
  CheckpointFn<T> whole = [f = std::forward<F>(fn)](const std::vector<Variable<T>>& v) {
    return detail::call_with(f, v, std::make_index_sequence<1 + sizeof...(Rest)>());
  };
  return checkpoint<T>(whole, std::vector<Variable<T>>{first, rest...});
}

}  // namespace ad
