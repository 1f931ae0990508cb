// L-BFGS with a strong-Wolfe line search, for minimising smooth deterministic functions (PyTorch's
// torch.optim.LBFGS, line_search_fn="strong_wolfe", step by step).
#pragma once

#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "autodiff/variable.hpp"

namespace ad::nn {

/// How LBFGS minimises (PyTorch's defaults).
struct LBFGSOptions {
  double lr = 1;                   ///< the first trial step of each line search (after the first)
  std::size_t max_iter = 20;       ///< iterations per step()
  std::size_t max_eval = 25;       ///< function evaluations per step() (PyTorch: max_iter · 5/4)
  double tolerance_grad = 1e-7;    ///< stop when max |gradient| is at most this
  double tolerance_change = 1e-9;  ///< stop when the step or the change of the loss is below this
  std::size_t history_size = 100;  ///< curvature pairs kept
  bool strong_wolfe = true;        ///< line search (else fixed steps of lr)
};

/// Limited-memory BFGS over a set of parameters (all in one vector of doubles internally). Each
/// step() runs up to max_iter iterations, calling `loss` (which computes the loss from the
/// current parameter values and returns it; the gradients are computed here) as often as the line
/// search needs. The direction comes from the last history_size pairs (s, y) with yᵀs > 1e-10;
/// the step length satisfies the strong Wolfe conditions (c1 = 1e-4, c2 = 0.9, at most 25 trials)
/// found by bracketing and cubic interpolation. The state carries over between step() calls.
/// Not for noisy mini-batch losses. Its state goes into checkpoints (save_checkpoint with an
/// LBFGS), so that a resumed run continues as the uninterrupted one.
template <class T = float>
class LBFGS {
 public:
  /// The function being minimised: returns the loss (a one-element Variable) at the current
  /// parameter values.
  using Loss = std::function<Variable<T>()>;

  /// Minimises over `params` (leaves that require grad).
  LBFGS(std::vector<Variable<T>> params, LBFGSOptions options = {});
  /// Runs the iterations; returns the loss at the parameters the step started from. A loss or a
  /// gradient that is not finite (from the start, or reached by the line search) stops the step:
  /// the parameters and the state are put back as they were before it, and ad::Error names the
  /// iteration and the evaluation (and the parameter and entry of a gradient).
  double step(const Loss& loss);
  /// Function evaluations so far, over every step().
  std::size_t evaluations() const { return evaluations_; }
  /// Iterations so far.
  std::size_t iterations() const { return iterations_; }
  /// The state that carries over between steps, as named arrays (what checkpoints store:
  /// "direction", "previous_gradient", "step_length", "h_diag", "steps" and "gradient_changes"
  /// (one row per curvature pair), "rho", "iterations", "evaluations").
  std::vector<std::pair<std::string, Array<double>>> state_arrays() const;
  /// Restores state_arrays(); every array is checked (present, of the shape the parameters
  /// need, finite) before anything changes, else ad::Error names it.
  void load_state_arrays(const std::map<std::string, Array<double>>& arrays);

 private:
  using Vec = std::vector<double>;
  /// The loss and its gradient (flat) at the current values.
  double evaluate(const Loss& loss, Vec& grad);
  /// The current values (flat).
  Vec values() const;
  /// Sets the values to x + t·d.
  void set_values(const Vec& x, double t, const Vec& d);
  /// Strong-Wolfe search along d from x (loss f, gradient g, slope gtd) starting at step t:
  /// returns the new loss with its gradient in g and the step in t; leaves the parameters at x.
  double strong_wolfe(const Loss& loss, const Vec& x, double& t, const Vec& d, double f, Vec& g,
                      double gtd, std::size_t& evals);

  /// step()'s iterations, which may throw.
  double iterate(const Loss& loss);
  std::vector<Variable<T>> params_;
  LBFGSOptions options_;
  std::size_t evaluations_ = 0, iterations_ = 0;
  std::size_t step_iteration_ = 0;  ///< the iteration of the step in progress (for messages)
  /// What carries over between steps.
  struct State {
    Vec direction, previous_gradient;
    double step_length = 0, h_diag = 1;
    std::deque<Vec> gradient_changes, steps;  ///< the history: y and s of each pair
    std::deque<double> rho;                   ///< 1 / yᵀs of each pair
  };
  State state_;
};

}  // namespace ad::nn
