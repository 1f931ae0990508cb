// Errors and the helpers that format shapes and indices into their messages.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

#include <xtensor/xstorage.hpp>

namespace ad {

/// Shape of an array: the extent of each axis (a 0-d array has an empty shape).
using Shape = xt::svector<std::size_t, 4>;

/// Whether two shapes are equal, in an inline loop: Shape's == calls memcmp, a call that costs
/// more than the few extents it compares. The checks made for every op or gradient use it.
inline bool same_shape(const Shape& a, const Shape& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i] != b[i]) return false;
  return true;
}

/// The one exception type of the library. Messages name the op (or file) and the shapes or
/// indices involved, e.g. "matmul: inner dimensions differ: a (3,4), b (5,2)".
class Error : public std::runtime_error {
 public:
  /// An error with its message.
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

/// "(3,4)"; "()" for a 0-d shape.
template <class S>
std::string shape_str(const S& shape) {
  std::string s = "(";
  bool first = true;
  for (auto d : shape) {
    if (!first) s += ",";
    s += std::to_string(d);
    first = false;
  }
  return s + ")";
}

namespace detail {

inline void append(std::ostringstream&) {}

template <class A, class... R>
void append(std::ostringstream& os, const A& a, const R&... rest) {
  os << a;
  append(os, rest...);
}

}  // namespace detail

/// Throws ad::Error whose message is the concatenation of the arguments.
template <class... A>
[[noreturn]] void fail(const A&... parts) {
  std::ostringstream os;
  detail::append(os, parts...);
  throw Error(os.str());
}

/// Number of elements of a shape (1 for a 0-d shape).
inline std::size_t shape_size(const Shape& s) {
  std::size_t n = 1;
  for (auto d : s) n *= d;
  return n;
}

/// The number of elements of a shape read from a file or other outside source, or nullopt when
/// it cannot be an array: when the product of its non-zero extents exceeds PTRDIFF_MAX (an array
/// with a zero extent is empty, but xtensor still multiplies the other extents into its signed
/// strides).
inline std::optional<std::size_t> checked_shape_size(const Shape& s) {
  std::size_t nonzero = 1;
  bool empty = false;
  for (auto d : s) {
    if (d == 0) {
      empty = true;
      continue;
    }
    if (__builtin_mul_overflow(nonzero, d, &nonzero) ||
        nonzero > static_cast<std::size_t>(PTRDIFF_MAX))
      return std::nullopt;
  }
  return empty ? 0 : nonzero;
}

/// Maps a possibly negative axis to [0, ndim); throws naming the op and shape when out of range.
inline std::size_t normalize_axis(long axis, const Shape& shape, const char* op) {
  long n = static_cast<long>(shape.size());
  if (axis < -n || axis >= n)
    fail(op, ": axis ", axis, " is out of range for shape ", shape_str(shape));
  return static_cast<std::size_t>(axis < 0 ? axis + n : axis);
}

}  // namespace ad
