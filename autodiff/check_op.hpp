// Property-based checks of an op (ad::check_op): many drawn cases instead of one point, and the
// failing case shrunk to a minimal one, printed as C++ that reproduces it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "autodiff/gradcheck.hpp"

namespace ad {

/// How check_op draws one input of the op.
struct InputSpec {
  double lo = -2;  ///< values are drawn from [lo, hi] (near 0, near the ends, near the kinks, and
  double hi = 2;   ///< anywhere between)
  /// Points where the op is not differentiable (0 for relu, abs): values are kept at least
  /// `margin` away from them, and drawn near them often.
  std::vector<double> kinks;
  double margin = 1e-2;  ///< (see kinks)
  /// The shape, when the op needs one (a matmul's operands); unset, shapes are drawn (see
  /// CheckOpOptions::broadcast).
  std::optional<Shape> shape;
  bool requires_grad = true;  ///< whether its gradient is checked
};

/// Options of check_op.
struct CheckOpOptions {
  std::size_t cases = 60;  ///< cases drawn
  std::uint64_t seed = 0;  ///< of the draws
  /// Drawn shapes: of rank 0 to max_rank, extents 1 to max_extent (0 sometimes when `empty`).
  std::size_t max_rank = 3;
  std::size_t max_extent = 4;  ///< (see max_rank)
  /// Drawn shapes broadcast against each other (leading axes dropped, axes of 1); off, every
  /// input with a drawn shape gets the same one.
  bool broadcast = true;
  bool empty = true;    ///< empty tensors among the drawn shapes (values, NaN and errors checked)
  bool float32 = true;  ///< half the cases run in float (against the float64 shadow)
  bool second_order = false;  ///< also check the gradient of the gradient
  bool nan = true;            ///< a NaN in an input the output depends on reaches the output
  bool repeated = true;       ///< the same Variable passed twice (where two inputs share a shape)
  /// One large case (about 100,000 elements) run on 1 and 2 threads gives the same bits.
  bool threads = true;
  /// Tolerances of the gradient checks (check_op sets max_rows and turns the localisation off).
  GradcheckOptions gradcheck;
  std::size_t max_shrink_steps = 400;  ///< successful shrinking steps at most
};

/// What check_op found.
struct CheckOpReport {
  bool passed = true;     ///< no property failed
  std::size_t cases = 0;  ///< cases run
  /// The property that failed: "gradient", "float32", "second order", "backward" (accumulation
  /// or repetition), "repeated input", "NaN propagation", "threads", or "exception".
  std::string property;
  /// The minimal failing case: each input's values (in float when `float32`).
  std::vector<Array<double>> inputs;
  bool float32 = false;               ///< the case runs in float
  std::vector<std::size_t> same;      ///< "repeated input": the two inputs given one Variable
  std::size_t nan_input = 0;          ///< "NaN propagation": the input whose element 0 is NaN
  std::size_t original_elements = 0;  ///< elements of the case as first found
  std::size_t shrink_steps = 0;       ///< shrinking steps taken
  std::string detail;                 ///< what the failing check said (a gradcheck report, ...)
  std::string snippet;                ///< C++ that reproduces the minimal case

  /// Whether every property held.
  explicit operator bool() const { return passed; }
  /// The report as printed by operator<<.
  std::string str() const;
};

std::ostream& operator<<(std::ostream& os, const CheckOpReport& report);

namespace detail {
/// check_op's driver, on f in double and in float.
CheckOpReport run_check_op(const CheckedFunction& f64, const FloatFunction& f32,
                           const std::vector<InputSpec>& specs, const CheckOpOptions& options);
}  // namespace detail

/// Checks op f (generic over T: it is called with Variable<double> and Variable<float>
/// arguments, one per spec, or one std::vector) on `options.cases` drawn cases: values over each
/// input's domain (near zero, large, near kinks but not on them), shapes that broadcast (leading
/// axes, size-1 axes), 0-d and empty tensors, half of them in float. On each: the gradient against
/// the central difference (gradcheck: float64, and the float path against it; accumulation and
/// repetition; second order when asked), the same Variable passed for two inputs, NaN
/// propagation; and one large case on 1 and 2 threads. The first failure is shrunk (fewer axes,
/// smaller extents, axes of 1, simpler values) while the same property still fails, and
/// reported with a C++ snippet that reproduces it.
template <class F>
CheckOpReport check_op(F&& f, const std::vector<InputSpec>& specs,
                       const CheckOpOptions& options = {}) {
  detail::CheckedFunction f64 = [&f](const std::vector<Variable<double>>& args) {
    return detail::call_with(f, args);
  };
  detail::FloatFunction f32 = [&f](const std::vector<Variable<float>>& args) {
    return detail::call_with(f, args);
  };
  return detail::run_check_op(f64, f32, specs, options);
}

}  // namespace ad
