// Small helpers shared by the tests.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <type_traits>

#include "autodiff/autodiff.hpp"
#include "autodiff/boost_test.hpp"

namespace ad::test {

/// The whole text of a file of the source tree ("" when it cannot be read).
inline std::string source(const std::string& path) {
  std::ifstream in(std::string(AD_SOURCE_DIR) + "/" + path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

/// Uniform values in [lo, hi), from a fixed seed.
template <class T = double>
Array<T> uniform(const Shape& shape, double lo = -1.0, double hi = 1.0, std::uint64_t seed = 1) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  Array<T> a = Array<T>::from_shape(shape);
  for (auto& x : a) x = static_cast<T>(u(rng));
  return a;
}

/// Uniform values whose magnitude lies in [lo, hi), with random signs: kept away from the
/// kink at zero of relu, abs and friends.
template <class T = double>
Array<T> away_from_zero(const Shape& shape, double lo = 0.2, double hi = 1.0,
                        std::uint64_t seed = 1) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  Array<T> a = Array<T>::from_shape(shape);
  for (auto& x : a) x = static_cast<T>((rng() & 1 ? 1.0 : -1.0) * u(rng));
  return a;
}

/// Whole numbers in [0, count) of `shape` held as T (token ids for an embedding), from a seed.
template <class T = float>
Array<T> token_ids(const Shape& shape, std::size_t count, std::uint64_t seed = 3) {
  Array<T> a = uniform<T>(shape, 0.0, static_cast<double>(count), seed);
  for (auto& x : a) x = std::floor(x);
  return a;
}

/// An index array of the given shape holding `values` in row-major order.
inline Index index_of(std::vector<std::size_t> values, const Shape& shape) {
  Array<std::size_t> idx = Array<std::size_t>::from_shape(shape);
  std::copy(values.begin(), values.end(), idx.begin());
  return Index(std::move(idx));
}

/// Whether a and b have the same shape and |a - b| <= atol + rtol·|b| elementwise (NaN equal to
/// NaN). A plain loop: xt::allclose would broadcast silently (a (3) "equals" a (2,3)) and evaluates
/// a comparison expression, the kind xtensor 0.24.3 with XSIMD gets wrong under broadcasting.
template <class A, class B>
bool all_close(const A& a, const B& b, double rtol = 1e-5, double atol = 1e-8) {
  if (a.dimension() != b.dimension() ||
      !std::equal(a.shape().begin(), a.shape().end(), b.shape().begin()))
    return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double x = static_cast<double>(a.data()[i]), y = static_cast<double>(b.data()[i]);
    if (std::isnan(x) && std::isnan(y)) continue;
    if (!(std::abs(x - y) <= atol + rtol * std::abs(y))) return false;
  }
  return true;
}

/// A double leaf that requires grad.
inline Variable<double> leaf(Array<double> a) {
  return Variable<double>(std::move(a), true);
}

/// gradcheck with second order on.
inline GradcheckOptions second_order() {
  GradcheckOptions o;
  o.second_order = true;
  return o;
}

/// x³ as a custom op whose rule is 1% off in float only (right in double): a bug that only the
/// float path shows, for the checker's tests.
template <class T>
Variable<T> float_only_wrong_cube(const Variable<T>& x) {
  Array<T> y = x.value() * x.value() * x.value();
  return make_op<T>("float_cube", std::move(y), {x}, [](const BackwardContext<T>& c) -> Grads<T> {
    const T off = std::is_same_v<T, float> ? T(1.01) : T(1);
    return {c.grad * c.input(0) * c.input(0) * (3 * off)};
  });
}

}  // namespace ad::test
