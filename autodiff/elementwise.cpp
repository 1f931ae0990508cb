// Elementwise math and activations. Each op is given by its function and its derivative, written
// once: the derivative is a generic lambda of (g, x, y), with y = f(x), that computes g·f'(x)
// both on numbers (the fused first-order rule: one pass over the arrays) and on Variables (the
// recorded rule under create_graph, differentiable again).
#include "autodiff/elementwise.hpp"

#include <cmath>

#include "autodiff/kernels/elementwise.hpp"
#include "autodiff/ops.hpp"

namespace ad {

namespace {

/// The op whose forward value is `value`, with the backward rule g·f'(x) given by `df(g, x, y)`.
template <class T, class DF>
Variable<T> unary(const char* name, Array<T>&& value, const Variable<T>& a, DF df) {
  return make_op<T>(name, std::move(value), {a}, [df](const BackwardContext<T>& c) -> Grads<T> {
    if (c.create_graph) return {df(c.grad, c.input(0), c.output)};
    // One pass over (g, x, y), in place into g when nothing else holds it.
    auto scalar = [&df](T g, T x, T y) { return df(g, x, y); };
    if (c.grad_exclusive) {
      Variable<T> g = c.grad;
      kernels::map_into(g.mutable_value(), scalar, c.input(0).value(), c.output.value());
      return {g};
    }
    return {
        Variable<T>(kernels::map(scalar, c.grad.value(), c.input(0).value(), c.output.value()))};
  });
}

// Derivatives that are piecewise constant, as numbers and as constant Variables (their own
// derivative is 0, so they need no graph).

/// [x > 0], and g passes where x is NaN (as in PyTorch's relu).
template <class T>
T positive(T x) {
  return T(!(x <= 0));
}
template <class T>
Variable<T> positive(const Variable<T>& x) {
  return Variable<T>(kernels::unary(x.value(), [](T v) { return positive(v); }));
}

/// sign(x): -1, 0 or 1.
template <class T>
T sign(T x) {
  return T((x > 0) - (x < 0));
}
template <class T>
Variable<T> sign(const Variable<T>& x) {
  return Variable<T>(kernels::unary(x.value(), [](T v) { return sign(v); }));
}

/// 1 where x > 0, else `slope`.
template <class T>
T slope_of(T x, T slope) {
  return x > 0 ? T(1) : slope;
}
template <class T>
Variable<T> slope_of(const Variable<T>& x, T slope) {
  return Variable<T>(kernels::unary(x.value(), [slope](T v) { return slope_of(v, slope); }));
}

/// [lo <= x <= hi].
template <class T>
T inside(T x, T lo, T hi) {
  return T(x >= lo && x <= hi);
}
template <class T>
Variable<T> inside(const Variable<T>& x, T lo, T hi) {
  return Variable<T>(kernels::unary(x.value(), [lo, hi](T v) { return inside(v, lo, hi); }));
}

/// a where x > 0, else b (NaN x: b).
template <class T>
T if_positive(T x, T a, T b) {
  return x > 0 ? a : b;
}
template <class T>
Variable<T> if_positive(const Variable<T>& x, const Variable<T>& a, const Variable<T>& b) {
  Mask m = Mask::from_shape(x.shape());
  const T* px = x.value().data();
  for (std::size_t i = 0; i < m.size(); ++i) m.data()[i] = px[i] > 0;
  return ad::where(m, a, b);
}

/// 1/(1+e^-x) for x >= 0 and e^x/(1+e^x) otherwise: no overflow either way.
template <class T>
T logistic(T x) {
  if (x >= 0) return T(1) / (T(1) + std::exp(-x));
  T e = std::exp(x);
  return e / (T(1) + e);
}
template <class T>
Variable<T> logistic(const Variable<T>& x) {
  return sigmoid(x);
}

}  // namespace

template <class T>
Variable<T> exp(const Variable<T>& a) {
  return unary("exp", kernels::simd_map(a.value(), [](auto x) { return xsimd::exp(x); }), a,
               // d/da = g*exp(a) = g*y
               [](const auto& g, const auto&, const auto& y) { return g * y; });
}

template <class T>
Variable<T> log(const Variable<T>& a) {
  return unary("log", kernels::simd_map(a.value(), [](auto x) { return xsimd::log(x); }), a,
               // d/da = g/a
               [](const auto& g, const auto& x, const auto&) { return g / x; });
}

template <class T>
Variable<T> sqrt(const Variable<T>& a) {
  return unary("sqrt", kernels::simd_map(a.value(), [](auto x) { return xsimd::sqrt(x); }), a,
               // d/da = g/(2*sqrt(a)) = g/(2*y)
               [](const auto& g, const auto&, const auto& y) { return g / (y * 2); });
}

template <class T>
Variable<T> abs(const Variable<T>& a) {
  return unary("abs", kernels::unary(a.value(), [](T x) { return std::abs(x); }), a,
               // d/da = g*sign(a)
               [](const auto& g, const auto& x, const auto&) { return g * sign(x); });
}

template <class T>
Variable<T> tanh(const Variable<T>& a) {
  return unary("tanh", kernels::simd_map(a.value(), [](auto x) { return xsimd::tanh(x); }), a,
               // d/da = g*(1 - tanh(a)²) = g*(1 - y²)
               [](const auto& g, const auto&, const auto& y) { return g * (1 - y * y); });
}

template <class T>
Variable<T> sigmoid(const Variable<T>& a) {
  return unary("sigmoid", kernels::unary(a.value(), [](T x) { return logistic(x); }), a,
               // d/da = g*s*(1 - s), s = y
               [](const auto& g, const auto&, const auto& y) { return g * y * (1 - y); });
}

template <class T>
Variable<T> relu(const Variable<T>& a) {
  // Written with x <= 0 rather than x > 0, so that NaN goes through (as in IEEE max and PyTorch).
  return unary("relu", kernels::unary(a.value(), [](T x) { return x <= 0 ? T(0) : x; }), a,
               // d/da = g*[a > 0] (g passes where a is NaN, as in PyTorch)
               [](const auto& g, const auto& x, const auto&) { return g * positive(x); });
}

template <class T>
Variable<T> leaky_relu(const Variable<T>& a, double slope) {
  const T s = static_cast<T>(slope);
  return unary("leaky_relu", kernels::unary(a.value(), [s](T x) { return x > 0 ? x : s * x; }), a,
               // d/da = g*(a > 0 ? 1 : slope)
               [s](const auto& g, const auto& x, const auto&) { return g * slope_of(x, s); });
}

template <class T>
Variable<T> softplus(const Variable<T>& a) {
  // log(1 + e^x) = max(x, 0) + log1p(e^-|x|)
  auto f = [](T x) { return std::max(x, T(0)) + std::log1p(std::exp(-std::abs(x))); };
  return unary("softplus", kernels::unary(a.value(), f), a,
               // d/da = g*sigmoid(a)
               [](const auto& g, const auto& x, const auto&) { return g * logistic(x); });
}

template <class T>
Variable<T> clamp(const Variable<T>& a, double lo, double hi) {
  if (!(lo <= hi)) fail("clamp: lower bound ", lo, " is above upper bound ", hi);
  const T l = static_cast<T>(lo), h = static_cast<T>(hi);
  return unary("clamp",
               kernels::unary(a.value(), [l, h](T x) { return x < l ? l : (x > h ? h : x); }), a,
               // d/da = g*[lo <= a <= hi]
               [l, h](const auto& g, const auto& x, const auto&) { return g * inside(x, l, h); });
}

template <class T>
Variable<T> erf(const Variable<T>& a) {
  const T k = static_cast<T>(1.1283791670955126);  // 2/√π
  return unary("erf", kernels::unary(a.value(), [](T x) { return std::erf(x); }), a,
               // d/da = g*2/√π*exp(-a²)
               [k](const auto& g, const auto& x, const auto&) {
                 using std::exp;
                 return g * exp(-(x * x)) * k;
               });
}

template <class T>
Variable<T> square(const Variable<T>& a) {
  return mul(a, a);
}

template <class T>
Variable<T> sin(const Variable<T>& a) {
  return unary("sin", kernels::simd_map(a.value(), [](auto x) { return xsimd::sin(x); }), a,
               // d/da = g*cos(a)
               [](const auto& g, const auto& x, const auto&) {
                 using std::cos;
                 return g * cos(x);
               });
}

template <class T>
Variable<T> cos(const Variable<T>& a) {
  return unary("cos", kernels::simd_map(a.value(), [](auto x) { return xsimd::cos(x); }), a,
               // d/da = -g*sin(a)
               [](const auto& g, const auto& x, const auto&) {
                 using std::sin;
                 return -(g * sin(x));
               });
}

template <class T>
Variable<T> elu(const Variable<T>& a, double alpha) {
  const T al = static_cast<T>(alpha);
  return unary("elu",
               kernels::unary(a.value(), [al](T x) { return x > 0 ? x : al * std::expm1(x); }), a,
               // d/da = g for a > 0, g*alpha*e^a = g*(y + alpha) otherwise
               [al](const auto& g, const auto& x, const auto& y) {
                 return if_positive(x, g, g * (y + al));
               });
}

template <class T>
Variable<T> hardtanh(const Variable<T>& a, double lo, double hi) {
  return clamp(a, lo, hi);
}

template <class T>
Variable<T> silu(const Variable<T>& a) {
  return a * sigmoid(a);
}

template <class T>
Variable<T> mish(const Variable<T>& a) {
  return a * tanh(softplus(a));
}

template <class T>
Variable<T> logsigmoid(const Variable<T>& a) {
  return -softplus(-a);
}

template <class T>
std::vector<const void*> elementwise_ops() {
  return detail::addresses(&exp<T>, &log<T>, &sqrt<T>, &abs<T>, &tanh<T>, &sigmoid<T>, &relu<T>,
                           &leaky_relu<T>, &softplus<T>, &clamp<T>, &erf<T>, &square<T>, &sin<T>,
                           &cos<T>, &elu<T>, &hardtanh<T>, &silu<T>, &mish<T>, &logsigmoid<T>);
}
template std::vector<const void*> elementwise_ops<float>();
template std::vector<const void*> elementwise_ops<double>();

}  // namespace ad
