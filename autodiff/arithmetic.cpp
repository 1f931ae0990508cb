#include "autodiff/arithmetic.hpp"

#include <algorithm>
#include <cmath>
#include <functional>

#include "autodiff/kernels/elementwise.hpp"
#include "autodiff/ops.hpp"
#include "autodiff/trace.hpp"

namespace ad {

namespace {

/// The gradient for input i, summed back to its shape, or none when input i needs none.
template <class T, class F>
Variable<T> grad_for(const BackwardContext<T>& c, std::size_t i, F&& make) {
  return c.needs(i) ? sum_to(make(), c.input(i).shape()) : Variable<T>();
}

}  // namespace

template <class T>
Variable<T> add(const Variable<T>& a, const Variable<T>& b) {
  return detail::traced<T>("add", {&a, &b}, [&] {
    return make_op_in_place<T>(
        "add", [&] { return kernels::binary(a.value(), b.value(), std::plus<T>(), "add"); }, {a, b},
        [](const BackwardContext<T>& c) -> Grads<T> {
          // d/da = g, d/db = g
          return {grad_for(c, 0, [&] { return c.grad; }), grad_for(c, 1, [&] { return c.grad; })};
        });
  });
}

template <class T>
Variable<T> sub(const Variable<T>& a, const Variable<T>& b) {
  return detail::traced<T>("sub", {&a, &b}, [&] {
    return make_op_in_place<T>(
        "sub", [&] { return kernels::binary(a.value(), b.value(), std::minus<T>(), "sub"); },
        {a, b},
        [](const BackwardContext<T>& c) -> Grads<T> {
          // d/da = g, d/db = -g
          return {grad_for(c, 0, [&] { return c.grad; }),
                  grad_for(c, 1, [&] { return neg(c.grad); })};
        });
  });
}

template <class T>
Variable<T> mul(const Variable<T>& a, const Variable<T>& b) {
  return detail::traced<T>("mul", {&a, &b}, [&] {
    return make_op_in_place<T>(
        "mul", [&] { return kernels::binary(a.value(), b.value(), std::multiplies<T>(), "mul"); },
        {a, b},
        [](const BackwardContext<T>& c) -> Grads<T> {
          // d/da = g*b, d/db = g*a
          return {grad_for(c, 0, [&] { return c.grad * c.input(1); }),
                  grad_for(c, 1, [&] { return c.grad * c.input(0); })};
        });
  });
}

template <class T>
Variable<T> div(const Variable<T>& a, const Variable<T>& b) {
  return detail::traced<T>("div", {&a, &b}, [&] {
    return make_op_in_place<T>(
        "div", [&] { return kernels::binary(a.value(), b.value(), std::divides<T>(), "div"); },
        {a, b},
        [](const BackwardContext<T>& c) -> Grads<T> {
          // d/da = g/b, d/db = -g*a/b² = -g*y/b, written once over numbers and Variables: one
          // fused pass when nothing broadcasts and the backward is not recorded
          auto db = [](const auto& g, const auto& y, const auto& b) { return -(g * y) / b; };
          const auto& b = c.input(1);
          const bool fused = !c.create_graph && same_shape(c.grad.shape(), b.shape()) &&
                             same_shape(c.output.shape(), b.shape());
          return {grad_for(c, 0, [&] { return c.grad / b; }), grad_for(c, 1, [&] {
                    return fused ? Variable<T>(kernels::map(db, c.grad.value(), c.output.value(),
                                                            b.value()))
                                 : db(c.grad, c.output, b);
                  })};
        });
  });
}

template <class T>
Variable<T> neg(const Variable<T>& a) {
  return detail::traced<T>("neg", {&a}, [&] {
    return make_op_in_place<T>(
        "neg", [&] { return kernels::unary(a.value(), std::negate<T>()); }, {a},
        [](const BackwardContext<T>& c) -> Grads<T> {
          // d/da = -g
          return {neg(c.grad)};
        });
  });
}

template <class T>
Variable<T> affine(const Variable<T>& a, double scale, double shift) {
  return detail::traced<T>(
      "affine", {&a},
      [&] {
        const T s = static_cast<T>(scale), t = static_cast<T>(shift);
        auto make = [&] {
          return shift == 0.0   ? kernels::unary(a.value(), [s](T x) { return x * s; })
                 : scale == 1.0 ? kernels::unary(a.value(), [t](T x) { return x + t; })
                                : kernels::unary(a.value(), [s, t](T x) { return x * s + t; });
        };
        return make_op_in_place<T>("affine", make, {a},
                                   [scale](const BackwardContext<T>& c) -> Grads<T> {
                                     // d/da = g*scale
                                     return {scale == 1.0 ? c.grad : affine(c.grad, scale, 0.0)};
                                   });
      },
      "scale", scale, "shift", shift);
}

namespace {

/// d with zeros where `mask` holds (a derivative whose formula gives 0·∞ there, but whose value
/// by continuity is 0); d itself when the mask holds nowhere.
template <class T>
Variable<T> zero_where(const Mask& mask, const Variable<T>& d) {
  if (std::none_of(mask.begin(), mask.end(), [](bool m) { return m; })) return d;
  return ad::where(mask, scalar<T>(0), d);
}

}  // namespace

template <class T>
Variable<T> pow(const Variable<T>& a, const Variable<T>& b) {
  return detail::traced<T>("pow", {&a, &b}, [&] {
    auto f = [](T x, T y) { return std::pow(x, y); };
    return make_op<T>(
        "pow", kernels::binary(a.value(), b.value(), f, "pow"), {a, b},
        [](const BackwardContext<T>& c) -> Grads<T> {
          // d/da = g*b*a^(b-1), taken as 0 where b = 0 (a^0 is constant; a^-1 is ∞ at a = 0);
          // d/db = g*out*log(a), taken as 0 where a = 0 and b >= 0 (the limit of a^b·log a as
          // a → 0+ for b > 0; PyTorch's convention at b = 0)
          const auto& a = c.input(0);
          const auto& b = c.input(1);
          return {grad_for(c, 0,
                           [&] {
                             Mask b_zero = kernels::unary(b.value(), [](T y) { return y == 0; });
                             return zero_where(b_zero, c.grad * b * pow(a, b - 1));
                           }),
                  grad_for(c, 1, [&] {
                    Mask at_zero = kernels::binary(
                        a.value(), b.value(), [](T x, T y) { return x == 0 && y >= 0; }, "pow");
                    return zero_where(at_zero, c.grad * c.output * log(a));
                  })};
        });
  });
}

template <class T>
Variable<T> pow(const Variable<T>& a, double p) {
  return detail::traced<T>(
      "pow", {&a},
      [&] {
        const T e = static_cast<T>(p);
        Array<T> out = p == 2.0 ? kernels::unary(a.value(), [](T x) { return x * x; })
                                : kernels::unary(a.value(), [e](T x) { return std::pow(x, e); });
        return make_op<T>("pow", std::move(out), {a}, [p](const BackwardContext<T>& c) -> Grads<T> {
          // d/da = g*p*a^(p-1); 0 for p = 0 (a^0 is constant, even at a = 0). Written once over
          // numbers and Variables.
          if (p == 0.0) return {Variable<T>(Array<T>(xt::zeros<T>(c.input(0).shape())))};
          if (p == 1.0) return {c.grad};
          const T pt = static_cast<T>(p), q = static_cast<T>(p - 1.0);
          auto d = [pt, q](const auto& g, const auto& x) {
            using std::pow;
            return q == 1 ? g * x * pt : g * pow(x, q) * pt;
          };
          if (c.create_graph) return {d(c.grad, c.input(0))};
          return {Variable<T>(kernels::map(d, c.grad.value(), c.input(0).value()))};
        });
      },
      "exponent", p);
}

template <class T>
Variable<T> where(const Mask& mask, const Variable<T>& a, const Variable<T>& b) {
  return detail::traced<T>(
      "where", {&a, &b},
      [&] {
        return make_op<T>("where", kernels::select(mask, a.value(), b.value(), "where"), {a, b},
                          [mask](const BackwardContext<T>& c) -> Grads<T> {
                            // d/da = g where mask, d/db = g where not mask
                            Variable<T> zero = scalar<T>(0);
                            return {grad_for(c, 0, [&] { return ad::where(mask, c.grad, zero); }),
                                    grad_for(c, 1, [&] { return ad::where(mask, zero, c.grad); })};
                          });
      },
      "mask", mask);
}

template <class T>
Variable<T> maximum(const Variable<T>& a, const Variable<T>& b) {
  return detail::traced<T>("maximum", {&a, &b}, [&] {
    // a where a > b or a is NaN, else b: a NaN in either operand propagates (IEEE, as NumPy and
    // PyTorch), unlike std::max or fmax.
    return ad::where(kernels::binary(
                         a.value(), b.value(), [](T x, T y) { return x > y || x != x; }, "maximum"),
                     a, b);
  });
}

template <class T>
Variable<T> minimum(const Variable<T>& a, const Variable<T>& b) {
  return detail::traced<T>("minimum", {&a, &b}, [&] {
    return ad::where(kernels::binary(
                         a.value(), b.value(), [](T x, T y) { return x < y || x != x; }, "minimum"),
                     a, b);
  });
}

template <class T>
std::vector<const void*> arithmetic_ops() {
  using V = Variable<T>;
  return detail::addresses(&add<T>, &sub<T>, &mul<T>, &div<T>, &neg<T>, &affine<T>,
                           static_cast<V (*)(const V&, const V&)>(&pow<T>),
                           static_cast<V (*)(const V&, double)>(&pow<T>), &where<T>, &maximum<T>,
                           &minimum<T>);
}
template std::vector<const void*> arithmetic_ops<float>();
template std::vector<const void*> arithmetic_ops<double>();

namespace detail {
template <class T>
Replays<T> arithmetic_replays() {
  using In = std::vector<Variable<T>>;
  using A = AttributeReader;
  return {
      {"add", [](const In& x, const A&) { return add(x.at(0), x.at(1)); }},
      {"sub", [](const In& x, const A&) { return sub(x.at(0), x.at(1)); }},
      {"mul", [](const In& x, const A&) { return mul(x.at(0), x.at(1)); }},
      {"div", [](const In& x, const A&) { return div(x.at(0), x.at(1)); }},
      {"neg", [](const In& x, const A&) { return neg(x.at(0)); }},
      {"affine", [](const In& x,
                    const A& a) { return affine(x.at(0), a.number("scale"), a.number("shift")); }},
      {"pow",
       [](const In& x, const A& a) {
         return x.size() == 2 ? pow(x[0], x[1]) : pow(x.at(0), a.number("exponent"));
       }},
      {"where", [](const In& x, const A& a) { return where(a.mask("mask"), x.at(0), x.at(1)); }},
      {"maximum", [](const In& x, const A&) { return maximum(x.at(0), x.at(1)); }},
      {"minimum", [](const In& x, const A&) { return minimum(x.at(0), x.at(1)); }},
  };
}
template Replays<float> arithmetic_replays<float>();
template Replays<double> arithmetic_replays<double>();
}  // namespace detail

}  // namespace ad
