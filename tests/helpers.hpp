// Small helpers shared by the tests.
#pragma once

#include <cstdint>
#include <random>

#include "autodiff/autodiff.hpp"
#include "autodiff/boost_test.hpp"

namespace ad::test {

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

/// An index array of the given shape holding `values` in row-major order.
inline Index index_of(std::vector<std::size_t> values, const Shape& shape) {
  Index idx = Index::from_shape(shape);
  std::copy(values.begin(), values.end(), idx.begin());
  return idx;
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

}  // namespace ad::test
