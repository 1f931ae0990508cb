// The numeric side of the float64 check: central differences, the numeric Jacobians, and their
// comparison with the analytic ones, where an entry the first step does not confirm is probed at
// smaller steps to tell curvature from a kink.
#include <algorithm>
#include <cmath>

#include "autodiff/gradcheck_checker.hpp"

namespace ad {
namespace detail {
namespace gradcheck_impl {

/// The differences of the output values along `d` at step h; x is restored exactly after.
Differences Checker::differences(const Direction& d, double h) {
  Array<double>& x = xs_[checked_[d.input]].impl().value;
  Array<double> up, down;
  double step_up, step_down;
  if (d.along) {
    const Array<double> original = x;
    x = original + h * *d.along;
    up = evaluate();
    x = original - h * *d.along;
    down = evaluate();
    x = original;
    step_up = step_down = h;
  } else {
    double& v = x.data()[d.element];
    const double original = v, up_x = original + h, down_x = original - h;
    v = up_x;
    up = evaluate();
    v = down_x;
    down = evaluate();
    v = original;
    step_up = up_x - original;
    step_down = original - down_x;
  }
  Differences r{Array<double>::from_shape(up.shape()), Array<double>::from_shape(up.shape()),
                Array<double>::from_shape(up.shape())};
  for (std::size_t i = 0; i < up.size(); ++i) {
    r.forward.data()[i] = (up.data()[i] - base_.data()[i]) / step_up;
    r.backward.data()[i] = (base_.data()[i] - down.data()[i]) / step_down;
    r.central.data()[i] = (up.data()[i] - down.data()[i]) / (step_up + step_down);
  }
  return r;
}

/// Numeric Jacobians, one pair of evaluations per column; the one-sided differences are kept
/// to tell kinks from curvature.
void Checker::numeric_jacobians() {
  for (std::size_t k = 0; k < checked_.size(); ++k) {
    numeric_.push_back(Array<double>::from_shape({rows_, columns(k)}));
    for (std::size_t j = 0; j < columns(k); ++j) {
      Differences d = differences(direction(k, j), o_.eps);
      for (std::size_t row = 0; row < rows_; ++row) numeric_[k](row, j) = d.central.data()[row];
    }
  }
}

Checker::Verdict Checker::refine(
    std::size_t k, std::size_t j, std::size_t row,
    std::map<std::size_t, std::pair<Differences, Differences>>& cache) {
  auto it = cache.find(j);
  if (it == cache.end()) {
    const Direction d = direction(k, j);
    it = cache.emplace(j, std::make_pair(differences(d, o_.eps / 10), differences(d, o_.eps / 100)))
             .first;
  }
  const Differences& d10 = it->second.first;
  const Differences& d100 = it->second.second;
  const double gap10 = std::abs(d10.forward.data()[row] - d10.backward.data()[row]);
  const double gap100 = std::abs(d100.forward.data()[row] - d100.backward.data()[row]);
  Verdict v;
  v.numeric = d100.central.data()[row];
  v.left = d100.backward.data()[row];
  v.right = d100.forward.data()[row];
  // Smooth: the one-sided slopes meet as the step shrinks (their gap is f''·h, a tenth at a
  // tenth of the step). At a kink their gap stays (the two one-sided derivatives differ).
  const bool smooth = gap100 <= tolerance(v.numeric) || gap100 <= 0.5 * gap10;
  v.kink = !smooth;
  return v;
}

/// Keeps the entry as the input's worst when its error is the largest relative to its
/// tolerance so far; returns whether it did.
bool Checker::record_worst(InputCheck& c, double err, double tol, double a, double n, std::size_t j,
                           std::size_t row) {
  if (c.has_worst && err / tol <= c.worst_ratio) return false;
  c.worst_ratio = err / tol;
  c.has_worst = true;
  c.worst_input = o_.fast ? Shape{} : unravel(j, c.shape);
  c.worst_output = projected_ ? Shape{} : unravel(row, out_shape_);
  c.analytic = a;
  c.numeric = n;
  c.tolerance = tol;
  c.worst_at_kink = false;
  return true;
}

/// Compares every entry; entries the first step does not confirm are refined.
void Checker::compare_jacobians() {
  for (std::size_t k = 0; k < checked_.size(); ++k) {
    InputCheck& c = report_.inputs[checked_[k]];
    skipped_.emplace_back(rows_ * columns(k), 0);
    std::map<std::size_t, std::pair<Differences, Differences>> cache;
    for (std::size_t j = 0; j < columns(k); ++j)
      for (std::size_t row = 0; row < rows_; ++row) {
        const double a = analytic_[k](row, j);
        double n = numeric_[k](row, j);
        double err = std::abs(a - n), tol = tolerance(n);
        if (!(err <= tol)) {
          Verdict v = refine(k, j, row, cache);
          if (v.kink) {
            const double lo = std::min(v.left, v.right), hi = std::max(v.left, v.right);
            const double slack = tolerance(std::max(std::abs(lo), std::abs(hi)));
            if (a >= lo - slack && a <= hi + slack) {  // a subgradient: nothing to compare
              if (c.kinks++ == 0) c.first_kink = o_.fast ? Shape{} : unravel(j, c.shape);
              skipped_[k][row * columns(k) + j] = 1;
              continue;
            }
            // Not between the slopes: wrong at the kink too.
            ++c.compared;
            ++c.failures;
            c.passed = false;
            const double dist = a < lo ? lo - a : a - hi;
            c.max_abs_error = std::max(c.max_abs_error, dist);
            c.max_rel_error = std::max(c.max_rel_error, dist / std::max(std::abs(hi), o_.atol));
            if (record_worst(c, dist, slack, a, v.numeric, j, row)) {
              c.worst_at_kink = true;
              c.left_slope = v.left;
              c.right_slope = v.right;
            }
            continue;
          }
          ++c.refined;
          n = v.numeric;
          numeric_[k](row, j) = n;
          err = std::abs(a - n);
          tol = tolerance(n);
        }
        ++c.compared;
        if (!(err <= tol)) {
          ++c.failures;
          c.passed = false;
        }
        c.max_abs_error = std::max(c.max_abs_error, err);
        c.max_rel_error = std::max(c.max_rel_error, err / std::max(std::abs(n), o_.atol));
        record_worst(c, err, tol, a, n, j, row);
      }
  }
}

}  // namespace gradcheck_impl
}  // namespace detail
}  // namespace ad
