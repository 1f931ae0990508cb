#include "autodiff/reduce.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "autodiff/kernels.hpp"
#include "autodiff/ops.hpp"

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
  return sum_to(a, Shape{});
}

template <class T>
Variable<T> sum(const Variable<T>& a, const std::vector<long>& axes, bool keepdims) {
  Shape keep = kernels::keepdims_shape(a.shape(), axes, "sum");
  return finish(sum_to(a, keep), a.shape(), axes, keepdims, "sum");
}

template <class T>
Variable<T> mean(const Variable<T>& a) {
  return affine(sum(a), 1.0 / static_cast<double>(a.size()), 0.0);
}

template <class T>
Variable<T> mean(const Variable<T>& a, const std::vector<long>& axes, bool keepdims) {
  Shape keep = kernels::keepdims_shape(a.shape(), axes, "mean");
  const double count = static_cast<double>(a.size()) / static_cast<double>(shape_size(keep));
  return affine(sum(a, axes, keepdims), 1.0 / count, 0.0);
}

template <class T>
Variable<T> max(const Variable<T>& a) {
  return max(a, {}, false);
}

template <class T>
Variable<T> max(const Variable<T>& a, const std::vector<long>& axes, bool keepdims) {
  Shape keep = kernels::keepdims_shape(a.shape(), axes, "max");
  if (a.size() == 0) fail("max: cannot reduce an empty tensor of shape ", shape_str(a.shape()));
  return finish(max_keep(a, keep), a.shape(), axes, keepdims, "max");
}

template <class T>
Variable<T> min(const Variable<T>& a) {
  return -max(-a);
}

template <class T>
Variable<T> min(const Variable<T>& a, const std::vector<long>& axes, bool keepdims) {
  return -max(-a, axes, keepdims);
}

template <class T>
Variable<T> log_sum_exp(const Variable<T>& a, const std::vector<long>& axes, bool keepdims) {
  Shape keep = kernels::keepdims_shape(a.shape(), axes, "log_sum_exp");
  // lse(a) = m + log(Σ exp(a - m)) for any constant m; the maximum keeps exp from overflowing.
  Array<T> m = kernels::max_to(a.value(), keep);
  for (auto& x : m)
    if (!std::isfinite(x)) x = 0;
  Variable<T> shift(std::move(m));
  Variable<T> kept = shift + log(sum_to(exp(a - shift), keep));
  return finish(kept, a.shape(), axes, keepdims, "log_sum_exp");
}

template <class T>
Variable<T> log_softmax(const Variable<T>& a, long axis) {
  const std::size_t ax = normalize_axis(axis, a.shape(), "log_softmax");
  kernels::AxisView v(a.shape(), ax);
  Array<T> out = Array<T>::from_shape(a.shape());
  const T* pa = a.value().data();
  T* po = out.data();
  for (std::size_t o = 0; o < v.outer; ++o)
    for (std::size_t i = 0; i < v.inner; ++i) {
      const T* x = pa + o * v.extent * v.inner + i;
      T* y = po + o * v.extent * v.inner + i;
      T m = -std::numeric_limits<T>::infinity();
      for (std::size_t j = 0; j < v.extent; ++j) m = std::max(m, x[j * v.inner]);
      if (!std::isfinite(m)) m = 0;
      T s = 0;
      for (std::size_t j = 0; j < v.extent; ++j) s += std::exp(x[j * v.inner] - m);
      const T lse = m + std::log(s);
      for (std::size_t j = 0; j < v.extent; ++j) y[j * v.inner] = x[j * v.inner] - lse;
    }
  return make_op<T>("log_softmax", std::move(out), {a},
                    [ax](const BackwardContext<T>& c) -> Grads<T> {
                      // d/da = g - softmax(a) * Σ_axis g, softmax(a) = exp(out)
                      return {c.grad - exp(c.output) * sum(c.grad, {long(ax)}, true)};
                    });
}

template <class T>
Variable<T> softmax(const Variable<T>& a, long axis) {
  return exp(log_softmax(a, axis));
}

template <class T>
Variable<T> squared_distance(const Variable<T>& a, const Variable<T>& b) {
  if (a.shape() != b.shape())
    fail("squared_distance: shapes ", shape_str(a.shape()), " and ", shape_str(b.shape()),
         " differ");
  const T* pa = a.value().data();
  const T* pb = b.value().data();
  T total = 0;
  for (std::size_t i = 0, n = a.size(); i < n; ++i) total += (pa[i] - pb[i]) * (pa[i] - pb[i]);
  return make_op<T>("squared_distance", Array<T>(total), {a, b},
                    [](const BackwardContext<T>& c) -> Grads<T> {
                      // d/da = 2g(a − b), d/db = −2g(a − b)
                      Variable<T> d;
                      if (!is_grad_enabled()) {
                        const T g2 = 2 * c.grad.item();
                        d = Variable<T>(kernels::binary(
                            c.input(0).value(), c.input(1).value(),
                            [g2](T x, T y) { return g2 * (x - y); }, "squared_distance"));
                      } else {
                        d = (c.input(0) - c.input(1)) * (c.grad * 2.0);
                      }
                      return {c.needs(0) ? d : Variable<T>(), c.needs(1) ? -d : Variable<T>()};
                    });
}

template <class T>
Variable<T> softmax_cross_entropy(const Variable<T>& logits, const std::vector<std::size_t>& labels,
                                  double label_smoothing) {
  const Shape& s = logits.shape();
  if (s.size() != 2) fail("softmax_cross_entropy: logits must be (N, K), got ", shape_str(s));
  if (labels.size() != s[0])
    fail("softmax_cross_entropy: ", labels.size(), " labels for logits ", shape_str(s));
  if (!(label_smoothing >= 0 && label_smoothing <= 1))
    fail("softmax_cross_entropy: label smoothing ", label_smoothing, " is not in [0, 1]");
  const std::size_t n = s[0], k = s[1];
  for (std::size_t i = 0; i < n; ++i)
    if (labels[i] >= k)
      fail("softmax_cross_entropy: label ", labels[i], " of row ", i, " is out of range for ", k,
           " classes (logits ", shape_str(s), ")");
  const T on = static_cast<T>(1 - label_smoothing + label_smoothing / k);
  const T off = static_cast<T>(label_smoothing / k);
  // The target distribution t, a constant.
  auto target = [=](std::size_t i, std::size_t j) { return j == labels[i] ? on : off; };
  Array<T> loss = Array<T>::from_shape({n});
  const T* z = logits.value().data();
  for (std::size_t i = 0; i < n; ++i) {
    const T* row = z + i * k;
    T m = *std::max_element(row, row + k);
    if (!std::isfinite(m)) m = 0;
    T sum = 0, dot = 0;
    for (std::size_t j = 0; j < k; ++j) {
      sum += std::exp(row[j] - m);
      dot += target(i, j) * row[j];
    }
    loss(i) = m + std::log(sum) - dot;
  }
  return make_op<T>(
      "softmax_cross_entropy", std::move(loss), {logits},
      [target, n, k](const BackwardContext<T>& c) -> Grads<T> {
        // d/dz_ij = g_i * (softmax(z)_ij - t_ij)
        const auto& z = c.input(0);
        Array<T> t = Array<T>::from_shape({n, k});
        for (std::size_t i = 0; i < n; ++i)
          for (std::size_t j = 0; j < k; ++j) t(i, j) = target(i, j);
        if (is_grad_enabled())
          return {reshape(c.grad, Shape{n, 1}) * (softmax(z, 1) - Variable<T>(std::move(t)))};
        const T* pz = z.value().data();
        const T* g = c.grad.value().data();
        for (std::size_t i = 0; i < n; ++i) {
          const T* row = pz + i * k;
          T* d = t.data() + i * k;
          T m = *std::max_element(row, row + k);
          if (!std::isfinite(m)) m = 0;
          T sum = 0;
          for (std::size_t j = 0; j < k; ++j) sum += std::exp(row[j] - m);
          for (std::size_t j = 0; j < k; ++j) d[j] = g[i] * (std::exp(row[j] - m) / sum - d[j]);
        }
        return {Variable<T>(std::move(t))};
      });
}

#define AD_INSTANTIATE(T)                                                                         \
  template Variable<T> sum(const Variable<T>&);                                                   \
  template Variable<T> sum(const Variable<T>&, const std::vector<long>&, bool);                   \
  template Variable<T> mean(const Variable<T>&);                                                  \
  template Variable<T> mean(const Variable<T>&, const std::vector<long>&, bool);                  \
  template Variable<T> max(const Variable<T>&);                                                   \
  template Variable<T> max(const Variable<T>&, const std::vector<long>&, bool);                   \
  template Variable<T> min(const Variable<T>&);                                                   \
  template Variable<T> min(const Variable<T>&, const std::vector<long>&, bool);                   \
  template Variable<T> log_sum_exp(const Variable<T>&, const std::vector<long>&, bool);           \
  template Variable<T> log_softmax(const Variable<T>&, long);                                     \
  template Variable<T> softmax(const Variable<T>&, long);                                         \
  template Variable<T> squared_distance(const Variable<T>&, const Variable<T>&);                  \
  template Variable<T> softmax_cross_entropy(const Variable<T>&, const std::vector<std::size_t>&, \
                                             double);

AD_INSTANTIATE(float)
AD_INSTANTIATE(double)
#undef AD_INSTANTIATE

}  // namespace ad
