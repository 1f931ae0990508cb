// Parameters laid out in one contiguous buffer, and their gradients in a matching one: each
// parameter's value and .grad are views of their slices. An optimizer then updates them in one
// vectorised pass, and an all-reduce averages the gradients as a few large buffers.
#pragma once

#include <memory>
#include <vector>

#include "autodiff/variable.hpp"

namespace ad {

/// Parameters in one contiguous buffer and their gradients in a matching one (see the top of this
/// file).
template <class T>
class FlatParameters {
 public:
  /// Moves the values of `params` (leaves that require grad, each listed once) into one buffer,
  /// in order, and gives each a .grad in a second buffer (its current gradient, or zeros). From
  /// then on a parameter always has a gradient: zero_grad() zeroes it in place.
  explicit FlatParameters(std::vector<Variable<T>> params);

  /// The parameters, in buffer order.
  const std::vector<Variable<T>>& parameters() const { return params_; }
  /// Elements in all (of either buffer).
  std::size_t size() const { return size_; }
  /// The parameter buffer.
  T* values() const { return values_; }
  /// The gradient buffer.
  T* grads() const { return grads_; }
  /// Where parameter i starts in either buffer.
  std::size_t offset(std::size_t i) const { return offsets_[i]; }

  /// Whether every value and gradient is still its view. Assigning a new array to a parameter's
  /// value (rather than writing into it), or a recorded (create_graph) gradient, replaces it;
  /// attach() copies such ones back into their slices and makes them views again.
  bool attached() const;
  /// Puts back every value and gradient that is no longer its view (copying it in).
  void attach();
  /// Zeroes every gradient (one pass over the buffer; the views stay).
  void zero_grad();

 private:
  std::shared_ptr<memory::Arena> arena_;  ///< values, then gradients
  std::vector<Variable<T>> params_;
  std::vector<std::size_t> offsets_;
  std::size_t size_ = 0;
  T* values_ = nullptr;
  T* grads_ = nullptr;
};

/// An array of `shape` whose memory is `at` (inside an Arena): a view that freeing leaves alone.
template <class T>
Array<T> placed_array(T* at, const Shape& shape) {
  if (shape_size(shape) == 0) return Array<T>::from_shape(shape);
  memory::Placement place(at, shape_size(shape) * sizeof(T));
  return Array<T>::from_shape(shape);
}

}  // namespace ad
