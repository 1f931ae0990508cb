#include "autodiff/kernels.hpp"

#include <cstdlib>

#include <cblas.h>
#include <algorithm>
#include <cmath>
#include <limits>

#include "autodiff/parallel.hpp"
#include "autodiff/threads.hpp"

namespace ad::kernels {

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const std::size_t nd = std::max(a.size(), b.size());
  Shape out(nd, 1);
  for (std::size_t i = 0; i < nd; ++i) {
    std::size_t da = i < nd - a.size() ? 1 : a[i - (nd - a.size())];
    std::size_t db = i < nd - b.size() ? 1 : b[i - (nd - b.size())];
    if (da != db && da != 1 && db != 1)
      fail(op, ": shapes ", shape_str(a), " and ", shape_str(b), " do not broadcast");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

Strides contiguous_strides(const Shape& shape) {
  Strides s(shape.size(), 0);
  std::ptrdiff_t acc = 1;
  for (std::size_t d = shape.size(); d-- > 0;) {
    s[d] = acc;
    acc *= static_cast<std::ptrdiff_t>(shape[d]);
  }
  return s;
}

Strides broadcast_strides(const Shape& in, const Shape& out) {
  Strides s(out.size(), 0);
  Strides c = contiguous_strides(in);
  const std::size_t lead = out.size() - in.size();
  for (std::size_t d = 0; d < in.size(); ++d) s[lead + d] = in[d] == 1 ? 0 : c[d];
  return s;
}

namespace {

void check_reducible(const Shape& from, const Shape& to, const char* op) {
  bool ok = to.size() <= from.size();
  for (std::size_t d = 0; ok && d < to.size(); ++d) {
    std::size_t f = from[from.size() - to.size() + d];
    ok = to[d] == f || to[d] == 1;
  }
  if (!ok) fail(op, ": shape ", shape_str(to), " does not broadcast to ", shape_str(from));
}

}  // namespace

template <class T>
Array<T> sum_to(const Array<T>& a, const Shape& shape) {
  check_reducible(a.shape(), shape, "sum_to");
  if (a.shape() == shape) return a;
  Array<T> out = xt::zeros<T>(shape);
  T* po = out.data();
  const T* pa = a.data();
  std::array<Strides, 2> st{broadcast_strides(shape, a.shape()), contiguous_strides(a.shape())};
  for_each_run(a.shape(), st, [&](const auto& off, std::size_t n, const auto& step) {
    T* o = po + off[0];
    const T* x = pa + off[1];
    if (step[0] == 0) {
      T acc = 0;
      for (std::size_t i = 0; i < n; ++i) acc += x[i * step[1]];
      *o += acc;
    } else if (step[0] == 1 && step[1] == 1) {
      for (std::size_t i = 0; i < n; ++i) o[i] += x[i];
    } else {
      for (std::size_t i = 0; i < n; ++i) o[i * step[0]] += x[i * step[1]];
    }
  });
  return out;
}

template <class T>
Array<T> broadcast_to(const Array<T>& a, const Shape& shape) {
  check_reducible(shape, a.shape(), "broadcast_to");
  if (a.shape() == shape) return a;
  Array<T> out = Array<T>::from_shape(shape);
  T* po = out.data();
  const T* pa = a.data();
  std::array<Strides, 2> st{contiguous_strides(shape), broadcast_strides(a.shape(), shape)};
  for_each_run(shape, st, [&](const auto& off, std::size_t n, const auto& step) {
    T* o = po + off[0];
    const T* x = pa + off[1];
    if (step[1] == 0) {
      std::fill(o, o + n, *x);
    } else {
      for (std::size_t i = 0; i < n; ++i) o[i] = x[i * step[1]];
    }
  });
  return out;
}

template <class T>
Array<T> max_to(const Array<T>& a, const Shape& shape) {
  check_reducible(a.shape(), shape, "max");
  Array<T> out = Array<T>::from_shape(shape);
  std::fill(out.begin(), out.end(), -std::numeric_limits<T>::infinity());
  T* po = out.data();
  const T* pa = a.data();
  std::array<Strides, 2> st{broadcast_strides(shape, a.shape()), contiguous_strides(a.shape())};
  // NaN propagates: once a slot holds NaN, `v > o` is false for every later v.
  for_each_run(a.shape(), st, [&](const auto& off, std::size_t n, const auto& step) {
    for (std::size_t i = 0; i < n; ++i) {
      T& o = po[off[0] + static_cast<std::ptrdiff_t>(i) * step[0]];
      T v = pa[off[1] + static_cast<std::ptrdiff_t>(i) * step[1]];
      if (v > o || std::isnan(v)) o = v;
    }
  });
  return out;
}

Shape keepdims_shape(const Shape& shape, const std::vector<long>& axes, const char* op) {
  Shape out = shape;
  if (axes.empty()) {
    std::fill(out.begin(), out.end(), 1);
    return out;
  }
  std::vector<bool> seen(shape.size(), false);
  for (long axis : axes) {
    std::size_t d = normalize_axis(axis, shape, op);
    if (seen[d]) fail(op, ": axis ", axis, " is repeated (shape ", shape_str(shape), ")");
    seen[d] = true;
    out[d] = 1;
  }
  return out;
}

Shape dropdims_shape(const Shape& shape, const std::vector<long>& axes, const char* op) {
  Shape keep = keepdims_shape(shape, axes, op);
  if (axes.empty()) return Shape{};
  std::vector<bool> drop(shape.size(), false);
  for (long axis : axes) drop[normalize_axis(axis, shape, op)] = true;
  Shape out;
  for (std::size_t d = 0; d < shape.size(); ++d)
    if (!drop[d]) out.push_back(keep[d]);
  return out;
}

void gemm(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, float alpha,
          const float* a, std::size_t lda, const float* b, std::size_t ldb, float beta, float* c,
          std::size_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a,
              static_cast<int>(lda), b, static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
}

void gemm(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, double alpha,
          const double* a, std::size_t lda, const double* b, std::size_t ldb, double beta,
          double* c, std::size_t ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a,
              static_cast<int>(lda), b, static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
}

}  // namespace ad::kernels

namespace ad {

void set_num_threads(int threads) {
  if (threads < 1) fail("set_num_threads: ", threads, " threads; at least 1 is needed");
  openblas_set_num_threads(threads);
  detail::set_pool_threads(threads);
}

int num_threads() {
  return detail::pool_threads();
}

int default_num_threads(int fallback) {
  const char* env = std::getenv("AD_NUM_THREADS");
  const int n = env ? std::atoi(env) : 0;
  return n > 0 ? n : fallback;
}

}  // namespace ad

namespace ad::kernels {

template Array<float> sum_to(const Array<float>&, const Shape&);
template Array<double> sum_to(const Array<double>&, const Shape&);
template Array<float> broadcast_to(const Array<float>&, const Shape&);
template Array<double> broadcast_to(const Array<double>&, const Shape&);
template Array<float> max_to(const Array<float>&, const Shape&);
template Array<double> max_to(const Array<double>&, const Shape&);

}  // namespace ad::kernels
