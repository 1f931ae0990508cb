// swish(x) = x · sigmoid(x) as a custom op with a hand-written backward: the example of
// examples/gradcheck_custom.cpp, which the gradient checker's tests use too.
#pragma once

#include "autodiff/autodiff.hpp"

namespace examples {

/// swish(x) = x · sigmoid(x), as a user-defined op. The forward is plain xtensor; the backward
/// is written with Variable ops, so it is differentiable again (second order works). With
/// `mistake` the derivative drops the x·s·(1 − s) term.
template <class T>
ad::Variable<T> swish(const ad::Variable<T>& x, bool mistake = false) {
  ad::Array<T> s = 1.0 / (1.0 + xt::exp(-x.value()));
  ad::Array<T> y = x.value() * s;
  return ad::make_op<T>("swish", std::move(y), {x},
                        [mistake](const ad::BackwardContext<T>& c) -> ad::Grads<T> {
                          // d/dx = g·(s + x·s·(1 − s)), s = sigmoid(x)
                          const auto& x = c.input(0);
                          auto s = ad::sigmoid(x);
                          if (mistake) return {c.grad * s};
                          return {c.grad * (s + x * s * (1.0 - s))};
                        });
}

}  // namespace examples
