#include "nn/lbfgs.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "autodiff/error.hpp"

namespace ad::nn {

namespace {

using Vec = std::vector<double>;

double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

/// "NaN", "+inf" or "-inf".
const char* non_finite(double v) {
  return std::isnan(v) ? "NaN" : v > 0 ? "+inf" : "-inf";
}

double max_abs(const Vec& a) {
  double m = 0;
  for (double v : a) m = std::max(m, std::abs(v));
  return m;
}

/// The minimiser of the cubic through (x1, f1, g1) and (x2, f2, g2), clipped to the bounds (the
/// interval itself by default); the middle when the cubic has no minimum.
double cubic_interpolate(double x1, double f1, double g1, double x2, double f2, double g2,
                         double lo, double hi) {
  const double d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2);
  const double d2_square = d1 * d1 - g1 * g2;
  if (d2_square >= 0) {
    const double d2 = std::sqrt(d2_square);
    const double at = x1 <= x2 ? x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
                               : x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2));
    return std::min(std::max(at, lo), hi);
  }
  return (lo + hi) / 2;
}

double cubic_interpolate(double x1, double f1, double g1, double x2, double f2, double g2) {
  return cubic_interpolate(x1, f1, g1, x2, f2, g2, std::min(x1, x2), std::max(x1, x2));
}

}  // namespace

template <class T>
LBFGS<T>::LBFGS(std::vector<Variable<T>> params, LBFGSOptions options)
    : params_(std::move(params)), options_(options) {
  if (params_.empty()) fail("LBFGS: no parameters");
  for (const auto& p : params_)
    if (!p.requires_grad())
      fail("LBFGS: a parameter of shape ", shape_str(p.shape()), " does not require grad");
  if (!(options_.lr > 0)) fail("LBFGS: lr is ", options_.lr, "; it must be positive");
  if (options_.max_iter == 0 || options_.max_eval == 0 || options_.history_size == 0)
    fail("LBFGS: max_iter, max_eval and history_size must be positive");
  if (!(options_.tolerance_grad >= 0 && options_.tolerance_change >= 0))
    fail("LBFGS: the tolerances must be >= 0");
}

template <class T>
Vec LBFGS<T>::values() const {
  Vec x;
  for (const auto& p : params_) x.insert(x.end(), p.value().begin(), p.value().end());
  return x;
}

template <class T>
void LBFGS<T>::set_values(const Vec& x, double t, const Vec& d) {
  std::size_t at = 0;
  for (auto& p : params_) {
    Array<T>& v = p.mutable_value();
    for (auto& e : v) {
      e = static_cast<T>(x[at] + t * d[at]);
      ++at;
    }
  }
}

template <class T>
double LBFGS<T>::evaluate(const Loss& loss, Vec& grad) {
  for (auto& p : params_) p.zero_grad();
  Variable<T> l = loss();
  if (l.size() != 1) fail("LBFGS: the loss has shape ", shape_str(l.shape()), ", not one value");
  ++evaluations_;
  const double value = static_cast<double>(l.item());
  const std::string where = "at iteration " + std::to_string(step_iteration_) +
                            " of the step (evaluation " + std::to_string(evaluations_) + ")";
  if (!std::isfinite(value)) fail("LBFGS: the loss is ", non_finite(value), " ", where);
  l.backward();
  grad.clear();
  for (std::size_t k = 0; k < params_.size(); ++k) {
    const auto& p = params_[k];
    if (p.has_grad())
      grad.insert(grad.end(), p.grad().value().begin(), p.grad().value().end());
    else
      grad.insert(grad.end(), p.size(), 0.0);  // the loss does not depend on it
    for (std::size_t i = grad.size() - p.size(); i < grad.size(); ++i)
      if (!std::isfinite(grad[i]))
        fail("LBFGS: the gradient of parameter ", k, " (shape ", shape_str(p.shape()), ") is ",
             non_finite(grad[i]), " at entry ", i - (grad.size() - p.size()), " ", where);
  }
  return value;
}

template <class T>
double LBFGS<T>::strong_wolfe(const Loss& loss, const Vec& x, double& t, const Vec& d, double f,
                              Vec& g, double gtd, std::size_t& evals) {
  const double c1 = 1e-4, c2 = 0.9;
  const std::size_t max_ls = 25;
  const double d_norm = max_abs(d);
  auto at = [&](double step, Vec& grad) {
    set_values(x, step, d);
    const double value = evaluate(loss, grad);
    set_values(x, 0, d);
    ++evals;
    return value;
  };
  Vec g_new;
  double f_new = at(t, g_new);
  double gtd_new = dot(g_new, d);
  double t_prev = 0, f_prev = f, gtd_prev = gtd;
  Vec g_prev = g;
  bool done = false;
  std::size_t ls_iter = 0;
  // The bracket: steps, values, gradients and slopes at both ends.
  std::vector<double> b_t, b_f, b_gtd;
  std::vector<Vec> b_g;
  while (ls_iter < max_ls) {
    // In this order: too high (or not lower than the last) brackets; the curvature condition
    // ends the search; a slope turned upwards brackets.
    const bool too_high = f_new > f + c1 * t * gtd || (ls_iter > 1 && f_new >= f_prev);
    if (!too_high && std::abs(gtd_new) <= -c2 * gtd) {
      b_t = {t}, b_f = {f_new}, b_g = {g_new}, b_gtd = {gtd_new};
      done = true;
      break;
    }
    if (too_high || gtd_new >= 0) {
      b_t = {t_prev, t}, b_f = {f_prev, f_new}, b_g = {g_prev, g_new}, b_gtd = {gtd_prev, gtd_new};
      break;
    }
    // Extrapolate.
    const double min_step = t + 0.01 * (t - t_prev), max_step = t * 10;
    const double next =
        cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, min_step, max_step);
    t_prev = t, f_prev = f_new, g_prev = g_new, gtd_prev = gtd_new;
    t = next;
    f_new = at(t, g_new);
    gtd_new = dot(g_new, d);
    ++ls_iter;
  }
  if (ls_iter == max_ls) b_t = {0, t}, b_f = {f, f_new}, b_g = {g, g_new}, b_gtd = {gtd, gtd_new};
  // Zoom into the bracket until the strong Wolfe conditions hold.
  bool insufficient = false;
  std::size_t low = b_f[0] <= b_f.back() ? 0 : 1, high = 1 - low;
  while (!done && ls_iter < max_ls) {
    if (std::abs(b_t[1] - b_t[0]) * d_norm < options_.tolerance_change) break;
    t = cubic_interpolate(b_t[0], b_f[0], b_gtd[0], b_t[1], b_f[1], b_gtd[1]);
    const double hi = std::max(b_t[0], b_t[1]), lo = std::min(b_t[0], b_t[1]);
    const double eps = 0.1 * (hi - lo);
    if (std::min(hi - t, t - lo) < eps) {
      // Too close to an end: move away from it, unless the last try was not close as well.
      if (insufficient || t >= hi || t <= lo) {
        t = std::abs(t - hi) < std::abs(t - lo) ? hi - eps : lo + eps;
        insufficient = false;
      } else {
        insufficient = true;
      }
    } else {
      insufficient = false;
    }
    f_new = at(t, g_new);
    gtd_new = dot(g_new, d);
    ++ls_iter;
    if (f_new > f + c1 * t * gtd || f_new >= b_f[low]) {
      b_t[high] = t, b_f[high] = f_new, b_g[high] = g_new, b_gtd[high] = gtd_new;
      low = b_f[0] <= b_f[1] ? 0 : 1;
      high = 1 - low;
    } else {
      if (std::abs(gtd_new) <= -c2 * gtd) {
        done = true;
      } else if (gtd_new * (b_t[high] - b_t[low]) >= 0) {
        b_t[high] = b_t[low], b_f[high] = b_f[low], b_g[high] = b_g[low], b_gtd[high] = b_gtd[low];
      }
      b_t[low] = t, b_f[low] = f_new, b_g[low] = g_new, b_gtd[low] = gtd_new;
    }
  }
  if (b_t.size() == 1) low = 0;
  t = b_t[low];
  g = b_g[low];
  return b_f[low];
}

template <class T>
double LBFGS<T>::step(const Loss& loss) {
  // A step that fails (a loss or gradient that is not finite, or the loss function throwing)
  // puts the parameters and the state back as they were.
  const Vec start = values();
  const State saved = state_;
  const std::size_t evaluations = evaluations_, iterations = iterations_;
  try {
    return iterate(loss);
  } catch (const std::exception& e) {
    set_values(start, 0, start);
    state_ = saved;
    evaluations_ = evaluations, iterations_ = iterations;
    const std::string what = e.what();
    if (what.rfind("LBFGS: ", 0) == 0)
      fail(what, "; the step stopped and the parameters are back where it started");
    throw;
  }
}

template <class T>
double LBFGS<T>::iterate(const Loss& loss) {
  step_iteration_ = 0;
  Vec grad;
  double f = evaluate(loss, grad);
  const double first_loss = f;
  std::size_t evals = 1;
  if (max_abs(grad) <= options_.tolerance_grad) return first_loss;
  for (std::size_t n = 0; n < options_.max_iter;) {
    ++n;
    ++iterations_;
    step_iteration_ = n;
    if (iterations_ == 1) {
      state_.direction.resize(grad.size());
      for (std::size_t i = 0; i < grad.size(); ++i) state_.direction[i] = -grad[i];
      state_.gradient_changes.clear(), state_.steps.clear(), state_.rho.clear();
      state_.h_diag = 1;
    } else {
      // Update the history with the last step s = t·d and the gradient change y.
      Vec y(grad.size()), s(grad.size());
      for (std::size_t i = 0; i < grad.size(); ++i)
        y[i] = grad[i] - state_.previous_gradient[i],
        s[i] = state_.direction[i] * state_.step_length;
      const double ys = dot(y, s);
      if (ys > 1e-10) {
        if (state_.gradient_changes.size() == options_.history_size) {
          state_.gradient_changes.pop_front(), state_.steps.pop_front(), state_.rho.pop_front();
        }
        state_.gradient_changes.push_back(y), state_.steps.push_back(s),
            state_.rho.push_back(1 / ys);
        state_.h_diag = ys / dot(y, y);
      }
      // The two-loop recursion: d = −H·g.
      const std::size_t m = state_.gradient_changes.size();
      Vec al(m), q(grad.size());
      for (std::size_t i = 0; i < grad.size(); ++i) q[i] = -grad[i];
      for (std::size_t i = m; i-- > 0;) {
        al[i] = dot(state_.steps[i], q) * state_.rho[i];
        for (std::size_t k = 0; k < q.size(); ++k) q[k] -= al[i] * state_.gradient_changes[i][k];
      }
      for (double& v : q) v *= state_.h_diag;
      for (std::size_t i = 0; i < m; ++i) {
        const double be = dot(state_.gradient_changes[i], q) * state_.rho[i];
        for (std::size_t k = 0; k < q.size(); ++k) q[k] += (al[i] - be) * state_.steps[i][k];
      }
      state_.direction = std::move(q);
    }
    state_.previous_gradient = grad;
    const double prev_f = f;
    // The first trial step: scaled by the gradient at the very first iteration.
    if (iterations_ == 1) {
      double l1 = 0;
      for (double v : grad) l1 += std::abs(v);
      state_.step_length = std::min(1.0, 1.0 / l1) * options_.lr;
    } else {
      state_.step_length = options_.lr;
    }
    const double gtd = dot(grad, state_.direction);
    if (gtd > -options_.tolerance_change) break;  // not a descent direction any more
    std::size_t ls_evals = 0;
    const Vec x = values();
    if (options_.strong_wolfe) {
      f = strong_wolfe(loss, x, state_.step_length, state_.direction, f, grad, gtd, ls_evals);
      set_values(x, state_.step_length, state_.direction);
    } else {
      set_values(x, state_.step_length, state_.direction);
      if (n != options_.max_iter) {
        f = evaluate(loss, grad);
        ls_evals = 1;
      }
    }
    evals += ls_evals;
    if (n == options_.max_iter || evals >= options_.max_eval) break;
    if (max_abs(grad) <= options_.tolerance_grad) break;
    if (max_abs(state_.direction) * std::abs(state_.step_length) <= options_.tolerance_change)
      break;
    if (std::abs(f - prev_f) < options_.tolerance_change) break;
  }
  return first_loss;
}

template <class T>
std::vector<std::pair<std::string, Array<double>>> LBFGS<T>::state_arrays() const {
  auto vec = [](const Vec& v) {
    Array<double> a = Array<double>::from_shape({v.size()});
    std::copy(v.begin(), v.end(), a.begin());
    return a;
  };
  auto rows = [&](const std::deque<Vec>& d) {
    const std::size_t n = d.empty() ? state_.direction.size() : d.front().size();
    Array<double> a = Array<double>::from_shape({d.size(), n});
    for (std::size_t r = 0; r < d.size(); ++r)
      std::copy(d[r].begin(), d[r].end(), a.data() + r * n);
    return a;
  };
  const Vec rho(state_.rho.begin(), state_.rho.end());
  return {{"direction", vec(state_.direction)},
          {"previous_gradient", vec(state_.previous_gradient)},
          {"step_length", Array<double>(state_.step_length)},
          {"h_diag", Array<double>(state_.h_diag)},
          {"steps", rows(state_.steps)},
          {"gradient_changes", rows(state_.gradient_changes)},
          {"rho", vec(rho)},
          {"iterations", Array<double>(double(iterations_))},
          {"evaluations", Array<double>(double(evaluations_))}};
}

template <class T>
void LBFGS<T>::load_state_arrays(const std::map<std::string, Array<double>>& arrays) {
  std::size_t n = 0;
  for (const auto& p : params_) n += p.size();
  auto get = [&](const char* name) -> const Array<double>& {
    auto it = arrays.find(name);
    if (it == arrays.end()) fail("LBFGS: the state has no '", name, "'");
    for (double v : it->second)
      if (!std::isfinite(v)) fail("LBFGS: the state's '", name, "' holds ", non_finite(v));
    return it->second;
  };
  auto vec = [&](const char* name, bool may_be_empty) {
    const Array<double>& a = get(name);
    if (a.dimension() != 1 || (a.size() != n && !(may_be_empty && a.size() == 0)))
      fail("LBFGS: the state's '", name, "' has shape ", shape_str(a.shape()), ", the ", n,
           " parameter values need (", n, ")");
    return Vec(a.begin(), a.end());
  };
  auto number = [&](const char* name) {
    const Array<double>& a = get(name);
    if (a.dimension() != 0) fail("LBFGS: the state's '", name, "' is not one number");
    return a();
  };
  auto count = [&](const char* name) {
    const double v = number(name);
    if (!(v >= 0 && v == std::floor(v) && v < 9e15))
      fail("LBFGS: the state's '", name, "' is ", v, ", not a count");
    return std::size_t(v);
  };
  State s;
  s.direction = vec("direction", true);
  s.previous_gradient = vec("previous_gradient", true);
  s.step_length = number("step_length");
  s.h_diag = number("h_diag");
  const Array<double>& steps = get("steps");
  const Array<double>& changes = get("gradient_changes");
  const Vec rho = [&] {
    const Array<double>& a = get("rho");
    if (a.dimension() != 1) fail("LBFGS: the state's 'rho' is not a vector");
    return Vec(a.begin(), a.end());
  }();
  const std::size_t m = rho.size();
  if (m > options_.history_size)
    fail("LBFGS: the state holds ", m, " curvature pairs, more than history_size ",
         options_.history_size);
  for (const Array<double>* a : {&steps, &changes})
    if (a->dimension() != 2 || a->shape()[0] != m || (m > 0 && a->shape()[1] != n))
      fail("LBFGS: the state's curvature pairs have shape ", shape_str(a->shape()), ", expected (",
           m, ",", n, ")");
  for (std::size_t r = 0; r < m; ++r) {
    s.steps.emplace_back(steps.data() + r * n, steps.data() + (r + 1) * n);
    s.gradient_changes.emplace_back(changes.data() + r * n, changes.data() + (r + 1) * n);
    s.rho.push_back(rho[r]);
  }
  const std::size_t iterations = count("iterations"), evaluations = count("evaluations");
  state_ = std::move(s);
  iterations_ = iterations, evaluations_ = evaluations;
}

template class LBFGS<float>;
template class LBFGS<double>;

}  // namespace ad::nn
