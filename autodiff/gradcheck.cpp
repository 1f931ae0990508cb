#include "autodiff/gradcheck.hpp"

#include <cmath>
#include <iomanip>
#include <random>
#include <sstream>

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

Array<double> random_normal(const Shape& shape, std::mt19937_64& rng) {
  std::normal_distribution<double> normal;
  Array<double> a = Array<double>::from_shape(shape);
  for (auto& x : a) x = normal(rng);
  return a;
}

double dot(const Array<double>& a, const Array<double>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a.data()[i] * b.data()[i];
  return s;
}

/// Records one comparison of an analytic and a numeric derivative into `check`.
/// forward/backward are the one-sided differences, used to recognise a kink.
void compare(InputCheck& check, const GradcheckOptions& o, double a, double n, double forward,
             double backward, std::size_t input_flat, const Shape& output_index, bool has_output) {
  const double err = std::abs(a - n);
  const double tol = o.atol + o.rtol * std::abs(n);
  if (!(err <= tol) && std::abs(forward - backward) > tol) {
    if (check.kinks++ == 0) check.first_kink = unravel(input_flat, check.shape);
    return;
  }
  ++check.compared;
  const double rel = err / std::max(std::abs(n), o.atol);
  if (!(err <= tol)) {
    ++check.failures;
    check.passed = false;
  }
  check.max_abs_error = std::max(check.max_abs_error, err);
  check.max_rel_error = std::max(check.max_rel_error, rel);
  const double ratio = err / tol;
  const double worst_ratio =
      check.has_worst ? std::abs(check.analytic - check.numeric) / check.tolerance : -1;
  if (!check.has_worst || !(ratio <= worst_ratio)) {
    check.has_worst = true;
    check.worst_input = unravel(input_flat, check.shape);
    check.worst_output = has_output ? output_index : Shape{};
    check.analytic = a;
    check.numeric = n;
    check.tolerance = tol;
  }
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

/// Backward accumulates into .grad (two calls give twice one call), and two fresh forward and
/// backward runs give the same gradients.
void check_backward(const CheckedFunction& f, std::vector<V>& xs,
                    const std::vector<std::size_t>& checked, const Array<double>& seed_value,
                    const GradcheckOptions& o, GradcheckReport& report) {
  auto grads = [&]() {
    std::vector<Array<double>> g;
    for (auto i : checked)
      g.push_back(xs[i].has_grad() ? xs[i].grad().value()
                                   : Array<double>(xt::zeros<double>(xs[i].shape())));
    return g;
  };
  auto clear = [&]() {
    for (auto i : checked) xs[i].zero_grad();
  };
  V seed(seed_value);
  clear();
  V y1 = f(xs);
  y1.backward(seed, BackwardOptions{true, false});
  auto g1 = grads();
  y1.backward(seed);
  auto g2 = grads();
  clear();
  V y2 = f(xs);
  y2.backward(seed);
  auto g3 = grads();
  clear();
  bool acc_ok = true, repeat_ok = true;
  for (std::size_t k = 0; k < checked.size(); ++k) {
    report.accumulation_error =
        std::max(report.accumulation_error, max_abs_diff(g2[k], g1[k], 2.0, o, acc_ok));
    report.repeat_error =
        std::max(report.repeat_error, max_abs_diff(g3[k], g1[k], 1.0, o, repeat_ok));
  }
  report.backward_checked = true;
  if (!acc_ok)
    report.problems.push_back(
        "a second backward did not add to .grad: after two backward calls .grad differs from "
        "twice the first gradient");
  if (!repeat_ok)
    report.problems.push_back(
        "two forward+backward runs from the same inputs gave different gradients");
}

}  // namespace

GradcheckReport gradcheck_double(const CheckedFunction& f, const std::vector<V>& inputs,
                                 const GradcheckOptions& o, bool promoted_from_float,
                                 const std::vector<std::string>& names) {
  GradcheckReport report;
  report.options = o;
  report.promoted_from_float = promoted_from_float;
  if (!(o.eps > 0)) fail("gradcheck: eps must be positive, got ", o.eps);

  // Private leaves, so that probing never touches the caller's tensors.
  std::vector<V> xs;
  std::vector<std::size_t> checked;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    xs.emplace_back(inputs[i].value(), inputs[i].requires_grad());
    InputCheck c;
    c.input = i;
    if (i < names.size()) c.name = names[i];
    c.shape = inputs[i].shape();
    c.checked = inputs[i].requires_grad();
    report.inputs.push_back(c);
    if (c.checked) checked.push_back(i);
  }
  if (checked.empty()) {
    report.passed = false;
    report.problems.push_back("no input requires grad: nothing was checked");
    return report;
  }

  std::mt19937_64 rng(o.seed);
  V y = f(xs);
  const Shape out_shape = y.shape();
  const bool projected = o.fast || y.size() > o.max_rows;
  const Array<double> r = random_normal(out_shape, rng);
  const std::size_t rows = projected ? 1 : y.size();
  report.projected = projected;
  std::ostringstream mode;
  if (o.fast)
    mode << "fast: one random direction per input, output " << shape_str(out_shape)
         << " projected onto a random vector";
  else if (projected)
    mode << "full Jacobian of the output " << shape_str(out_shape)
         << " projected onto a random vector (" << y.size() << " elements > max_rows " << o.max_rows
         << ")";
  else
    mode << "full Jacobian, output " << shape_str(out_shape) << " (" << rows << " rows)";
  report.mode = mode.str();
  if (!y.requires_grad())
    report.notes.push_back(
        "the output does not depend on any input that requires grad; the "
        "analytic gradient is zero");

  // The output as the numbers compared: every element, or its projection on r.
  auto values = [&](const V& out) {
    if (out.shape() != out_shape)
      fail("gradcheck: f returned shape ", shape_str(out.shape()), " on one call and ",
           shape_str(out_shape), " on another");
    if (!projected) return Array<double>(out.value());
    return Array<double>(dot(out.value(), r));
  };
  auto evaluate = [&]() {
    NoGradGuard no_grad;
    return values(f(xs));
  };
  const Array<double> base = values(y);

  std::vector<V> wrt;
  for (auto i : checked) wrt.push_back(xs[i]);
  const BackwardOptions keep{true, false};

  if (o.fast) {
    std::vector<V> g = grad(y, wrt, V(r), keep);
    for (std::size_t k = 0; k < checked.size(); ++k) {
      InputCheck& c = report.inputs[checked[k]];
      Array<double>& x = xs[checked[k]].mutable_value();
      const Array<double> original = x;
      const Array<double> u = random_normal(x.shape(), rng);
      const double analytic = dot(g[k].value(), u);
      x = original + o.eps * u;
      const double up = evaluate()();
      x = original - o.eps * u;
      const double down = evaluate()();
      x = original;
      const double b = base();
      compare(c, o, analytic, (up - down) / (2 * o.eps), (up - b) / o.eps, (b - down) / o.eps, 0,
              Shape{}, false);
      if (c.has_worst) c.worst_input = Shape{};
    }
  } else {
    // Analytic Jacobian, one backward per row (row k: the gradient of output element k).
    std::vector<Array<double>> jac;
    for (auto i : checked) jac.push_back(xt::zeros<double>({rows, xs[i].size()}));
    for (std::size_t row = 0; row < rows; ++row) {
      Array<double> seed = projected ? r : Array<double>(xt::zeros<double>(out_shape));
      if (!projected) seed.data()[row] = 1;
      std::vector<V> g = grad(y, wrt, V(std::move(seed)), keep);
      for (std::size_t k = 0; k < checked.size(); ++k)
        std::copy(g[k].value().begin(), g[k].value().end(),
                  jac[k].data() + row * xs[checked[k]].size());
    }
    // Numeric Jacobian, one pair of evaluations per input element.
    for (std::size_t k = 0; k < checked.size(); ++k) {
      InputCheck& c = report.inputs[checked[k]];
      Array<double>& x = xs[checked[k]].mutable_value();
      for (std::size_t j = 0; j < x.size(); ++j) {
        const double original = x.data()[j];
        const double up_x = original + o.eps, down_x = original - o.eps;
        x.data()[j] = up_x;
        const Array<double> up = evaluate();
        x.data()[j] = down_x;
        const Array<double> down = evaluate();
        x.data()[j] = original;
        for (std::size_t row = 0; row < rows; ++row) {
          const double n = (up.data()[row] - down.data()[row]) / (up_x - down_x);
          const double fwd = (up.data()[row] - base.data()[row]) / (up_x - original);
          const double bwd = (base.data()[row] - down.data()[row]) / (original - down_x);
          compare(c, o, jac[k](row, j), n, fwd, bwd, j, unravel(row, out_shape), !projected);
        }
      }
    }
  }
  for (auto i : checked) {
    if (!report.inputs[i].passed) report.passed = false;
    if (report.inputs[i].kinks)
      report.notes.push_back("input " + std::to_string(i) + ": " +
                             std::to_string(report.inputs[i].kinks) +
                             " entries skipped as non-differentiable (the one-sided differences "
                             "disagree there)");
  }

  if (o.check_backward && y.requires_grad()) check_backward(f, xs, checked, r, o, report);
  if (!report.problems.empty()) report.passed = false;

  if (o.second_order) {
    // The gradient function x -> d(r·f)/dx, recorded with create_graph, checked like any f.
    const Array<double> r2 = random_normal(out_shape, rng);
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
    GradcheckOptions o2 = o;
    o2.second_order = false;
    report.second_order =
        std::make_shared<GradcheckReport>(gradcheck_double(gradient, inputs, o2, false, names));
    if (!report.second_order->passed) report.passed = false;
  }
  return report;
}

}  // namespace detail

namespace {

std::string index_str(const Shape& idx) {
  std::string s = "[";
  for (std::size_t i = 0; i < idx.size(); ++i) s += (i ? "," : "") + std::to_string(idx[i]);
  return s + "]";
}

void print(std::ostream& os, const GradcheckReport& r, const std::string& indent) {
  const auto& o = r.options;
  std::size_t checked = 0;
  for (const auto& c : r.inputs) checked += c.checked;
  os << indent << "gradcheck " << (r.passed ? "PASSED" : "FAILED") << ": " << checked << " of "
     << r.inputs.size() << " inputs checked in float64 against central differences (eps " << o.eps
     << ", pass when |analytic - numeric| <= " << o.atol << " + " << o.rtol << " * |numeric|)\n";
  if (r.promoted_from_float)
    os << indent
       << "  inputs were float32 and were promoted to float64: float32 central differences are "
          "too noisy to be a reference\n";
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
      os << indent << "    worst: ";
      if (r.options.fast)
        os << "along a random direction";
      else if (r.projected)
        os << "d (projected output) / d in" << index_str(c.worst_input);
      else
        os << "d out" << index_str(c.worst_output) << " / d in" << index_str(c.worst_input);
      os << std::setprecision(10) << ": analytic " << c.analytic << ", numeric " << c.numeric
         << std::setprecision(3) << ", |difference| " << std::abs(c.analytic - c.numeric)
         << ", tolerance " << c.tolerance << "\n";
    }
    if (c.kinks)
      os << indent << "    " << c.kinks << " entries skipped as non-differentiable, first at in"
         << index_str(c.first_kink) << "\n";
  }
  if (r.backward_checked)
    os << indent << std::setprecision(3) << "  backward accumulates into .grad: max |g2 - 2 g1| "
       << r.accumulation_error << "; two runs agree: max |g1 - g1'| " << r.repeat_error << "\n";
  for (const auto& n : r.notes) os << indent << "  note: " << n << "\n";
  for (const auto& p : r.problems) os << indent << "  problem: " << p << "\n";
  if (r.second_order) {
    os << indent << "  second order (the gradient of the gradient):\n";
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
