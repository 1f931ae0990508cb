// Binary arithmetic with NumPy broadcasting, selection, and the operators.
// Each input's gradient is summed back to its own shape.
#pragma once

#include <type_traits>

#include "autodiff/variable.hpp"

namespace ad {

/// A boolean mask for where(); it broadcasts like the other operands. Fill it with a plain loop
/// (or ad::kernels::binary with a predicate): xtensor 0.24.3 with XSIMD evaluates a comparison
/// into a bool array wrongly when an operand broadcasts over leading axes.
using Mask = Array<bool>;

/// a + b.
template <class T>
Variable<T> add(const Variable<T>& a, const Variable<T>& b);
/// a - b.
template <class T>
Variable<T> sub(const Variable<T>& a, const Variable<T>& b);
/// a * b (elementwise).
template <class T>
Variable<T> mul(const Variable<T>& a, const Variable<T>& b);
/// a / b (elementwise).
template <class T>
Variable<T> div(const Variable<T>& a, const Variable<T>& b);
/// -a.
template <class T>
Variable<T> neg(const Variable<T>& a);
/// a * scale + shift with constant scale and shift: what arithmetic with a plain number becomes.
template <class T>
Variable<T> affine(const Variable<T>& a, double scale, double shift);
/// a ** b elementwise. The gradient with respect to b is g·a^b·log(a), NaN for a < 0; at a = 0 it
/// is taken as 0 when b >= 0 (PyTorch's convention). The gradient with respect to a is 0 where
/// b = 0, even at a = 0.
template <class T>
Variable<T> pow(const Variable<T>& a, const Variable<T>& b);
/// a ** p for a constant exponent p; the gradient is 0 everywhere for p = 0.
template <class T>
Variable<T> pow(const Variable<T>& a, double p);
/// Elementwise a where mask is true, else b (mask, a and b broadcast together).
template <class T>
Variable<T> where(const Mask& mask, const Variable<T>& a, const Variable<T>& b);
/// Elementwise maximum; a NaN in either operand gives NaN (as NumPy and PyTorch). The gradient
/// goes to the operand picked: a where a > b or a is NaN, else b (so b on ties).
template <class T>
Variable<T> maximum(const Variable<T>& a, const Variable<T>& b);
/// Elementwise minimum; NaN and the gradient as for maximum (b on ties).
template <class T>
Variable<T> minimum(const Variable<T>& a, const Variable<T>& b);

// Operators. Arithmetic scalars mix with Variables: 2.0 * x + 1.

template <class S>
using if_scalar = std::enable_if_t<std::is_arithmetic_v<S>, int>;

template <class T>
Variable<T> operator+(const Variable<T>& a, const Variable<T>& b) {
  return add(a, b);
}
template <class T>
Variable<T> operator-(const Variable<T>& a, const Variable<T>& b) {
  return sub(a, b);
}
template <class T>
Variable<T> operator*(const Variable<T>& a, const Variable<T>& b) {
  return mul(a, b);
}
template <class T>
Variable<T> operator/(const Variable<T>& a, const Variable<T>& b) {
  return div(a, b);
}
template <class T>
Variable<T> operator-(const Variable<T>& a) {
  return neg(a);
}
template <class T, class S, if_scalar<S> = 0>
Variable<T> operator+(const Variable<T>& a, S s) {
  return affine(a, 1.0, static_cast<double>(s));
}
template <class T, class S, if_scalar<S> = 0>
Variable<T> operator+(S s, const Variable<T>& a) {
  return affine(a, 1.0, static_cast<double>(s));
}
template <class T, class S, if_scalar<S> = 0>
Variable<T> operator-(const Variable<T>& a, S s) {
  return affine(a, 1.0, -static_cast<double>(s));
}
template <class T, class S, if_scalar<S> = 0>
Variable<T> operator-(S s, const Variable<T>& a) {
  return affine(a, -1.0, static_cast<double>(s));
}
template <class T, class S, if_scalar<S> = 0>
Variable<T> operator*(const Variable<T>& a, S s) {
  return affine(a, static_cast<double>(s), 0.0);
}
template <class T, class S, if_scalar<S> = 0>
Variable<T> operator*(S s, const Variable<T>& a) {
  return affine(a, static_cast<double>(s), 0.0);
}
template <class T, class S, if_scalar<S> = 0>
Variable<T> operator/(const Variable<T>& a, S s) {
  return div(a, scalar<T>(static_cast<T>(s)));
}
template <class T, class S, if_scalar<S> = 0>
Variable<T> operator/(S s, const Variable<T>& a) {
  return div(scalar<T>(static_cast<T>(s)), a);
}
template <class T, class U>
Variable<T>& operator+=(Variable<T>& a, const U& b) {
  return a = a + b;
}
template <class T, class U>
Variable<T>& operator-=(Variable<T>& a, const U& b) {
  return a = a - b;
}
template <class T, class U>
Variable<T>& operator*=(Variable<T>& a, const U& b) {
  return a = a * b;
}
template <class T, class U>
Variable<T>& operator/=(Variable<T>& a, const U& b) {
  return a = a / b;
}

}  // namespace ad
