// The float32 path of a check: the function run in float with its float gradients, compared with
// the float64 output and with the float64 analytic and numeric Jacobians.
#include <algorithm>
#include <cmath>

#include "autodiff/checking.hpp"
#include "autodiff/gradcheck_checker.hpp"
#include "autodiff/ops.hpp"

namespace ad {
namespace detail {
namespace gradcheck_impl {

namespace {

double max_abs(const Array<double>& a) {
  double m = 0;
  for (double x : a) m = std::max(m, std::abs(x));
  return m;
}

template <class T>
Array<T> cast(const Array<double>& a) {
  Array<T> out = Array<T>::from_shape(a.shape());
  std::copy(a.begin(), a.end(), out.begin());
  return out;
}

}  // namespace

/// The function run in float32 with its float32 gradients, against the float64 reference:
/// the output, then every Jacobian entry against the float64 analytic and numeric values.
void Checker::check_float_path(const FloatFunction& f32,
                               const std::vector<Variable<float>>& inputs) {
  report_.float32_checked = true;
  std::vector<Variable<float>> xf;
  for (const auto& in : inputs) xf.emplace_back(Array<float>(in.value()), in.requires_grad());
  Variable<float> y = f32(xf);
  if (y.shape() != out_shape_)
    fail("gradcheck: f returned shape ", shape_str(y.shape()), " in float32 and ",
         shape_str(out_shape_), " in float64");
  const Array<double>& y64 = base_output_.value();
  const double out_scale = std::max(max_abs(y64), 1e-30);
  report_.float32_output_tolerance = o_.float_atol * out_scale;
  bool output_ok = true;
  for (std::size_t i = 0; i < y64.size(); ++i) {
    const double ref = y64.data()[i], got = y.value().data()[i];
    const double err = std::abs(got - ref);
    if (!(err <= o_.float_atol * out_scale + o_.float_rtol * std::abs(ref))) output_ok = false;
    report_.float32_output_error = std::max(report_.float32_output_error, err);
  }
  if (!output_ok)
    report_.problems.push_back(
        "the float32 output differs from the float64 output beyond the "
        "float tolerance");
  if (!y.requires_grad()) return;
  std::vector<Variable<float>> wrt;
  for (auto i : checked_) wrt.push_back(xf[i]);
  std::vector<Array<double>> jac;
  for (std::size_t k = 0; k < checked_.size(); ++k)
    jac.push_back(xt::zeros<double>({rows_, columns(k)}));
  for (std::size_t row = 0; row < rows_; ++row) {
    std::vector<Variable<float>> g =
        grad(y, wrt, Variable<float>(cast<float>(seed(row))), BackwardOptions{true, false});
    for (std::size_t k = 0; k < checked_.size(); ++k) {
      if (o_.fast)
        jac[k](row, 0) = dot(g[k].value(), directions_[k]);
      else
        std::copy(g[k].value().begin(), g[k].value().end(), jac[k].data() + row * columns(k));
    }
  }
  for (std::size_t k = 0; k < checked_.size(); ++k) compare_float(k, jac[k]);
}

void Checker::compare_float(std::size_t k, const Array<double>& jac) {
  FloatCheck& fc = report_.inputs[checked_[k]].float32;
  fc.checked = true;
  const double scale = std::max(max_abs(analytic_[k]), 1e-30);
  for (std::size_t j = 0; j < columns(k); ++j)
    for (std::size_t row = 0; row < rows_; ++row) {
      if (skipped_[k][row * columns(k) + j]) continue;
      const double got = jac(row, j), a = analytic_[k](row, j), n = numeric_[k](row, j);
      const double tol = o_.float_atol * scale + o_.float_rtol * std::abs(a);
      const double ea = std::abs(got - a), en = std::abs(got - n);
      ++fc.compared;
      fc.max_error_vs_analytic = std::max(fc.max_error_vs_analytic, ea);
      fc.max_error_vs_numeric = std::max(fc.max_error_vs_numeric, en);
      // Against the numeric value, the numeric value's own error (the float64 check's
      // tolerance) is allowed too: where the Jacobian is zero, the central difference is
      // rounding noise that no float path can match.
      const bool ok =
          ea <= tol && en <= o_.float_atol * scale + o_.float_rtol * std::abs(n) + tolerance(n);
      if (!ok) {
        ++fc.failures;
        fc.passed = false;
      }
      const double ratio = std::max(ea, en) / tol;
      if (!fc.has_worst ||
          ratio > std::max(std::abs(fc.value - fc.analytic), std::abs(fc.value - fc.numeric)) /
                      fc.tolerance) {
        fc.has_worst = true;
        fc.worst_input = o_.fast ? Shape{} : unravel(j, report_.inputs[checked_[k]].shape);
        fc.worst_output = projected_ ? Shape{} : unravel(row, out_shape_);
        fc.value = got;
        fc.analytic = a;
        fc.numeric = n;
        fc.tolerance = tol;
      }
    }
}

}  // namespace gradcheck_impl
}  // namespace detail
}  // namespace ad
