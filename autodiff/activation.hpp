// The activations that ad::linear can apply to its output inside its own op, defined once for
// that op and for the standalone ops (relu, tanh, sigmoid in elementwise.cpp): each one's value
// (on numbers or SIMD batches) and its derivative written from the output y = f(x), as
// df(g, y) = g·f'(x), on numbers (the fused first-order rules) and on Variables (recorded, for
// create_graph). The fused op's values and gradients are the standalone op's, to the bit; the
// rules run through elementwise_rule, as every elementwise op's do.
#pragma once

#include <xsimd/xsimd.hpp>

#include "autodiff/kernels/elementwise.hpp"
#include "autodiff/ops.hpp"

namespace ad::detail {

/// df(g, operands...), the gradient that an elementwise rule passes back: recorded under
/// create_graph (on Variables, differentiable again); otherwise one pass over the numbers, into g
/// itself when nothing else holds it. The elementwise ops and linear's activations use it.
template <class T, class DF, class... V>
Variable<T> elementwise_rule(const BackwardContext<T>& c, DF df, const V&... operands) {
  if (c.create_graph) return df(c.grad, operands...);
  auto scalar = [&df](T g, auto... v) { return df(g, v...); };
  if (c.grad_exclusive) {
    Variable<T> g = c.grad;
    kernels::map_into(g.mutable_value(), scalar, operands.value()...);
    return g;
  }
  return Variable<T>(kernels::map(scalar, c.grad.value(), operands.value()...));
}

/// max(x, 0), written with x <= 0 so that NaN goes through (as in IEEE max and PyTorch).
template <class T>
T relu_of(T x) {
  return x <= 0 ? T(0) : x;
}

using kernels::logistic_of;

/// [y > 0] for y = relu(x): [x > 0], and 1 where x (so y) is NaN, so that g passes there (as in
/// PyTorch).
template <class T>
T relu_slope(T y) {
  return T(!(y <= 0));
}
template <class T>
Variable<T> relu_slope(const Variable<T>& y) {
  return Variable<T>(kernels::unary(y.value(), [](T v) { return relu_slope(v); }));
}

/// The activations, each once: `value` on numbers (and on SIMD batches where `simd`), and the
/// rule operator()(g, y) = g·f'(x) from g and y = f(x).
struct Relu {
  static constexpr bool simd = false;
  template <class X>
  static X value(X x) {
    return relu_of(x);
  }
  template <class G, class Y>
  auto operator()(const G& g, const Y& y) const {
    return g * relu_slope(y);
  }
};
struct Tanh {
  static constexpr bool simd = true;
  template <class X>
  static X value(const X& x) {
    return xsimd::tanh(x);
  }
  template <class G, class Y>
  auto operator()(const G& g, const Y& y) const {  // 1 - tanh(x)² = 1 - y²
    return g * (1 - y * y);
  }
};
struct Sigmoid {
  static constexpr bool simd = true;
  template <class X>
  static X value(const X& x) {
    return logistic_of(x);
  }
  template <class G, class Y>
  auto operator()(const G& g, const Y& y) const {  // s(x)·(1 - s(x)) = y·(1 - y)
    return g * y * (1 - y);
  }
};

/// The activation's values of x: the standalone op's forward.
template <class Act, class T>
Array<T> activation_values(const Array<T>& x) {
  if constexpr (Act::simd)
    return kernels::simd_map(x, [](auto v) { return Act::value(v); });
  else
    return kernels::unary(x, [](T v) { return Act::value(v); });
}

/// The activation applied to y in place: ad::linear's fused activation, the same bits.
template <class Act, class T>
void activate_in_place(Array<T>& y) {
  if constexpr (Act::simd)
    kernels::simd_map_into(y, [](auto v) { return Act::value(v); });
  else
    kernels::map_into(y, [](T v) { return Act::value(v); });
}

}  // namespace ad::detail
