#include "autodiff/reduce.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <utility>

#include "autodiff/kernels/elementwise.hpp"
#include "autodiff/kernels/reduce.hpp"
#include "autodiff/ops.hpp"
#include "autodiff/trace.hpp"

namespace ad {

namespace {

/// Drops the reduced axes of a keepdims result unless keepdims was asked for.
template <class T>
Variable<T> finish(const Variable<T>& kept, const Shape& in, const std::vector<long>& axes,
                   bool keepdims, const char* op) {
  return keepdims ? kept : reshape(kept, kernels::dropdims_shape(in, axes, op));
}

/// The maximum along the axes where `keep` has extent 1 (same rank as a), as a keepdims result.
template <class T>
Variable<T> max_keep(const Variable<T>& a, const Shape& keep) {
  return make_op<T>("max", kernels::max_to(a.value(), keep), {a},
                    [](const BackwardContext<T>& c) -> Grads<T> {
                      // d/da = g at the maxima, shared equally between ties; 0 elsewhere
                      const auto& a = c.input(0);
                      Array<T> top = kernels::broadcast_to(c.output.value(), a.shape());
                      Variable<T> mask(kernels::binary(
                          a.value(), top, [](T x, T m) { return T(x == m); }, "max"));
                      Variable<T> count(kernels::sum_to(mask.value(), c.output.shape()));
                      return {broadcast_to(c.grad / count, a.shape()) * mask};
                    });
}

}  // namespace

template <class T>
Variable<T> sum(const Variable<T>& a) {
  return detail::traced<T>(
      "sum", {&a}, [&] { return sum_to(a, Shape{}); }, "axes", std::vector<long>{}, "keepdims",
      false);
}

template <class T>
Variable<T> sum(const Variable<T>& a, const std::vector<long>& axes, bool keepdims) {
  return detail::traced<T>(
      "sum", {&a},
      [&] {
        Shape keep = kernels::keepdims_shape(a.shape(), axes, "sum");
        return finish(sum_to(a, keep), a.shape(), axes, keepdims, "sum");
      },
      "axes", axes, "keepdims", keepdims);
}

template <class T>
Variable<T> mean(const Variable<T>& a) {
  return detail::traced<T>(
      "mean", {&a}, [&] { return affine(sum(a), 1.0 / static_cast<double>(a.size()), 0.0); },
      "axes", std::vector<long>{}, "keepdims", false);
}

template <class T>
Variable<T> mean(const Variable<T>& a, const std::vector<long>& axes, bool keepdims) {
  return detail::traced<T>(
      "mean", {&a},
      [&] {
        Shape keep = kernels::keepdims_shape(a.shape(), axes, "mean");
        const double count = static_cast<double>(a.size()) / static_cast<double>(shape_size(keep));
        return affine(sum(a, axes, keepdims), 1.0 / count, 0.0);
      },
      "axes", axes, "keepdims", keepdims);
}

template <class T>
Variable<T> max(const Variable<T>& a) {
  return detail::traced<T>(
      "max", {&a}, [&] { return max(a, {}, false); }, "axes", std::vector<long>{}, "keepdims",
      false);
}

template <class T>
Variable<T> max(const Variable<T>& a, const std::vector<long>& axes, bool keepdims) {
  return detail::traced<T>(
      "max", {&a},
      [&] {
        Shape keep = kernels::keepdims_shape(a.shape(), axes, "max");
        if (a.size() == 0)
          fail("max: cannot reduce an empty tensor of shape ", shape_str(a.shape()));
        return finish(max_keep(a, keep), a.shape(), axes, keepdims, "max");
      },
      "axes", axes, "keepdims", keepdims);
}

template <class T>
Variable<T> min(const Variable<T>& a) {
  return detail::traced<T>(
      "min", {&a}, [&] { return -max(-a); }, "axes", std::vector<long>{}, "keepdims", false);
}

template <class T>
Variable<T> min(const Variable<T>& a, const std::vector<long>& axes, bool keepdims) {
  return detail::traced<T>(
      "min", {&a}, [&] { return -max(-a, axes, keepdims); }, "axes", axes, "keepdims", keepdims);
}

template <class T>
Variable<T> log_sum_exp(const Variable<T>& a, const std::vector<long>& axes, bool keepdims) {
  return detail::traced<T>(
      "log_sum_exp", {&a},
      [&] {
        Shape keep = kernels::keepdims_shape(a.shape(), axes, "log_sum_exp");
        // lse(a) = m + log(Σ exp(a - m)) for any constant m; the maximum keeps exp from
        // overflowing.
        Variable<T> shift(kernels::unary(kernels::max_to(a.value(), keep),
                                         [](T m) { return std::isfinite(m) ? m : T(0); }));
        Variable<T> kept = shift + log(sum_to(exp(a - shift), keep));
        return finish(kept, a.shape(), axes, keepdims, "log_sum_exp");
      },
      "axes", axes, "keepdims", keepdims);
}

template <class T>
Variable<T> log_softmax(const Variable<T>& a, long axis) {
  return detail::traced<T>(
      "log_softmax", {&a},
      [&] {
        const std::size_t ax = normalize_axis(axis, a.shape(), "log_softmax");
        return make_op<T>("log_softmax", kernels::log_softmax(a.value(), ax), {a},
                          [ax](const BackwardContext<T>& c) -> Grads<T> {
                            // d/da = g - softmax(a) * Σ_axis g, softmax(a) = exp(out)
                            return {c.grad - exp(c.output) * sum(c.grad, {long(ax)}, true)};
                          });
      },
      "axis", axis);
}

template <class T>
Variable<T> softmax(const Variable<T>& a, long axis) {
  return detail::traced<T>(
      "softmax", {&a}, [&] { return exp(log_softmax(a, axis)); }, "axis", axis);
}

template <class T>
Variable<T> squared_distance(const Variable<T>& a, const Variable<T>& b, double scale) {
  return detail::traced<T>(
      "squared_distance", {&a, &b},
      [&] {
        if (!same_shape(a.shape(), b.shape()))
          fail("squared_distance: shapes ", shape_str(a.shape()), " and ", shape_str(b.shape()),
               " differ");
        const T s = static_cast<T>(scale);
        return make_op_in_place<T>(
            "squared_distance",
            [&] { return Array<T>(kernels::squared_distance(a.value(), b.value()) * s); }, {a, b},
            [s](const BackwardContext<T>& c) -> Grads<T> {
              // d/da = 2·scale·g(a − b), d/db = −d/da: one definition over numbers and Variables
              auto d = [s](const auto& g, const auto& a, const auto& b) {
                return (a - b) * (g * (s * 2));
              };
              Variable<T> da;
              if (c.create_graph) {
                da = d(c.grad, c.input(0), c.input(1));
              } else {
                const T g = c.grad.item();
                da = Variable<T>(kernels::map([&](T x, T y) { return d(g, x, y); },
                                              c.input(0).value(), c.input(1).value()));
              }
              return {c.needs(0) ? da : Variable<T>(), c.needs(1) ? -da : Variable<T>()};
            });
      },
      "scale", scale);
}

template <class T>
Variable<T> softmax_cross_entropy(const Variable<T>& logits, const Index& labels,
                                  double label_smoothing) {
  return detail::traced<T>(
      "softmax_cross_entropy", {&logits},
      [&] {
        const Shape& s = logits.shape();
        if (s.size() != 2) fail("softmax_cross_entropy: logits must be (N, K), got ", shape_str(s));
        if (labels.size() != s[0])
          fail("softmax_cross_entropy: ", labels.size(), " labels for logits ", shape_str(s));
        if (!(label_smoothing >= 0 && label_smoothing <= 1))
          fail("softmax_cross_entropy: label smoothing ", label_smoothing, " is not in [0, 1]");
        const std::size_t n = s[0], k = s[1];
        labels.check_below(k, "softmax_cross_entropy",
                           std::to_string(k) + " classes (logits " + shape_str(s) + ")", true);
        // Each row's log-sum-exp, kept for the backward (which would otherwise make it again).
        Array<T> lse;
        Array<T> loss =
            kernels::softmax_cross_entropy(logits.value(), labels, label_smoothing, lse);
        return make_op<T>(
            "softmax_cross_entropy", std::move(loss), {logits},
            [labels, label_smoothing, n, k,
             lse = std::move(lse)](const BackwardContext<T>& c) -> Grads<T> {
              // d/dz_ij = g_i * (softmax(z)_ij - t_ij), t = (1 - ε)·onehot(label) + ε/K: the fused
              // kernel computes exactly this; recorded, the same from softmax
              const auto& z = c.input(0);
              if (!c.create_graph)
                return {Variable<T>(kernels::softmax_cross_entropy_grad(
                    z.value(), lse, c.grad.value(), labels, label_smoothing))};
              Variable<T> t(kernels::softmax_cross_entropy_target<T>(labels, k, label_smoothing));
              return {reshape(c.grad, Shape{n, 1}) * (softmax(z, 1) - t)};
            });
      },
      "labels", labels, "label_smoothing", label_smoothing);
}

template <class T>
Variable<T> var(const Variable<T>& a, const std::vector<long>& axes, double correction,
                bool keepdims) {
  return detail::traced<T>(
      "var", {&a},
      [&] {
        Shape keep = kernels::keepdims_shape(a.shape(), axes, "var");
        const double n = static_cast<double>(a.size()) / static_cast<double>(shape_size(keep));
        Variable<T> d = a - mean(a, axes, true);
        return sum(d * d, axes, keepdims) / static_cast<T>(std::max(n - correction, 0.0));
      },
      "axes", axes, "correction", correction, "keepdims", keepdims);
}

template <class T>
Variable<T> std(const Variable<T>& a, const std::vector<long>& axes, double correction,
                bool keepdims) {
  return detail::traced<T>(
      "std", {&a}, [&] { return sqrt(var(a, axes, correction, keepdims)); }, "axes", axes,
      "correction", correction, "keepdims", keepdims);
}

template <class T>
Variable<T> norm(const Variable<T>& a, double p, const std::vector<long>& axes, bool keepdims) {
  return detail::traced<T>(
      "norm", {&a},
      [&] {
        if (!(p > 0)) fail("norm: p must be > 0 (or infinity), got ", p);
        if (std::isinf(p)) return max(abs(a), axes, keepdims);
        if (p == 1) return sum(abs(a), axes, keepdims);
        const Shape keep = kernels::keepdims_shape(a.shape(), axes, "norm");
        const T q = static_cast<T>(p);
        Array<T> y = kernels::unary(
            kernels::sum_to(
                kernels::unary(a.value(),
                               [q](T x) { return q == 2 ? x * x : std::pow(std::abs(x), q); }),
                keep),
            [q](T s) { return q == 2 ? std::sqrt(s) : std::pow(s, 1 / q); });
        Variable<T> kept =
            make_op<T>("norm", std::move(y), {a}, [p](const BackwardContext<T>& c) -> Grads<T> {
              // d/da = g·sign(a)·|a|^(p−1) / y^(p−1) (g·a/y for p = 2), and 0 where y = 0 (the
              // zero vector's subgradient, as in PyTorch)
              const Mask positive = kernels::unary(c.output.value(), [](T v) { return v > 0; });
              const Variable<T> y = ad::where(positive, c.output, scalar(T(1)));
              const Variable<T>& x = c.input(0);
              if (p == 2) return {x * ad::where(positive, c.grad / y, scalar(T(0)))};
              const Variable<T> sign(
                  kernels::unary(x.value(), [](T v) { return T((v > 0) - (v < 0)); }));
              return {ad::where(positive, sign * pow(abs(x), p - 1) * (c.grad / pow(y, p - 1)),
                                scalar(T(0)))};
            });
        return finish(kept, a.shape(), axes, keepdims, "norm");
      },
      "p", p, "axes", axes, "keepdims", keepdims);
}

template <class T>
Variable<T> cumsum(const Variable<T>& a, long axis, bool reverse) {
  return detail::traced<T>(
      "cumsum", {&a},
      [&] {
        const std::size_t ax = normalize_axis(axis, a.shape(), "cumsum");
        return make_op<T>("cumsum", kernels::cumsum(a.value(), ax, reverse), {a},
                          [ax, reverse](const BackwardContext<T>& c) -> Grads<T> {
                            // d/da_i = Σ_{j >= i} g_j: the running sum of g the other way round
                            return {cumsum(c.grad, long(ax), !reverse)};
                          });
      },
      "axis", axis, "reverse", reverse);
}

namespace {
template <class T>
Index arg_extremum(const Variable<T>& a, long axis, bool keepdims, bool smallest) {
  const char* op = smallest ? "argmin" : "argmax";
  const std::size_t ax = normalize_axis(axis, a.shape(), op);
  if (a.shape()[ax] == 0)
    fail(op, ": axis ", axis, " of shape ", shape_str(a.shape()), " is empty");
  Array<std::size_t> at = kernels::arg_extremum(a.value(), ax, smallest);
  if (!keepdims) at.reshape(kernels::dropdims_shape(a.shape(), {long(ax)}, op));
  return Index(std::move(at));
}
}  // namespace

template <class T>
Index argmax(const Variable<T>& a, long axis, bool keepdims) {
  return arg_extremum(a, axis, keepdims, false);
}

template <class T>
Index argmin(const Variable<T>& a, long axis, bool keepdims) {
  return arg_extremum(a, axis, keepdims, true);
}

template <class T>
Variable<T> layer_norm(const Variable<T>& x, std::size_t axes, const Variable<T>& weight,
                       const Variable<T>& bias, double eps) {
  const Shape& s = x.shape();
  if (axes == 0 || axes > s.size())
    fail("layer_norm: ", axes, " normalised axes for an input ", shape_str(s));
  const Shape normalised(s.end() - static_cast<long>(axes), s.end());
  for (const Variable<T>* p : {&weight, &bias})
    if (p->defined() && p->shape() != normalised)
      fail("layer_norm: ", p == &weight ? "weight " : "bias ", shape_str(p->shape()),
           " is not the normalised shape ", shape_str(normalised), " of input ", shape_str(s));
  if (!(eps > 0)) fail("layer_norm: eps must be > 0, got ", eps);
  const std::size_t cols = shape_size(normalised), rows = cols ? shape_size(s) / cols : 0;
  std::vector<long> last;
  for (std::size_t d = 0; d < axes; ++d) last.push_back(-1 - static_cast<long>(d));
  auto body = [&] {
    Array<T> y = Array<T>::from_shape(s);
    auto stats = std::make_shared<std::pair<Array<T>, Array<T>>>(Array<T>::from_shape({rows}),
                                                                 Array<T>::from_shape({rows}));
    kernels::layer_norm(x.value().data(), rows, cols,
                        weight.defined() ? weight.value().data() : nullptr,
                        bias.defined() ? bias.value().data() : nullptr, eps, y.data(),
                        stats->first.data(), stats->second.data());
    const bool has_w = weight.defined(), has_b = bias.defined();
    auto backward = [=](const BackwardContext<T>& c) -> Grads<T> {
      const Variable<T>& x = c.input(0);
      Grads<T> grads(c.inputs.size());
      if (c.create_graph) {  // the same derivative with recorded ops
        const Variable<T> centred = x - mean(x, last, true);
        const Variable<T> rstd = 1.0 / sqrt(mean(square(centred), last, true) + eps);
        const Variable<T> xhat = centred * rstd;
        const Variable<T> gw = has_w ? c.grad * c.input(1) : c.grad;
        grads[0] = rstd * (gw - mean(gw, last, true) - xhat * mean(gw * xhat, last, true));
        if (has_w) grads[1] = sum_to(c.grad * xhat, normalised);
        if (has_b) grads[has_w ? 2 : 1] = sum_to(c.grad, normalised);
        return grads;
      }
      T* dx = c.needs(0) ? detail::new_gradient(grads, 0, s) : nullptr;
      T* dw = has_w && c.needs(1) ? detail::new_gradient(grads, 1, normalised) : nullptr;
      const std::size_t ib = has_w ? 2 : 1;
      T* db = has_b && c.needs(ib) ? detail::new_gradient(grads, ib, normalised) : nullptr;
      kernels::layer_norm_backward(c.grad.value().data(), x.value().data(),
                                   has_w ? c.input(1).value().data() : nullptr, stats->first.data(),
                                   stats->second.data(), rows, cols, dx, dw, db);
      return grads;
    };
    std::vector<Variable<T>> inputs{x};
    if (has_w) inputs.push_back(weight);
    if (has_b) inputs.push_back(bias);
    return make_op<T>("layer_norm", std::move(y), inputs, backward);
  };
  return detail::traced<T>("layer_norm", {&x, &weight, &bias}, body, "axes", axes, "eps", eps,
                           "affine", weight.defined(), "shift", bias.defined());
}

template <class T>
std::vector<const void*> reduce_ops() {
  using V = Variable<T>;
  using All = V (*)(const V&);
  using Axes = V (*)(const V&, const std::vector<long>&, bool);
  return detail::addresses(
      static_cast<All>(&sum<T>), static_cast<Axes>(&sum<T>), static_cast<All>(&mean<T>),
      static_cast<Axes>(&mean<T>), static_cast<All>(&max<T>), static_cast<Axes>(&max<T>),
      static_cast<All>(&min<T>), static_cast<Axes>(&min<T>), &log_sum_exp<T>, &log_softmax<T>,
      &softmax<T>, &squared_distance<T>, &softmax_cross_entropy<T>, &var<T>, &std<T>, &norm<T>,
      &cumsum<T>, &argmax<T>, &argmin<T>, &layer_norm<T>);
}
template std::vector<const void*> reduce_ops<float>();
template std::vector<const void*> reduce_ops<double>();

namespace detail {
template <class T>
Replays<T> reduce_replays() {
  using In = std::vector<Variable<T>>;
  using A = AttributeReader;
  return {
      {"layer_norm",
       [](const In& x, const A& a) {
         const bool w = a.flag("affine"), b = a.flag("shift");
         return layer_norm(x.at(0), static_cast<std::size_t>(a.integer("axes")),
                           w ? x.at(1) : Variable<T>(), b ? x.at(w ? 2 : 1) : Variable<T>(),
                           a.number("eps"));
       }},
      {"sum", [](const In& x,
                 const A& a) { return sum(x.at(0), a.integers("axes"), a.flag("keepdims")); }},
      {"mean", [](const In& x,
                  const A& a) { return mean(x.at(0), a.integers("axes"), a.flag("keepdims")); }},
      {"max", [](const In& x,
                 const A& a) { return max(x.at(0), a.integers("axes"), a.flag("keepdims")); }},
      {"min", [](const In& x,
                 const A& a) { return min(x.at(0), a.integers("axes"), a.flag("keepdims")); }},
      {"log_sum_exp",
       [](const In& x, const A& a) {
         return log_sum_exp(x.at(0), a.integers("axes"), a.flag("keepdims"));
       }},
      {"log_softmax",
       [](const In& x, const A& a) { return log_softmax(x.at(0), a.integer("axis")); }},
      {"softmax", [](const In& x, const A& a) { return softmax(x.at(0), a.integer("axis")); }},
      {"squared_distance",
       [](const In& x, const A& a) {
         return squared_distance(x.at(0), x.at(1), a.number("scale"));
       }},
      {"softmax_cross_entropy",
       [](const In& x, const A& a) {
         return softmax_cross_entropy(x.at(0), a.index("labels"), a.number("label_smoothing"));
       }},
      {"var",
       [](const In& x, const A& a) {
         return var(x.at(0), a.integers("axes"), a.number("correction"), a.flag("keepdims"));
       }},
      {"std",
       [](const In& x, const A& a) {
         return std(x.at(0), a.integers("axes"), a.number("correction"), a.flag("keepdims"));
       }},
      {"norm",
       [](const In& x, const A& a) {
         return norm(x.at(0), a.number("p"), a.integers("axes"), a.flag("keepdims"));
       }},
      {"cumsum", [](const In& x,
                    const A& a) { return cumsum(x.at(0), a.integer("axis"), a.flag("reverse")); }},
  };
}
template Replays<float> reduce_replays<float>();
template Replays<double> reduce_replays<double>();
}  // namespace detail

}  // namespace ad
