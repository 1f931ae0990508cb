// Second-order helpers built on grad() with create_graph.
#pragma once

#include "autodiff/ops.hpp"

namespace ad {

/// Hessian-vector product H·v of a scalar function f at x, by two reverse passes (no Hessian is
/// formed). f maps a Variable<T> to a one-element Variable<T>.
template <class F, class T>
Array<T> hvp(F&& f, const Array<T>& x, const Array<T>& v) {
  if (v.shape() != x.shape())
    fail("hvp: direction ", shape_str(v.shape()), " does not match x ", shape_str(x.shape()));
  Variable<T> xv(x, true);
  Variable<T> y = f(xv);
  Variable<T> g = grad(y, {xv}, BackwardOptions{true, true})[0];
  return grad(g, {xv}, Variable<T>(v))[0].value();
}

/// The Hessian of a scalar function f at x, as an (n, n) array with n = x.size() (x is read
/// flat). One reverse pass per row: meant for small inputs.
template <class F, class T>
Array<T> hessian(F&& f, const Array<T>& x) {
  Variable<T> xv(x, true);
  Variable<T> y = f(xv);
  if (y.size() != 1)
    fail("hessian: f must return one element, it returned shape ", shape_str(y.shape()));
  Variable<T> g = grad(y, {xv}, BackwardOptions{true, true})[0];
  const std::size_t n = x.size();
  Array<T> h = xt::zeros<T>({n, n});
  for (std::size_t i = 0; i < n; ++i) {
    Array<T> e = xt::zeros<T>(x.shape());
    e.data()[i] = 1;
    Array<T> row =
        grad(g, {xv}, Variable<T>(std::move(e)), BackwardOptions{true, false})[0].value();
    std::copy(row.begin(), row.end(), h.data() + i * n);
  }
  return h;
}

}  // namespace ad
