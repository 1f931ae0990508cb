// The float64 gradient checker's state and steps, shared by the files that implement it:
//   gradcheck.cpp          the run: the base evaluation, analytic Jacobians, .grad accumulation,
//                          the verdict, localisation on failure, second order
//   gradcheck_numeric.cpp  central differences and the numeric Jacobians; the comparison, with
//                          the kink analysis (one-sided slopes at smaller steps)
//   gradcheck_float.cpp    the float32 path against the float64 reference
//   gradcheck_report.cpp   the printed report
// Internal: included by those files only.
#pragma once

#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "autodiff/gradcheck.hpp"

namespace ad {
namespace detail {
namespace gradcheck_impl {

using V = Variable<double>;

/// The index of element `flat` of an array of `shape`.
Shape unravel(std::size_t flat, const Shape& shape);

/// A step along which the function is probed: one element of an input (full Jacobian) or a
/// random direction (fast mode).
struct Direction {
  std::size_t input = 0;    // position among the checked inputs
  std::size_t element = 0;  // the element, when along == nullptr
  const Array<double>* along = nullptr;
};

/// The one-sided and central differences of every output value along a direction at one step.
struct Differences {
  Array<double> forward, backward, central;
};

/// One gradcheck run: the float64 check of f, then the float32 path when there is one.
class Checker {
 public:
  Checker(const CheckedFunction& f, const std::vector<V>& inputs, const GradcheckOptions& o,
          const std::vector<std::string>& names, const ModuleNamer& modules);

  GradcheckReport run(const FloatFunction* f32, const std::vector<Variable<float>>* inputs32);

 private:
  // gradcheck.cpp
  Array<double> values(const V& out) const;
  Array<double> evaluate() const;
  void evaluate_base();
  Array<double> seed(std::size_t row) const;
  void analytic_jacobians();
  void check_backward();
  void summarize();
  void localise_ops(const FloatFunction* f32, const std::vector<Variable<float>>* inputs32);
  void check_second_order();

  // gradcheck_numeric.cpp
  /// What an entry that failed at step eps is, from the differences at eps/10 and eps/100.
  struct Verdict {
    bool kink = false;
    double numeric = 0;          // the central difference at the smallest step
    double left = 0, right = 0;  // one-sided slopes at the smallest step
  };
  Differences differences(const Direction& d, double h);
  void numeric_jacobians();
  Verdict refine(std::size_t k, std::size_t j, std::size_t row,
                 std::map<std::size_t, std::pair<Differences, Differences>>& cache);
  bool record_worst(InputCheck& c, double err, double tol, double a, double n, std::size_t j,
                    std::size_t row);
  void compare_jacobians();

  // gradcheck_float.cpp
  void check_float_path(const FloatFunction& f32, const std::vector<Variable<float>>& inputs);
  void compare_float(std::size_t k, const Array<double>& jac);

  /// The number of columns of input k's Jacobian: its elements, or one direction.
  std::size_t columns(std::size_t k) const { return o_.fast ? 1 : xs_[checked_[k]].size(); }

  double tolerance(double numeric) const { return o_.atol + o_.rtol * std::abs(numeric); }

  Direction direction(std::size_t k, std::size_t column) const {
    Direction d{k, column, nullptr};
    if (o_.fast) d.along = &directions_[k];
    return d;
  }

  const CheckedFunction& f_;
  GradcheckOptions o_;
  std::mt19937_64 rng_;
  GradcheckReport report_;
  std::vector<V> xs_, wrt_;
  std::vector<std::size_t> checked_;
  V base_output_;
  Shape out_shape_;
  bool projected_ = false;
  std::size_t rows_ = 0;
  Array<double> r_, base_;
  std::vector<Array<double>> directions_, analytic_, numeric_;
  std::vector<std::vector<char>> skipped_;  // entries skipped at kinks, per checked input
  std::vector<std::string> names_;
  ModuleNamer modules_;
};

}  // namespace gradcheck_impl
}  // namespace detail
}  // namespace ad
