// What the checkers share (gradcheck.cpp, localise.cpp, check_op.cpp): random directions, their
// dot products, and bitwise comparison of arrays.
#pragma once

#include <cstring>
#include <random>

#include "autodiff/array.hpp"

namespace ad::detail {

/// Standard normal values of `shape`, from `rng`.
inline Array<double> random_normal(const Shape& shape, std::mt19937_64& rng) {
  std::normal_distribution<double> normal;
  Array<double> a = Array<double>::from_shape(shape);
  for (auto& x : a) x = normal(rng);
  return a;
}

/// Σ a_i·b_i in double, over arrays of the same size (of any element types).
template <class A, class B>
double dot(const A& a, const B& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    s += static_cast<double>(a.data()[i]) * static_cast<double>(b.data()[i]);
  return s;
}

/// Whether a and b have the same shape and the same bits (NaN equal to the same NaN).
template <class T>
bool same_bits(const Array<T>& a, const Array<T>& b) {
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

}  // namespace ad::detail
