// Elementwise math and activations. Each op is given by its function and its derivative, written
// once: the derivative is a generic lambda of (g, x, y), with y = f(x), that computes g·f'(x)
// both on numbers (the fused first-order rule: one pass over the arrays) and on Variables (the
// recorded rule under create_graph, differentiable again).
#include "autodiff/elementwise.hpp"

#include <algorithm>
#include <array>
#include <cmath>

#include "autodiff/activation.hpp"
#include "autodiff/kernels/elementwise.hpp"
#include "autodiff/kernels/recurrent.hpp"
#include "autodiff/ops.hpp"
#include "autodiff/trace.hpp"

namespace ad {

namespace {

/// The op whose forward value `make()` returns, with the backward rule g·f'(x) given by
/// `df(g, x, y)`; `attributes` (name, value, ...) describe it to a trace.
template <class T, class Make, class DF, class... A>
Variable<T> unary(const char* name, Make&& make, const Variable<T>& a, DF df,
                  const A&... attributes) {
  return detail::traced<T>(
      name, {&a},
      [&] {
        return make_op_in_place<T>(name, make, {a}, [df](const BackwardContext<T>& c) -> Grads<T> {
          return {detail::elementwise_rule(c, df, c.input(0), c.output)};
        });
      },
      attributes...);
}

// Derivatives that are piecewise constant, as numbers and as constant Variables (their own
// derivative is 0, so they need no graph).

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

/// a's values clamped to [lo, hi] (NaN stays NaN): the forward of clamp and hardtanh.
template <class T>
Array<T> clamped(const Variable<T>& a, double lo, double hi, const char* op) {
  if (!(lo <= hi)) fail(op, ": lower bound ", lo, " is above upper bound ", hi);
  const T l = static_cast<T>(lo), h = static_cast<T>(hi);
  return kernels::unary(a.value(), [l, h](T x) { return x < l ? l : (x > h ? h : x); });
}

/// [lo < x < hi]: hardtanh's slope, 0 at its bounds (as PyTorch's; clamp's is 1 there).
template <class T>
T strictly_inside(T x, T lo, T hi) {
  return T(x > lo && x < hi);
}
template <class T>
Variable<T> strictly_inside(const Variable<T>& x, T lo, T hi) {
  return Variable<T>(
      kernels::unary(x.value(), [lo, hi](T v) { return strictly_inside(v, lo, hi); }));
}

/// a where x > 0, else b (NaN x: b).
template <class T>
T if_positive(T x, T a, T b) {
  return x > 0 ? a : b;
}
template <class T>
Variable<T> if_positive(const Variable<T>& x, const Variable<T>& a, const Variable<T>& b) {
  return ad::where(kernels::unary(x.value(), [](T v) { return v > 0; }), a, b);
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
  return unary(
      "exp", [&] { return kernels::simd_map(a.value(), [](auto x) { return xsimd::exp(x); }); }, a,
      // d/da = g*exp(a) = g*y
      [](const auto& g, const auto&, const auto& y) { return g * y; });
}

template <class T>
Variable<T> log(const Variable<T>& a) {
  return unary(
      "log", [&] { return kernels::simd_map(a.value(), [](auto x) { return xsimd::log(x); }); }, a,
      // d/da = g/a
      [](const auto& g, const auto& x, const auto&) { return g / x; });
}

template <class T>
Variable<T> sqrt(const Variable<T>& a) {
  return unary(
      "sqrt", [&] { return kernels::simd_map(a.value(), [](auto x) { return xsimd::sqrt(x); }); },
      a,
      // d/da = g/(2*sqrt(a)) = g/(2*y)
      [](const auto& g, const auto&, const auto& y) { return g / (y * 2); });
}

template <class T>
Variable<T> abs(const Variable<T>& a) {
  return unary(
      "abs", [&] { return kernels::unary(a.value(), [](T x) { return std::abs(x); }); }, a,
      // d/da = g*sign(a)
      [](const auto& g, const auto& x, const auto&) { return g * sign(x); });
}

// tanh, sigmoid and relu: their values and rules in activation.hpp, shared with ad::linear's
// fused activations.

template <class T>
Variable<T> tanh(const Variable<T>& a) {
  return unary(
      "tanh", [&] { return detail::activation_values<detail::Tanh>(a.value()); }, a,
      [](const auto& g, const auto&, const auto& y) { return detail::Tanh()(g, y); });
}

template <class T>
Variable<T> sigmoid(const Variable<T>& a) {
  return unary(
      "sigmoid", [&] { return detail::activation_values<detail::Sigmoid>(a.value()); }, a,
      [](const auto& g, const auto&, const auto& y) { return detail::Sigmoid()(g, y); });
}

template <class T>
Variable<T> relu(const Variable<T>& a) {
  return unary(
      "relu", [&] { return detail::activation_values<detail::Relu>(a.value()); }, a,
      [](const auto& g, const auto&, const auto& y) { return detail::Relu()(g, y); });
}

template <class T>
Variable<T> leaky_relu(const Variable<T>& a, double slope) {
  const T s = static_cast<T>(slope);
  return unary(
      "leaky_relu",
      [&] { return kernels::unary(a.value(), [s](T x) { return x > 0 ? x : s * x; }); }, a,
      // d/da = g*(a > 0 ? 1 : slope)
      [s](const auto& g, const auto& x, const auto&) { return g * slope_of(x, s); }, "slope",
      slope);
}

template <class T>
Variable<T> softplus(const Variable<T>& a) {
  // log(1 + e^x) = max(x, 0) + log1p(e^-|x|)
  auto f = [](T x) { return std::max(x, T(0)) + std::log1p(std::exp(-std::abs(x))); };
  return unary(
      "softplus", [&] { return kernels::unary(a.value(), f); }, a,
      // d/da = g*sigmoid(a)
      [](const auto& g, const auto& x, const auto&) { return g * logistic(x); });
}

template <class T>
Variable<T> clamp(const Variable<T>& a, double lo, double hi) {
  const T l = static_cast<T>(lo), h = static_cast<T>(hi);
  return unary(
      "clamp", [&] { return clamped(a, lo, hi, "clamp"); }, a,
      // d/da = g*[lo <= a <= hi]
      [l, h](const auto& g, const auto& x, const auto&) { return g * inside(x, l, h); }, "lo", lo,
      "hi", hi);
}

template <class T>
Variable<T> erf(const Variable<T>& a) {
  const T k = static_cast<T>(1.1283791670955126);  // 2/√π
  return unary(
      "erf", [&] { return kernels::simd_map(a.value(), [](auto x) { return xsimd::erf(x); }); }, a,
      // d/da = g*2/√π*exp(-a²)
      [k](const auto& g, const auto& x, const auto&) {
        using std::exp;
        return g * exp(-(x * x)) * k;
      });
}

namespace {

/// GELU's value and its derivative, written once for SIMD batches (the kernels) and Variables
/// (the recorded rule under create_graph); T is the element type. Both forms are written without
/// the cancellation of 1 + erf(x/√2) and 1 + tanh(z) where x is very negative (relative error
/// 1e-3 in float at x = -3.9): Φ(x) as erfc(-x/√2)/2, and (1 + tanh(z))/2 as the logistic of 2z.
template <class T>
struct GeluOf {
  Gelu form;
  static constexpr T half = T(0.5), one = T(1), root_half = T(0.70710678118654752440);
  static constexpr T density = T(0.39894228040143267794);               // 1/√(2π)
  static constexpr T k0 = T(0.79788456080286535588), k1 = T(0.044715);  // √(2/π)
  /// Φ(x), the normal distribution function.
  template <class X>
  static X cdf(const X& x) {
    if constexpr (std::is_same_v<X, Variable<T>>)
      return (erf(x * root_half) + one) * half;  // (no erfc op; double under create_graph)
    else
      return erfc(x * -root_half) * half;
  }
  /// (1 + tanh(z))/2 of the tanh form, z = √(2/π)(x + 0.044715x³).
  template <class X>
  static X logistic_2z(const X& x) {
    return one / (exp((x + x * x * x * k1) * (-2 * k0)) + one);
  }
  template <class X>
  X value(const X& x) const {
    return x * (form == Gelu::erf ? cdf(x) : logistic_2z(x));
  }
  /// Φ(x) + x·φ(x), or the derivative of the tanh form, s + 2x·s(1 − s)·√(2/π)(1 + 3·0.044715x²).
  template <class X>
  X slope(const X& x) const {
    if (form == Gelu::erf) return cdf(x) + x * exp(x * x * -half) * density;
    const X s = logistic_2z(x);
    return s + x * s * (one - s) * (x * x * (3 * k1) + one) * (2 * k0);
  }
};

}  // namespace

template <class T>
Variable<T> gelu(const Variable<T>& a, Gelu form) {
  if (form != Gelu::erf && form != Gelu::tanh) fail("gelu: unknown form ", static_cast<int>(form));
  const GeluOf<T> f{form};
  auto backward = [f](const BackwardContext<T>& c) -> Grads<T> {
    if (c.create_graph) return {c.grad * f.slope(c.input(0))};
    Variable<T> out = c.grad_exclusive ? c.grad : Variable<T>(Array<T>::from_shape(c.grad.shape()));
    kernels::simd_apply(c.grad.value().data(), c.input(0).value().data(),
                        out.mutable_value().data(), out.value().size(),
                        [&f](auto g, auto x) { return g * f.slope(x); });
    return {out};
  };
  return detail::traced<T>(
      "gelu", {&a},
      [&] {
        return make_op<T>("gelu", kernels::simd_map(a.value(), [&f](auto x) { return f.value(x); }),
                          {a}, backward);
      },
      "approximate", form == Gelu::tanh ? "tanh" : "none");
}

template <class T>
Variable<T> square(const Variable<T>& a) {
  return mul(a, a);
}

template <class T>
Variable<T> sin(const Variable<T>& a) {
  return unary(
      "sin", [&] { return kernels::simd_map(a.value(), [](auto x) { return xsimd::sin(x); }); }, a,
      // d/da = g*cos(a)
      [](const auto& g, const auto& x, const auto&) {
        using std::cos;
        return g * cos(x);
      });
}

template <class T>
Variable<T> cos(const Variable<T>& a) {
  return unary(
      "cos", [&] { return kernels::simd_map(a.value(), [](auto x) { return xsimd::cos(x); }); }, a,
      // d/da = -g*sin(a)
      [](const auto& g, const auto& x, const auto&) {
        using std::sin;
        return -(g * sin(x));
      });
}

template <class T>
Variable<T> elu(const Variable<T>& a, double alpha) {
  const T al = static_cast<T>(alpha);
  return unary(
      "elu",
      [&] {
        return kernels::unary(a.value(), [al](T x) { return x > 0 ? x : al * std::expm1(x); });
      },
      a,
      // d/da = g for a > 0, g*alpha*e^a = g*(y + alpha) otherwise
      [al](const auto& g, const auto& x, const auto& y) { return if_positive(x, g, g * (y + al)); },
      "alpha", alpha);
}

template <class T>
Variable<T> hardtanh(const Variable<T>& a, double lo, double hi) {
  const T l = static_cast<T>(lo), h = static_cast<T>(hi);
  return unary(
      "hardtanh", [&] { return clamped(a, lo, hi, "hardtanh"); }, a,
      // d/da = g*[lo < a < hi]: 0 at the bounds, as in PyTorch
      [l, h](const auto& g, const auto& x, const auto&) { return g * strictly_inside(x, l, h); },
      "lo", lo, "hi", hi);
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

namespace {

/// The four gate activations at row r, positions j … j + count, of the sum of two (N, 4H) gate
/// arrays.
template <class T>
std::array<xsimd::batch<T>, 4> lstm_gates(const T* x, const T* h, std::size_t hidden, std::size_t r,
                                          std::size_t j, std::size_t count) {
  const std::size_t at = r * 4 * hidden + j;
  auto gate = [&](std::size_t k) {
    return kernels::load_part(x + at + k * hidden, count) +
           kernels::load_part(h + at + k * hidden, count);
  };
  return {detail::logistic_of(gate(0)), detail::logistic_of(gate(1)), xsimd::tanh(gate(2)),
          detail::logistic_of(gate(3))};
}

}  // namespace

template <class T>
Variable<T> lstm_cell(const Variable<T>& input_gates, const Variable<T>& hidden_gates,
                      const Variable<T>& c) {
  return detail::traced<T>("lstm_cell", {&input_gates, &hidden_gates, &c}, [&] {
    const Shape& sx = input_gates.shape();
    const Shape& sc = c.shape();
    if (sx.size() != 2 || sc.size() != 2 || sx[0] != sc[0] || sx[1] != 4 * sc[1] ||
        hidden_gates.shape() != sx)
      fail("lstm_cell: gates ", shape_str(sx), " and ", shape_str(hidden_gates.shape()),
           " and cell ", shape_str(sc), " do not match (gates are (N, 4H), the cell (N, H))");
    const std::size_t rows = sc[0], hidden = sc[1];
    Array<T> out = Array<T>::from_shape({rows, 2 * hidden});
    {
      const T* px = input_gates.value().data();
      const T* ph = hidden_gates.value().data();
      const T* pc = c.value().data();
      T* po = out.data();
      kernels::for_each_position<T>(
          rows, hidden, [&](std::size_t r, std::size_t j, std::size_t count) {
            const auto [i, f, n, o] = lstm_gates(px, ph, hidden, r, j, count);
            const auto c2 = f * kernels::load_part(pc + r * hidden + j, count) + i * n;
            kernels::store_part(o * xsimd::tanh(c2), po + r * 2 * hidden + j, count);
            kernels::store_part(c2, po + r * 2 * hidden + hidden + j, count);
          });
    }
    auto backward = [](const BackwardContext<T>& ctx) {
      const std::size_t rows = ctx.input(2).shape()[0], H = ctx.input(2).shape()[1];
      if (ctx.create_graph) {  // the same derivative on Variables, recorded
        const Variable<T> g = ctx.input(0) + ctx.input(1);
        const Variable<T>& c = ctx.input(2);
        const Variable<T> i = sigmoid(slice(g, 1, 0, H)), f = sigmoid(slice(g, 1, H, 2 * H)),
                          n = tanh(slice(g, 1, 2 * H, 3 * H)),
                          o = sigmoid(slice(g, 1, 3 * H, 4 * H));
        const auto d =
            kernels::lstm_cell_grads(i, f, n, o, c, tanh(f * c + i * n), slice(ctx.grad, 1, 0, H),
                                     slice(ctx.grad, 1, H, 2 * H));
        const Variable<T> dg = concatenate<T>({d[0], d[1], d[2], d[3]}, 1);
        return Grads<T>{dg, dg, d[4]};
      }
      // Both gate inputs get the same gradient, made once.
      Grads<T> grads(3);
      const bool gates = ctx.needs(0) || ctx.needs(1);
      T* dg = gates ? detail::new_gradient(grads, 0, Shape{rows, 4 * H}) : nullptr;
      T* dc = ctx.needs(2) ? detail::new_gradient(grads, 2, Shape{rows, H}) : nullptr;
      const T* px = ctx.input(0).value().data();
      const T* ph = ctx.input(1).value().data();
      const T* pc = ctx.input(2).value().data();
      const T* po = ctx.output.value().data();
      const T* pd = ctx.grad.value().data();
      kernels::for_each_position<T>(rows, H, [&](std::size_t r, std::size_t j, std::size_t count) {
        const auto [i, f, n, o] = lstm_gates(px, ph, H, r, j, count);
        const std::size_t at = r * 2 * H + j;
        const auto d = kernels::lstm_cell_grads(
            i, f, n, o, kernels::load_part(pc + r * H + j, count),
            xsimd::tanh(kernels::load_part(po + at + H, count)), kernels::load_part(pd + at, count),
            kernels::load_part(pd + at + H, count));
        if (dg)
          for (std::size_t k = 0; k < 4; ++k)
            kernels::store_part(d[k], dg + r * 4 * H + k * H + j, count);
        if (dc) kernels::store_part(d[4], dc + r * H + j, count);
      });
      if (gates) grads[1] = grads[0];
      return grads;
    };
    return make_op<T>("lstm_cell", std::move(out), {input_gates, hidden_gates, c}, backward);
  });
}

template <class T>
std::vector<const void*> elementwise_ops() {
  return detail::addresses(&exp<T>, &log<T>, &sqrt<T>, &abs<T>, &tanh<T>, &sigmoid<T>, &relu<T>,
                           &leaky_relu<T>, &softplus<T>, &clamp<T>, &erf<T>, &square<T>, &sin<T>,
                           &cos<T>, &elu<T>, &hardtanh<T>, &silu<T>, &mish<T>, &logsigmoid<T>,
                           &gelu<T>, &lstm_cell<T>);
}
template std::vector<const void*> elementwise_ops<float>();
template std::vector<const void*> elementwise_ops<double>();

namespace detail {
template <class T>
Replays<T> elementwise_replays() {
  using In = std::vector<Variable<T>>;
  using A = AttributeReader;
  return {
      {"exp", [](const In& x, const A&) { return exp(x.at(0)); }},
      {"log", [](const In& x, const A&) { return log(x.at(0)); }},
      {"sqrt", [](const In& x, const A&) { return sqrt(x.at(0)); }},
      {"abs", [](const In& x, const A&) { return abs(x.at(0)); }},
      {"tanh", [](const In& x, const A&) { return tanh(x.at(0)); }},
      {"sigmoid", [](const In& x, const A&) { return sigmoid(x.at(0)); }},
      {"relu", [](const In& x, const A&) { return relu(x.at(0)); }},
      {"leaky_relu",
       [](const In& x, const A& a) { return leaky_relu(x.at(0), a.number("slope")); }},
      {"softplus", [](const In& x, const A&) { return softplus(x.at(0)); }},
      {"clamp",
       [](const In& x, const A& a) { return clamp(x.at(0), a.number("lo"), a.number("hi")); }},
      {"hardtanh",
       [](const In& x, const A& a) { return hardtanh(x.at(0), a.number("lo"), a.number("hi")); }},
      {"erf", [](const In& x, const A&) { return erf(x.at(0)); }},
      {"sin", [](const In& x, const A&) { return sin(x.at(0)); }},
      {"cos", [](const In& x, const A&) { return cos(x.at(0)); }},
      {"elu", [](const In& x, const A& a) { return elu(x.at(0), a.number("alpha")); }},
      {"gelu",
       [](const In& x, const A& a) {
         return gelu(x.at(0), a.text("approximate") == "tanh" ? Gelu::tanh : Gelu::erf);
       }},
      {"lstm_cell", [](const In& x, const A&) { return lstm_cell(x.at(0), x.at(1), x.at(2)); }},
  };
}
template Replays<float> elementwise_replays<float>();
template Replays<double> elementwise_replays<double>();
}  // namespace detail

}  // namespace ad
