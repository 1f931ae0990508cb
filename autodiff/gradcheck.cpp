#include "autodiff/gradcheck.hpp"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <map>
#include <random>
#include <sstream>

#include "autodiff/checking.hpp"
#include "autodiff/ops.hpp"

namespace ad {
namespace detail {

namespace {

using V = Variable<double>;

Shape unravel(std::size_t flat, const Shape& shape) {
  Shape idx(shape.size(), 0);
  for (std::size_t d = shape.size(); d-- > 0;) {
    idx[d] = flat % shape[d];
    flat /= shape[d];
  }
  return idx;
}

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

double max_abs_diff(const Array<double>& a, const Array<double>& b, double scale_b,
                    const GradcheckOptions& o, bool& ok) {
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double expected = scale_b * b.data()[i];
    const double err = std::abs(a.data()[i] - expected);
    if (!(err <= o.atol + o.rtol * std::abs(expected))) ok = false;
    worst = std::max(worst, err);
  }
  return worst;
}

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
          const std::vector<std::string>& names, const ModuleNamer& modules)
      : f_(f), o_(o), rng_(o.seed), names_(names), modules_(modules) {
    report_.options = o;
    // Private leaves, so that probing never touches the caller's tensors.
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      xs_.emplace_back(inputs[i].value(), inputs[i].requires_grad());
      InputCheck c;
      c.input = i;
      if (i < names.size()) c.name = names[i];
      c.shape = inputs[i].shape();
      c.checked = inputs[i].requires_grad();
      report_.inputs.push_back(c);
      if (c.checked) checked_.push_back(i);
    }
  }

  GradcheckReport run(const FloatFunction* f32, const std::vector<Variable<float>>* inputs32) {
    if (!(o_.eps > 0)) fail("gradcheck: eps must be positive, got ", o_.eps);
    if (checked_.empty()) {
      report_.passed = false;
      report_.problems.push_back("no input requires grad: nothing was checked");
      return report_;
    }
    evaluate_base();
    analytic_jacobians();
    numeric_jacobians();
    compare_jacobians();
    if (o_.check_backward && base_output_.requires_grad()) check_backward();
    if (f32) check_float_path(*f32, *inputs32);
    summarize();
    localise_ops(f32, inputs32);
    if (o_.second_order) check_second_order();
    return report_;
  }

 private:
  /// The output as the numbers compared: every element, or its projection on r.
  Array<double> values(const V& out) const {
    if (out.shape() != out_shape_)
      fail("gradcheck: f returned shape ", shape_str(out.shape()), " on one call and ",
           shape_str(out_shape_), " on another");
    if (!projected_) return Array<double>(out.value());
    return Array<double>(dot(out.value(), r_));
  }

  Array<double> evaluate() const {
    NoGradGuard no_grad;
    return values(f_(xs_));
  }

  void evaluate_base() {
    base_output_ = f_(xs_);
    out_shape_ = base_output_.shape();
    projected_ = o_.fast || base_output_.size() > o_.max_rows;
    r_ = random_normal(out_shape_, rng_);
    rows_ = projected_ ? 1 : base_output_.size();
    report_.projected = projected_;
    std::ostringstream mode;
    if (o_.fast)
      mode << "fast: one random direction per input, output " << shape_str(out_shape_)
           << " projected onto a random vector";
    else if (projected_)
      mode << "full Jacobian of the output " << shape_str(out_shape_)
           << " projected onto a random vector (" << base_output_.size() << " elements > max_rows "
           << o_.max_rows << ")";
    else
      mode << "full Jacobian, output " << shape_str(out_shape_) << " (" << rows_ << " rows)";
    report_.mode = mode.str();
    if (!base_output_.requires_grad())
      report_.notes.push_back(
          "the output does not depend on any input that requires grad; the analytic gradient is "
          "zero");
    base_ = values(base_output_);
    for (auto i : checked_) {
      wrt_.push_back(xs_[i]);
      if (o_.fast) directions_.push_back(random_normal(xs_[i].shape(), rng_));
    }
  }

  /// The seed of Jacobian row `row`: the unit vector of that output element, or r.
  Array<double> seed(std::size_t row) const {
    if (projected_) return r_;
    Array<double> s = xt::zeros<double>(out_shape_);
    s.data()[row] = 1;
    return s;
  }

  /// The number of columns of input k's Jacobian: its elements, or one direction.
  std::size_t columns(std::size_t k) const { return o_.fast ? 1 : xs_[checked_[k]].size(); }

  /// Analytic Jacobians (rows × columns), one backward per row, from the recorded output.
  void analytic_jacobians() {
    for (std::size_t k = 0; k < checked_.size(); ++k)
      analytic_.push_back(xt::zeros<double>({rows_, columns(k)}));
    for (std::size_t row = 0; row < rows_; ++row) {
      std::vector<V> g = grad(base_output_, wrt_, V(seed(row)), BackwardOptions{true, false});
      for (std::size_t k = 0; k < checked_.size(); ++k) {
        if (o_.fast)
          analytic_[k](row, 0) = dot(g[k].value(), directions_[k]);
        else
          std::copy(g[k].value().begin(), g[k].value().end(),
                    analytic_[k].data() + row * columns(k));
      }
    }
  }

  /// The differences of the output values along `d` at step h; x is restored exactly after.
  Differences differences(const Direction& d, double h) {
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

  Direction direction(std::size_t k, std::size_t column) const {
    Direction d{k, column, nullptr};
    if (o_.fast) d.along = &directions_[k];
    return d;
  }

  /// Numeric Jacobians, one pair of evaluations per column; the one-sided differences are kept
  /// to tell kinks from curvature.
  void numeric_jacobians() {
    for (std::size_t k = 0; k < checked_.size(); ++k) {
      numeric_.push_back(Array<double>::from_shape({rows_, columns(k)}));
      for (std::size_t j = 0; j < columns(k); ++j) {
        Differences d = differences(direction(k, j), o_.eps);
        for (std::size_t row = 0; row < rows_; ++row) numeric_[k](row, j) = d.central.data()[row];
      }
    }
  }

  double tolerance(double numeric) const { return o_.atol + o_.rtol * std::abs(numeric); }

  /// What an entry that failed at step eps is, from the differences at eps/10 and eps/100.
  struct Verdict {
    bool kink = false;
    double numeric = 0;          // the central difference at the smallest step
    double left = 0, right = 0;  // one-sided slopes at the smallest step
  };

  Verdict refine(std::size_t k, std::size_t j, std::size_t row,
                 std::map<std::size_t, std::pair<Differences, Differences>>& cache) {
    auto it = cache.find(j);
    if (it == cache.end()) {
      const Direction d = direction(k, j);
      it =
          cache
              .emplace(j, std::make_pair(differences(d, o_.eps / 10), differences(d, o_.eps / 100)))
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
  bool record_worst(InputCheck& c, double err, double tol, double a, double n, std::size_t j,
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
  void compare_jacobians() {
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

  /// Backward accumulates into .grad (two calls give twice one call), and two fresh forward and
  /// backward runs give the same gradients.
  void check_backward() {
    auto grads = [&]() {
      std::vector<Array<double>> g;
      for (auto i : checked_)
        g.push_back(xs_[i].has_grad() ? xs_[i].grad().value()
                                      : Array<double>(xt::zeros<double>(xs_[i].shape())));
      return g;
    };
    auto clear = [&]() {
      for (auto i : checked_) xs_[i].zero_grad();
    };
    V s(r_);
    clear();
    V y1 = f_(xs_);
    y1.backward(s, BackwardOptions{true, false});
    auto g1 = grads();
    y1.backward(s);
    auto g2 = grads();
    clear();
    V y2 = f_(xs_);
    y2.backward(s);
    auto g3 = grads();
    clear();
    bool acc_ok = true, repeat_ok = true;
    for (std::size_t k = 0; k < checked_.size(); ++k) {
      report_.accumulation_error =
          std::max(report_.accumulation_error, max_abs_diff(g2[k], g1[k], 2.0, o_, acc_ok));
      report_.repeat_error =
          std::max(report_.repeat_error, max_abs_diff(g3[k], g1[k], 1.0, o_, repeat_ok));
    }
    report_.backward_checked = true;
    if (!acc_ok)
      report_.problems.push_back(
          "a second backward did not add to .grad: after two backward calls .grad differs from "
          "twice the first gradient");
    if (!repeat_ok)
      report_.problems.push_back(
          "two forward+backward runs from the same inputs gave different gradients");
  }

  /// The function run in float32 with its float32 gradients, against the float64 reference:
  /// the output, then every Jacobian entry against the float64 analytic and numeric values.
  void check_float_path(const FloatFunction& f32, const std::vector<Variable<float>>& inputs) {
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

  void compare_float(std::size_t k, const Array<double>& jac) {
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

  /// Pass or fail, and what to say about kinks and checks that compared nothing.
  void summarize() {
    std::size_t compared = 0;
    for (auto i : checked_) {
      const InputCheck& c = report_.inputs[i];
      compared += c.compared;
      if (!c.passed || !c.float32.passed) report_.passed = false;
      const std::string which =
          "input " + std::to_string(i) + (c.name.empty() ? "" : " '" + c.name + "'");
      if (c.kinks)
        report_.notes.push_back(which + ": " + std::to_string(c.kinks) +
                                " entries skipped at kinks (the function is not differentiable "
                                "there, and the analytic value lies between the one-sided "
                                "slopes)");
      if (c.refined)
        report_.notes.push_back(which + ": " + std::to_string(c.refined) +
                                " entries compared at a smaller step (high curvature)");
      if (c.compared == 0 && c.kinks > 0) {
        report_.problems.push_back(which +
                                   ": nothing was compared: every entry is at a kink; "
                                   "check at a point where the function is differentiable");
      }
    }
    if (compared == 0 && report_.problems.empty())
      report_.problems.push_back("nothing was compared (the checked inputs are empty)");
    if (!report_.problems.empty()) report_.passed = false;
  }

  /// Which op is wrong: when the float64 Jacobian failed, or on request.
  /// Which op is wrong: when the check failed (in float64, or on the float32 path only: then
  /// the float ops against their float64 twins), or on request.
  void localise_ops(const FloatFunction* f32, const std::vector<Variable<float>>* inputs32) {
    bool failed = false, float_failed = false;
    for (auto i : checked_) {
      failed = failed || !report_.inputs[i].passed;
      float_failed = float_failed || !report_.inputs[i].float32.passed;
    }
    const bool float_only = f32 && !failed && (float_failed || !report_.passed);
    if (!o_.localise && !((failed || float_only) && o_.localise_on_failure)) return;
    Localisation& l = report_.localisation;
    if (float_only) {
      std::vector<Variable<float>> x32;
      for (const auto& in : *inputs32)
        x32.emplace_back(Array<float>(in.value()), in.requires_grad());
      l = localise_float(f_, *f32, xs_, x32, o_, modules_);
      l.verdict = l.found ? "op %" + std::to_string(l.failure.node) + " (" + l.failure.op +
                                ") is off in float32"
                          : "every op of the float32 path agrees with its float64 twin";
      return;
    }
    l = localise(f_, xs_, names_, o_, modules_);
    const std::string sampled =
        l.checked < l.nodes ? " (only " + std::to_string(l.checked) + " of them were checked)" : "";
    if (l.off_tape)
      l.verdict = "the composition is wrong: " + l.off_tape_message;
    else if (l.found)
      l.verdict = "the rule of op %" + std::to_string(l.failure.node) + " (" + l.failure.op +
                  ") disagrees with its own forward";
    else if (failed)
      l.verdict =
          "every op's rule agrees with its own forward" + sampled +
          ", while the whole does not: the composition is wrong (a value that leaves the tape, "
          "read with value() or changed in place and used again; a custom op that reads a "
          "Variable it does not list among its inputs; a gradient not summed over every use)";
    else
      l.verdict = "every op's rule agrees with its own forward" + sampled;
  }

  void check_second_order() {
    // The gradient function x -> d(r·f)/dx, recorded with create_graph, checked like any f.
    const Array<double> r2 = random_normal(out_shape_, rng_);
    const CheckedFunction& f = f_;
    const std::vector<std::size_t>& checked = checked_;
    CheckedFunction gradient = [&f, &checked, r2](const std::vector<V>& args) {
      GradModeGuard enable(true);
      V out = f(args);
      std::vector<V> w;
      for (auto i : checked) w.push_back(args[i]);
      std::vector<V> parts;
      for (const V& g : grad(out, w, V(r2), BackwardOptions{true, true}))
        parts.push_back(flatten(g));
      return concatenate(parts);
    };
    GradcheckOptions o2 = o_;
    o2.second_order = false;
    std::vector<std::string> names;
    std::vector<V> inputs;
    for (const auto& c : report_.inputs) names.push_back(c.name);
    for (const auto& x : xs_) inputs.emplace_back(x.value(), x.requires_grad());
    report_.second_order = std::make_shared<GradcheckReport>(
        Checker(gradient, inputs, o2, names, modules_).run(nullptr, nullptr));
    if (!report_.second_order->passed) report_.passed = false;
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

}  // namespace

GradcheckReport run_gradcheck(const CheckedFunction& f, const std::vector<V>& inputs,
                              const GradcheckOptions& options,
                              const std::vector<std::string>& names, const FloatFunction* f32,
                              const std::vector<Variable<float>>* inputs32,
                              const ModuleNamer& modules) {
  return Checker(f, inputs, options, names, modules).run(f32, inputs32);
}

}  // namespace detail

namespace {

std::string index_str(const Shape& idx) {
  std::string s = "[";
  for (std::size_t i = 0; i < idx.size(); ++i) s += (i ? "," : "") + std::to_string(idx[i]);
  return s + "]";
}

/// "d out[i] / d in[j]", or the projected or directional forms.
std::string entry_str(const GradcheckReport& r, const Shape& out, const Shape& in) {
  if (r.options.fast) return "along a random direction";
  if (r.projected) return "d (projected output) / d in" + index_str(in);
  return "d out" + index_str(out) + " / d in" + index_str(in);
}

void print_float(std::ostream& os, const GradcheckReport& r, const InputCheck& c,
                 const std::string& indent) {
  const FloatCheck& f = c.float32;
  if (!f.checked) return;
  os << indent << "    float32 path: " << (f.passed ? "passed" : "FAILED") << ", " << f.compared
     << " entries compared";
  if (f.failures) os << ", " << f.failures << " out of tolerance";
  os << std::setprecision(3) << ", max |float32 - float64 analytic| " << f.max_error_vs_analytic
     << ", max |float32 - float64 numeric| " << f.max_error_vs_numeric << "\n";
  if (f.has_worst && !f.passed)
    os << indent << "      worst: " << entry_str(r, f.worst_output, f.worst_input)
       << std::setprecision(10) << ": float32 " << f.value << ", float64 analytic " << f.analytic
       << ", float64 numeric " << f.numeric << std::setprecision(3) << ", tolerance " << f.tolerance
       << "\n";
}

/// The program's lines from `first` to `last` (numbers of ops), the failing one marked.
void print_program_lines(std::ostream& os, const Localisation& l, std::size_t first,
                         std::size_t last, const std::string& indent) {
  std::istringstream lines(l.program);
  std::string line;
  for (std::size_t n = 0; std::getline(lines, line) && n <= last; ++n)
    if (n >= first) os << indent << (n == l.failure.node ? "  > " : "    ") << line << "\n";
}

void print_localisation(std::ostream& os, const Localisation& l, const std::string& indent) {
  if (!l.ran) return;
  os << indent << "  localisation: " << l.checked << " of " << l.nodes
     << " ops checked: " << l.sampling << "\n";
  if (l.kinks)
    os << indent << "    " << l.kinks
       << " op inputs not judged: at a kink along both directions tried\n";
  if (l.unchecked_inputs)
    os << indent << "    " << l.unchecked_inputs
       << " op inputs not checked: leaves made inside the function, which a run cannot probe\n";
  if (l.found) {
    const NodeFailure& f = l.failure;
    os << indent << "    op %" << f.node << " `" << f.op << "`";
    if (!f.attributes.empty()) os << " (" << f.attributes << ")";
    if (!f.module.empty()) os << " in `" << f.module << "`";
    os << ", inputs ";
    for (std::size_t i = 0; i < f.input_shapes.size(); ++i)
      os << (i ? " x " : "") << shape_str(f.input_shapes[i]);
    const bool output = f.float32 && f.input == f.input_shapes.size();
    if (!output) os << ": input " << f.input;
    for (std::size_t i : f.same_as) os << " (and input " << i << ", the same Variable)";
    os << std::setprecision(10);
    if (output)
      os << ": its output: float32 " << f.analytic << ", float64 " << f.numeric;
    else if (f.float32)
      os << ": float32 rule " << f.analytic << ", float64 rule " << f.numeric;
    else
      os << ": analytic " << f.analytic << ", numeric " << f.numeric;
    os << std::setprecision(3) << ", |difference| " << f.max_abs_error << ", tolerance "
       << f.tolerance << "\n";
    if (!l.program.empty()) {
      os << indent << "    where it is in the program (Localisation::program):\n";
      print_program_lines(os, l, f.node >= 3 ? f.node - 3 : 0, f.node, indent + "    ");
    }
  }
  os << indent << "    " << l.verdict << "\n";
}

void print(std::ostream& os, const GradcheckReport& r, const std::string& indent) {
  const auto& o = r.options;
  std::size_t checked = 0, compared = 0;
  for (const auto& c : r.inputs) {
    checked += c.checked;
    compared += c.compared;
  }
  os << indent << "gradcheck " << (r.passed ? "PASSED" : "FAILED") << ": " << checked << " of "
     << r.inputs.size() << " inputs checked, " << compared
     << " entries compared in float64 against central differences (eps " << o.eps
     << ", pass when |analytic - numeric| <= " << o.atol << " + " << o.rtol << " * |numeric|)\n";
  if (r.float32_checked)
    os << indent << "  float32 inputs: float64 is the reference; the function run in float32 is "
       << "compared with it (pass when |float32 - float64| <= " << o.float_atol << " * scale + "
       << o.float_rtol << " * |float64|); output: max error " << std::setprecision(3)
       << r.float32_output_error << " (tolerance " << r.float32_output_tolerance << " + rtol)\n";
  if (!r.mode.empty()) os << indent << "  mode: " << r.mode << "\n";
  for (const auto& c : r.inputs) {
    os << indent << "  input " << c.input << (c.name.empty() ? "" : " '" + c.name + "'") << " "
       << shape_str(c.shape) << ": ";
    if (!c.checked) {
      os << "not checked (does not require grad)\n";
      continue;
    }
    os << (c.passed ? "passed" : "FAILED") << ", " << c.compared << " entries compared";
    if (c.failures) os << ", " << c.failures << " out of tolerance";
    os << std::setprecision(3) << ", max abs error " << c.max_abs_error << ", max rel error "
       << c.max_rel_error << "\n";
    if (c.has_worst) {
      os << indent << "    worst: " << entry_str(r, c.worst_output, c.worst_input)
         << std::setprecision(10) << ": analytic " << c.analytic << ", numeric " << c.numeric
         << std::setprecision(3) << ", |difference| " << std::abs(c.analytic - c.numeric)
         << ", tolerance " << c.tolerance << "\n";
      if (c.worst_at_kink)
        os << indent << std::setprecision(10)
           << "    it is at a kink, and the analytic value is not between the one-sided slopes "
           << c.left_slope << " (left) and " << c.right_slope << " (right)\n";
    }
    if (c.kinks)
      os << indent << "    " << c.kinks << " entries skipped at kinks, first at in"
         << index_str(c.first_kink) << "\n";
    print_float(os, r, c, indent);
  }
  if (r.backward_checked)
    os << indent << std::setprecision(3) << "  backward accumulates into .grad: max |g2 - 2 g1| "
       << r.accumulation_error << "; two runs agree: max |g1 - g1'| " << r.repeat_error << "\n";
  for (const auto& n : r.notes) os << indent << "  note: " << n << "\n";
  for (const auto& p : r.problems) os << indent << "  problem: " << p << "\n";
  print_localisation(os, r.localisation, indent);
  if (r.second_order) {
    os << indent << "  second order (the gradient of the gradient, in float64):\n";
    print(os, *r.second_order, indent + "    ");
  }
}

}  // namespace

std::ostream& operator<<(std::ostream& os, const GradcheckReport& report) {
  print(os, report, "");
  return os;
}

std::string GradcheckReport::str() const {
  std::ostringstream os;
  os << *this;
  return os.str();
}

}  // namespace ad
