// Derivatives of whole functions built on grad(): vector-Jacobian and Jacobian-vector products,
// Jacobians, Hessians and Hessian-vector products.
#pragma once

#include <string>
#include <vector>

#include "autodiff/ops.hpp"

namespace ad {

/// A function's value and its vector-Jacobian product (one gradient per input).
template <class T>
struct VjpResult {
  Array<T> value;               ///< f's value
  std::vector<Array<T>> grads;  ///< cotangentᵀ·J for each input (of its shape)
};

/// A function's value and its Jacobian-vector product (the directional derivative).
template <class T>
struct JvpResult {
  Array<T> value;    ///< f's value
  Array<T> tangent;  ///< J·v (of the value's shape)
};

namespace detail {

template <class T>
std::vector<Variable<T>> leaves_of(const std::vector<Array<T>>& xs) {
  std::vector<Variable<T>> v;
  v.reserve(xs.size());
  for (const auto& x : xs) v.emplace_back(x, true);
  return v;
}

template <class T>
void check_like(const char* op, const char* what, const std::vector<Array<T>>& vs,
                const std::vector<Array<T>>& xs) {
  if (vs.size() != xs.size()) fail(op, ": ", vs.size(), " ", what, " for ", xs.size(), " inputs");
  for (std::size_t i = 0; i < xs.size(); ++i)
    if (vs[i].shape() != xs[i].shape())
      fail(op, ": ", what, " ", i, " has shape ", shape_str(vs[i].shape()), ", input ", i,
           " has shape ", shape_str(xs[i].shape()));
}

/// J·v by reverse mode twice: g(u) = Jᵀu is recorded as a function of a cotangent u (it is linear
/// in u), and the gradient of ⟨g(u), v⟩ with respect to u is J·v, exactly.
template <class T>
Array<T> jvp_of(const Variable<T>& y, const std::vector<Variable<T>>& xs,
                const std::vector<Array<T>>& tangents) {
  if (!y.requires_grad()) return xt::zeros<T>(y.shape());
  Variable<T> u(Array<T>(xt::zeros<T>(y.shape())), true);
  std::vector<Variable<T>> g = grad(y, xs, u, BackwardOptions{true, true});
  Variable<T> s;
  for (std::size_t i = 0; i < xs.size(); ++i) {
    if (!g[i].requires_grad()) continue;  // y does not depend on input i
    Variable<T> term = sum(g[i] * Variable<T>(tangents[i]));
    s = s.defined() ? s + term : term;
  }
  if (!s.defined()) return xt::zeros<T>(y.shape());
  return grad(s, {u})[0].value();
}

/// Fills `jac` (read as y.size() × x.size()) with the rows ∂y_i/∂x, one reverse pass each, the
/// graph kept between them.
template <class T>
void reverse_rows(const Variable<T>& y, const Variable<T>& x, Array<T>& jac) {
  const std::size_t n = x.size();
  for (std::size_t i = 0; i < y.size(); ++i) {
    Array<T> e = xt::zeros<T>(y.shape());
    e.data()[i] = 1;
    Array<T> row = grad(y, {x}, Variable<T>(std::move(e)), BackwardOptions{true, false})[0].value();
    std::copy(row.begin(), row.end(), jac.data() + i * n);
  }
}

}  // namespace detail

/// The value of f at `inputs` and the vector-Jacobian product cotangentᵀ·J (for each input), by
/// one reverse pass. f maps a std::vector<Variable<T>> to a Variable<T>; `cotangent` has the
/// shape of f's value.
template <class F, class T>
VjpResult<T> vjp(F&& f, const std::vector<Array<T>>& inputs, const Array<T>& cotangent) {
  std::vector<Variable<T>> xs = detail::leaves_of(inputs);
  Variable<T> y = f(xs);
  if (cotangent.shape() != y.shape())
    fail("vjp: the cotangent has shape ", shape_str(cotangent.shape()), ", f's value has shape ",
         shape_str(y.shape()));
  VjpResult<T> r{y.value(), {}};
  for (auto& g : grad(y, xs, Variable<T>(cotangent))) r.grads.push_back(g.value());
  return r;
}

/// vjp() of a function of one Variable.
template <class F, class T>
VjpResult<T> vjp(F&& f, const Array<T>& x, const Array<T>& cotangent) {
  return vjp([&f](const std::vector<Variable<T>>& v) { return f(v[0]); }, std::vector<Array<T>>{x},
             cotangent);
}

/// The value of f at `inputs` and the Jacobian-vector product J·tangents (Σ_i J_i·v_i: the
/// directional derivative along the tangents), exact. It runs reverse mode twice rather than
/// forward mode: the gradient Jᵀu is recorded as a function of a cotangent u, and J·v is the
/// gradient of ⟨Jᵀu, v⟩ with respect to u. So every op, and every custom op whose backward honours
/// create_graph, has it without a second set of rules; it costs about three forward passes.
template <class F, class T>
JvpResult<T> jvp(F&& f, const std::vector<Array<T>>& inputs,
                 const std::vector<Array<T>>& tangents) {
  detail::check_like("jvp", "tangent", tangents, inputs);
  std::vector<Variable<T>> xs = detail::leaves_of(inputs);
  Variable<T> y = f(xs);
  return {y.value(), detail::jvp_of(y, xs, tangents)};
}

/// jvp() of a function of one Variable.
template <class F, class T>
JvpResult<T> jvp(F&& f, const Array<T>& x, const Array<T>& tangent) {
  return jvp([&f](const std::vector<Variable<T>>& v) { return f(v[0]); }, std::vector<Array<T>>{x},
             std::vector<Array<T>>{tangent});
}

/// How jacobian() builds the matrix.
enum class JacobianMode {
  automatic,  ///< forward when x has fewer elements than f's value, else reverse
  reverse,    ///< one reverse pass per element of f's value (a row)
  forward,    ///< one Jacobian-vector product per element of x (a column)
};

/// The Jacobian of f at x, of shape f(x).shape() + x.shape() (entry [i..., j...] = ∂y_i/∂x_j).
/// Rows by reverse mode or columns by forward mode (see jvp), whichever needs fewer passes.
template <class F, class T>
Array<T> jacobian(F&& f, const Array<T>& x, JacobianMode mode = JacobianMode::automatic) {
  Variable<T> xv(x, true);
  Variable<T> y = f(xv);
  const std::size_t m = y.size(), n = x.size();
  Shape shape(y.shape().begin(), y.shape().end());
  shape.insert(shape.end(), x.shape().begin(), x.shape().end());
  Array<T> jac = xt::zeros<T>(shape);
  if (!y.requires_grad() || m == 0 || n == 0) return jac;
  if (mode == JacobianMode::automatic) mode = n < m ? JacobianMode::forward : JacobianMode::reverse;
  if (mode == JacobianMode::reverse) {
    detail::reverse_rows(y, xv, jac);
    return jac;
  }
  // Columns: g(u) = Jᵀu recorded once, then column j = the gradient of g_j with respect to u.
  Variable<T> u(Array<T>(xt::zeros<T>(y.shape())), true);
  Variable<T> g = grad(y, {xv}, u, BackwardOptions{true, true})[0];
  if (!g.requires_grad()) return jac;
  for (std::size_t j = 0; j < n; ++j) {
    Array<T> e = xt::zeros<T>(x.shape());
    e.data()[j] = 1;
    Array<T> col = grad(g, {u}, Variable<T>(std::move(e)), BackwardOptions{true, false})[0].value();
    for (std::size_t i = 0; i < m; ++i) jac.data()[i * n + j] = col.data()[i];
  }
  return jac;
}

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

/// The Hessian of a scalar function f at x, of shape x.shape() + x.shape() (an (n, n) matrix for
/// a vector x). One reverse pass over the recorded gradient per element of x: meant for small
/// inputs.
template <class F, class T>
Array<T> hessian(F&& f, const Array<T>& x) {
  Variable<T> xv(x, true);
  Variable<T> y = f(xv);
  if (y.size() != 1)
    fail("hessian: f must return one element, it returned shape ", shape_str(y.shape()));
  Shape shape(x.shape().begin(), x.shape().end());
  shape.insert(shape.end(), x.shape().begin(), x.shape().end());
  Array<T> h = xt::zeros<T>(shape);
  if (!y.requires_grad()) return h;
  detail::reverse_rows(grad(y, {xv}, BackwardOptions{true, true})[0], xv, h);
  return h;
}

}  // namespace ad
