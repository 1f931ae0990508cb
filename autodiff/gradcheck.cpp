#include "autodiff/gradcheck.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "autodiff/checking.hpp"
#include "autodiff/gradcheck_checker.hpp"
#include "autodiff/ops.hpp"

namespace ad {
namespace detail {
namespace gradcheck_impl {

Shape unravel(std::size_t flat, const Shape& shape) {
  Shape idx(shape.size(), 0);
  for (std::size_t d = shape.size(); d-- > 0;) {
    idx[d] = flat % shape[d];
    flat /= shape[d];
  }
  return idx;
}

namespace {

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

}  // namespace

Checker::Checker(const CheckedFunction& f, const std::vector<V>& inputs, const GradcheckOptions& o,
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

GradcheckReport Checker::run(const FloatFunction* f32,
                             const std::vector<Variable<float>>* inputs32) {
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

/// The output as the numbers compared: every element, or its projection on r.
Array<double> Checker::values(const V& out) const {
  if (out.shape() != out_shape_)
    fail("gradcheck: f returned shape ", shape_str(out.shape()), " on one call and ",
         shape_str(out_shape_), " on another");
  if (!projected_) return Array<double>(out.value());
  return Array<double>(dot(out.value(), r_));
}

Array<double> Checker::evaluate() const {
  NoGradGuard no_grad;
  return values(f_(xs_));
}

void Checker::evaluate_base() {
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
Array<double> Checker::seed(std::size_t row) const {
  if (projected_) return r_;
  Array<double> s = xt::zeros<double>(out_shape_);
  s.data()[row] = 1;
  return s;
}

/// Analytic Jacobians (rows × columns), one backward per row, from the recorded output.
void Checker::analytic_jacobians() {
  for (std::size_t k = 0; k < checked_.size(); ++k)
    analytic_.push_back(xt::zeros<double>({rows_, columns(k)}));
  for (std::size_t row = 0; row < rows_; ++row) {
    std::vector<V> g = grad(base_output_, wrt_, V(seed(row)), BackwardOptions{true, false});
    for (std::size_t k = 0; k < checked_.size(); ++k) {
      if (o_.fast)
        analytic_[k](row, 0) = dot(g[k].value(), directions_[k]);
      else
        std::copy(g[k].value().begin(), g[k].value().end(), analytic_[k].data() + row * columns(k));
    }
  }
}

/// Backward accumulates into .grad (two calls give twice one call), and two fresh forward and
/// backward runs give the same gradients.
void Checker::check_backward() {
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

/// Pass or fail, and what to say about kinks and checks that compared nothing.
void Checker::summarize() {
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

/// Which op is wrong: when the check failed (in float64, or on the float32 path only: then
/// the float ops against their float64 twins), or on request.
void Checker::localise_ops(const FloatFunction* f32, const std::vector<Variable<float>>* inputs32) {
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
    for (const auto& in : *inputs32) x32.emplace_back(Array<float>(in.value()), in.requires_grad());
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

void Checker::check_second_order() {
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
    for (const V& g : grad(out, w, V(r2), BackwardOptions{true, true})) parts.push_back(flatten(g));
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

}  // namespace gradcheck_impl

GradcheckReport run_gradcheck(const CheckedFunction& f, const std::vector<Variable<double>>& inputs,
                              const GradcheckOptions& options,
                              const std::vector<std::string>& names, const FloatFunction* f32,
                              const std::vector<Variable<float>>* inputs32,
                              const ModuleNamer& modules) {
  return gradcheck_impl::Checker(f, inputs, options, names, modules).run(f32, inputs32);
}

}  // namespace detail
}  // namespace ad
