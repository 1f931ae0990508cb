// Integer indices: class labels, positions along an axis, gather indices. One type for all of them,
// validated once.
#pragma once

#include <cstddef>
#include <initializer_list>
#include <string>
#include <vector>

#include "autodiff/array.hpp"

namespace ad {

/// Indices of any shape (a (N) vector of labels, the (N, 1) positions of gather, ...). Their
/// largest value is found once, when the Index is made: an op then checks all of them against an
/// axis with one comparison (check_below), and only on failure looks for the first index out of
/// range to name it.
class Index {
 public:
  Index() = default;
  /// 1-D indices.
  Index(std::vector<std::size_t> values);  ///< NOLINT: implicit, so that a vector can be passed
  /// 1-D indices from a list.
  Index(std::initializer_list<std::size_t> values);
  /// Indices of any shape.
  Index(Array<std::size_t> values);  ///< NOLINT: implicit, as above

  /// From numbers held as T (labels of a float dataset): each must be a whole number >= 0, else
  /// ad::Error names `what` and the flat position.
  template <class T>
  static Index from_values(const Array<T>& values, const std::string& what);

  /// The indices as an array.
  const Array<std::size_t>& values() const { return values_; }
  /// Their shape.
  Shape shape() const { return Shape(values_.shape().begin(), values_.shape().end()); }
  /// How many there are.
  std::size_t size() const { return values_.size(); }
  /// The i-th index (row-major).
  std::size_t operator[](std::size_t i) const { return values_.data()[i]; }
  /// The indices in row-major order.
  const std::size_t* data() const { return values_.data(); }
  /// The largest index (0 when there are none).
  std::size_t max() const { return max_; }

  /// Throws ad::Error unless every index is below `extent`: "<context>: index 7 (position 3) is
  /// out of range for <what>", or with labels "<context>: label 7 at row 3 is out of range for
  /// <what>".
  void check_below(std::size_t extent, const std::string& context, const std::string& what,
                   bool labels = false) const;

 private:
  void find_max();
  Array<std::size_t> values_ = Array<std::size_t>::from_shape({0});
  std::size_t max_ = 0;
};

}  // namespace ad
