#include "autodiff/elementwise.hpp"

#include <cmath>

#include "autodiff/kernels.hpp"
#include "autodiff/ops.hpp"

namespace ad {

namespace {

/// A constant of a's shape with f applied to each element (a derivative that is piecewise
/// constant, such as relu's step, needs no graph of its own).
template <class T, class F>
Variable<T> constant_map(const Variable<T>& a, F f) {
  return Variable<T>(kernels::unary(a.value(), f));
}

/// A backward rule's result in one pass over (g, x), for backward without create_graph, where
/// the rule's Variable form would cost several ops. Rules keep both forms side by side: the fused
/// one for speed, the Variable one (recorded under create_graph) for higher order; the gradcheck
/// tests check the first at first order and the second at second order. The result overwrites g
/// when nothing else refers to it.
template <class T, class F>
Variable<T> fused(const BackwardContext<T>& c, const Variable<T>& x, F f) {
  if (c.grad_exclusive && c.grad.shape() == x.shape()) {
    Variable<T> g = c.grad;
    T* pg = g.mutable_value().data();
    const T* px = x.value().data();
    detail::parallel_for(g.size(), kernels::parallel_grain,
                         [&](std::size_t begin, std::size_t end) {
                           for (std::size_t i = begin; i < end; ++i) pg[i] = f(pg[i], px[i]);
                         });
    return g;
  }
  return Variable<T>(kernels::binary(c.grad.value(), x.value(), f, "backward"));
}

}  // namespace

template <class T>
Variable<T> exp(const Variable<T>& a) {
  return make_op<T>("exp", kernels::simd_map(a.value(), [](auto x) { return xsimd::exp(x); }), {a},
                    [](const BackwardContext<T>& c) -> Grads<T> {
                      // d/da = g*exp(a) = g*out
                      return {c.grad * c.output};
                    });
}

template <class T>
Variable<T> log(const Variable<T>& a) {
  return make_op<T>("log", kernels::simd_map(a.value(), [](auto x) { return xsimd::log(x); }), {a},
                    [](const BackwardContext<T>& c) -> Grads<T> {
                      // d/da = g/a
                      return {c.grad / c.input(0)};
                    });
}

template <class T>
Variable<T> sqrt(const Variable<T>& a) {
  return make_op<T>("sqrt", kernels::simd_map(a.value(), [](auto x) { return xsimd::sqrt(x); }),
                    {a}, [](const BackwardContext<T>& c) -> Grads<T> {
                      // d/da = g/(2*sqrt(a)) = g/(2*out)
                      if (!is_grad_enabled())
                        return {fused(c, c.output, [](T g, T y) { return g / (2 * y); })};
                      return {c.grad / (c.output * 2.0)};
                    });
}

template <class T>
Variable<T> abs(const Variable<T>& a) {
  return make_op<T>("abs", kernels::unary(a.value(), [](T x) { return std::abs(x); }), {a},
                    [](const BackwardContext<T>& c) -> Grads<T> {
                      // d/da = g*sign(a)
                      auto sign = [](T x) { return static_cast<T>((x > 0) - (x < 0)); };
                      if (!is_grad_enabled())
                        return {fused(c, c.input(0), [&](T g, T x) { return g * sign(x); })};
                      return {c.grad * constant_map(c.input(0), sign)};
                    });
}

template <class T>
Variable<T> tanh(const Variable<T>& a) {
  return make_op<T>("tanh", kernels::simd_map(a.value(), [](auto x) { return xsimd::tanh(x); }),
                    {a}, [](const BackwardContext<T>& c) -> Grads<T> {
                      // d/da = g*(1 - tanh(a)²) = g*(1 - out²)
                      if (!is_grad_enabled())
                        return {fused(c, c.output, [](T g, T y) { return g * (1 - y * y); })};
                      return {c.grad * (1.0 - square(c.output))};
                    });
}

namespace {

/// 1/(1+e^-x) for x >= 0 and e^x/(1+e^x) otherwise: no overflow either way.
template <class T>
T logistic(T x) {
  if (x >= 0) return T(1) / (T(1) + std::exp(-x));
  T e = std::exp(x);
  return e / (T(1) + e);
}

}  // namespace

template <class T>
Variable<T> sigmoid(const Variable<T>& a) {
  return make_op<T>("sigmoid", kernels::unary(a.value(), logistic<T>), {a},
                    [](const BackwardContext<T>& c) -> Grads<T> {
                      // d/da = g*s*(1 - s), s = out
                      if (!is_grad_enabled())
                        return {fused(c, c.output, [](T g, T s) { return g * s * (1 - s); })};
                      return {c.grad * c.output * (1.0 - c.output)};
                    });
}

template <class T>
Variable<T> relu(const Variable<T>& a) {
  // Written with x <= 0 rather than x > 0, so that NaN goes through (as in IEEE max and PyTorch).
  return make_op<T>("relu", kernels::unary(a.value(), [](T x) { return x <= 0 ? T(0) : x; }), {a},
                    [](const BackwardContext<T>& c) -> Grads<T> {
                      // d/da = g*[a > 0] (g passes where a is NaN, as in PyTorch)
                      if (!is_grad_enabled())
                        return {fused(c, c.input(0), [](T g, T x) { return x <= 0 ? T(0) : g; })};
                      return {c.grad * constant_map(c.input(0), [](T x) { return T(!(x <= 0)); })};
                    });
}

template <class T>
Variable<T> leaky_relu(const Variable<T>& a, double slope) {
  const T s = static_cast<T>(slope);
  return make_op<T>("leaky_relu", kernels::unary(a.value(), [s](T x) { return x > 0 ? x : s * x; }),
                    {a}, [s](const BackwardContext<T>& c) -> Grads<T> {
                      // d/da = g*(a > 0 ? 1 : slope)
                      auto step = [s](T x) { return x > 0 ? T(1) : s; };
                      if (!is_grad_enabled())
                        return {fused(c, c.input(0), [&](T g, T x) { return g * step(x); })};
                      return {c.grad * constant_map(c.input(0), step)};
                    });
}

template <class T>
Variable<T> softplus(const Variable<T>& a) {
  // log(1 + e^x) = max(x, 0) + log1p(e^-|x|)
  auto f = [](T x) { return std::max(x, T(0)) + std::log1p(std::exp(-std::abs(x))); };
  return make_op<T>("softplus", kernels::unary(a.value(), f), {a},
                    [](const BackwardContext<T>& c) -> Grads<T> {
                      // d/da = g*sigmoid(a)
                      if (!is_grad_enabled())
                        return {fused(c, c.input(0), [](T g, T x) { return g * logistic(x); })};
                      return {c.grad * sigmoid(c.input(0))};
                    });
}

template <class T>
Variable<T> clamp(const Variable<T>& a, double lo, double hi) {
  if (!(lo <= hi)) fail("clamp: lower bound ", lo, " is above upper bound ", hi);
  const T l = static_cast<T>(lo);
  const T h = static_cast<T>(hi);
  return make_op<T>("clamp",
                    kernels::unary(a.value(), [l, h](T x) { return x < l ? l : (x > h ? h : x); }),
                    {a}, [l, h](const BackwardContext<T>& c) -> Grads<T> {
                      // d/da = g*[lo <= a <= hi]
                      auto inside = [l, h](T x) { return T(x >= l && x <= h); };
                      if (!is_grad_enabled())
                        return {fused(c, c.input(0), [&](T g, T x) { return g * inside(x); })};
                      return {c.grad * constant_map(c.input(0), inside)};
                    });
}

template <class T>
Variable<T> erf(const Variable<T>& a) {
  return make_op<T>(
      "erf", kernels::unary(a.value(), [](T x) { return std::erf(x); }), {a},
      [](const BackwardContext<T>& c) -> Grads<T> {
        // d/da = g*2/√π*exp(-a²)
        const T k = static_cast<T>(1.1283791670955126);  // 2/√π
        if (!is_grad_enabled())
          return {fused(c, c.input(0), [k](T g, T x) { return g * k * std::exp(-x * x); })};
        return {c.grad * ad::exp(-square(c.input(0))) * double(k)};
      });
}

template <class T>
Variable<T> square(const Variable<T>& a) {
  return mul(a, a);
}

#define AD_INSTANTIATE(T)                                         \
  template Variable<T> exp(const Variable<T>&);                   \
  template Variable<T> log(const Variable<T>&);                   \
  template Variable<T> sqrt(const Variable<T>&);                  \
  template Variable<T> abs(const Variable<T>&);                   \
  template Variable<T> tanh(const Variable<T>&);                  \
  template Variable<T> sigmoid(const Variable<T>&);               \
  template Variable<T> relu(const Variable<T>&);                  \
  template Variable<T> leaky_relu(const Variable<T>&, double);    \
  template Variable<T> softplus(const Variable<T>&);              \
  template Variable<T> clamp(const Variable<T>&, double, double); \
  template Variable<T> erf(const Variable<T>&);                   \
  template Variable<T> square(const Variable<T>&);

AD_INSTANTIATE(float)
AD_INSTANTIATE(double)
#undef AD_INSTANTIATE

}  // namespace ad
