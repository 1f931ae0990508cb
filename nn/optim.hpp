// Optimizers: SGD (momentum, Nesterov, weight decay), Adam, AdamW, RMSProp, Adagrad; gradient
// clipping.
// Each takes an options struct with documented defaults, skips parameters without a gradient,
// and supports parameter groups with their own learning rate and options.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "autodiff/flat.hpp"
#include "autodiff/variable.hpp"

namespace ad::nn {

/// Options a parameter group sets for itself; those it leaves unset are the optimizer's. Each
/// optimizer uses the ones its options struct has (setting another, such as beta1 for SGD, is an
/// error).
struct GroupOptions {
  std::optional<double> weight_decay;  ///< L2 penalty (decoupled for AdamW)
  std::optional<double> momentum;      ///< SGD and RMSProp
  std::optional<double> dampening;     ///< SGD
  std::optional<double> beta1;         ///< Adam and AdamW
  std::optional<double> beta2;         ///< Adam and AdamW
  std::optional<double> eps;           ///< Adam, AdamW, RMSProp and Adagrad
  std::optional<double> alpha;         ///< RMSProp
  std::optional<bool> nesterov;        ///< SGD
};

/// Parameters that share their options.
template <class T = float>
struct ParamGroup {
  /// A group of parameters with its rate (0: the optimizer's) and options.
  ParamGroup(std::vector<Variable<T>> p, double rate = 0, GroupOptions o = {})
      : params(std::move(p)), lr(rate), options(o) {}
  /// Its parameters.
  std::vector<Variable<T>> params;
  double lr = 0;  ///< its learning rate (0: the optimizer's options.lr); schedules scale it
  /// Its own options.
  GroupOptions options;
};

/// What an optimizer keeps for one parameter, saved in checkpoints.
template <class T = float>
struct ParamState {
  std::uint64_t step = 0;                   ///< updates applied so far
  std::map<std::string, Array<T>> buffers;  ///< e.g. "momentum_buffer", "exp_avg"
};

/// The base: groups of parameters, their learning rates and options, and per-parameter state.
/// Built over a FlatParameters (Module::flatten_parameters()), an optimizer updates all the
/// parameters in one vectorised pass over the flat buffers where it can (SGD does).
template <class T = float>
class Optimizer {
 public:
  virtual ~Optimizer() = default;
  /// Updates every parameter that has a gradient.
  void step();
  /// Forgets every parameter's gradient.
  void zero_grad();

  /// The parameter groups (their rates are the live ones).
  std::vector<ParamGroup<T>>& groups() { return groups_; }
  /// Group g.
  const ParamGroup<T>& groups_at(std::size_t g) const { return groups_.at(g); }
  /// The learning rate each group started with (schedules scale it).
  double base_lr(std::size_t group) const { return base_lrs_.at(group); }
  /// Sets every group's learning rate to its base rate times `factor`.
  void scale_lr(double factor);
  /// Every parameter in group order, with its state (index-aligned).
  std::vector<Variable<T>> parameters() const;
  /// Each parameter's state, in parameters() order.
  std::vector<ParamState<T>>& state() { return state_; }
  /// Each parameter's state, in parameters() order.
  const std::vector<ParamState<T>>& state() const { return state_; }
  /// "SGD", "Adam", "AdamW", "RMSProp" or "Adagrad": saved with the state, so that a checkpoint of
  /// one kind is never loaded into another.
  const std::string& name() const { return name_; }

 protected:
  /// Groups whose rate 0 means `default_lr`; `name` names errors and checkpoints.
  Optimizer(std::vector<ParamGroup<T>> groups, double default_lr, const char* name);
  /// The optimizer's name.
  std::string name_;
  /// Updates one parameter p (value, gradient) of group `group` with its learning rate.
  virtual void update(Array<T>& p, const Array<T>& grad, ParamState<T>& state, std::size_t group,
                      double lr) = 0;
  /// Updates every parameter of a flat buffer at once; returns false when it cannot (then step()
  /// goes parameter by parameter).
  virtual bool update_flat(FlatParameters<T>&, double) { return false; }
  /// Refuses group options this optimizer does not have, naming `name` and the group.
  void allow_options(const char* name, const std::vector<const char*>& allowed) const;
  /// The flat buffers it was built over, if any.
  std::shared_ptr<FlatParameters<T>> flat_;

 private:
  std::vector<ParamGroup<T>> groups_;
  std::vector<double> base_lrs_;
  std::vector<ParamState<T>> state_;
};

/// d = g + weight_decay·p; with momentum: b = momentum·b + (1 − dampening)·d (b = d at the first
/// step), d = nesterov ? d + momentum·b : b; then p −= lr·d.
struct SGDOptions {
  double lr = 0.01;           ///< learning rate
  double momentum = 0.0;      ///< momentum factor (0: none)
  double dampening = 0.0;     ///< dampening of the momentum
  double weight_decay = 0.0;  ///< L2 penalty
  bool nesterov = false;      ///< Nesterov momentum
};

/// Stochastic gradient descent (see SGDOptions).
template <class T = float>
class SGD : public Optimizer<T> {
 public:
  /// Over `params`, one group.
  SGD(std::vector<Variable<T>> params, const SGDOptions& options);
  /// Over parameter groups.
  SGD(std::vector<ParamGroup<T>> groups, const SGDOptions& options);
  /// Over flat parameter and gradient buffers: one pass updates them all (the momentum buffers
  /// are flat too).
  SGD(std::shared_ptr<FlatParameters<T>> flat, const SGDOptions& options);

 protected:
  /// One parameter's update.
  void update(Array<T>& p, const Array<T>& grad, ParamState<T>& state, std::size_t group,
              double lr) override;
  /// Every parameter in one pass over the flat buffers.
  bool update_flat(FlatParameters<T>& flat, double lr) override;

 private:
  SGDOptions options(std::size_t group) const;
  SGDOptions o_;
  std::shared_ptr<memory::Arena> momentum_;  ///< the flat momentum buffer, once there is one
};

/// Adam: g += weight_decay·p (L2); m = β1·m + (1 − β1)·g; v = β2·v + (1 − β2)·g²;
/// p −= lr·m̂ / (√v̂ + eps) with m̂ = m/(1 − β1^t), v̂ = v/(1 − β2^t).
struct AdamOptions {
  double lr = 1e-3;           ///< learning rate
  double beta1 = 0.9;         ///< decay of the first moment
  double beta2 = 0.999;       ///< decay of the second moment
  double eps = 1e-8;          ///< added to the root of the second moment
  double weight_decay = 0.0;  ///< L2 penalty (AdamW: decoupled decay)
};

/// Adam (see AdamOptions).
template <class T = float>
class Adam : public Optimizer<T> {
 public:
  /// Over `params`, one group.
  Adam(std::vector<Variable<T>> params, const AdamOptions& options);
  /// Over parameter groups.
  Adam(std::vector<ParamGroup<T>> groups, const AdamOptions& options);

 protected:
  /// One parameter's update.
  void update(Array<T>& p, const Array<T>& grad, ParamState<T>& state, std::size_t group,
              double lr) override;
  /// Decoupled weight decay (AdamW) instead of L2 in the gradient (Adam).
  bool decoupled_ = false;

 private:
  AdamOptions options(std::size_t group) const;
  AdamOptions o_;
};

/// AdamW: p −= lr·weight_decay·p, then the Adam step without L2. weight_decay defaults to 0.01.
struct AdamWOptions : AdamOptions {
  AdamWOptions() { weight_decay = 0.01; }
};

/// AdamW: Adam with decoupled weight decay (see AdamWOptions).
template <class T = float>
class AdamW : public Adam<T> {
 public:
  /// Over `params`, one group.
  AdamW(std::vector<Variable<T>> params, const AdamWOptions& options = {});
  /// Over parameter groups.
  AdamW(std::vector<ParamGroup<T>> groups, const AdamWOptions& options = {});
};

/// RMSProp: g += weight_decay·p; v = α·v + (1 − α)·g²; with momentum:
/// b = momentum·b + g/(√v + eps), p −= lr·b; else p −= lr·g/(√v + eps).
struct RMSPropOptions {
  double lr = 0.01;           ///< learning rate
  double alpha = 0.99;        ///< decay of the squared average
  double eps = 1e-8;          ///< added to its root
  double weight_decay = 0.0;  ///< L2 penalty
  double momentum = 0.0;      ///< momentum factor (0: none)
};

/// RMSProp (see RMSPropOptions).
template <class T = float>
class RMSProp : public Optimizer<T> {
 public:
  /// Over `params`, one group.
  RMSProp(std::vector<Variable<T>> params, const RMSPropOptions& options);
  /// Over parameter groups.
  RMSProp(std::vector<ParamGroup<T>> groups, const RMSPropOptions& options);

 protected:
  /// One parameter's update.
  void update(Array<T>& p, const Array<T>& grad, ParamState<T>& state, std::size_t group,
              double lr) override;

 private:
  RMSPropOptions options(std::size_t group) const;
  RMSPropOptions o_;
};

/// Adagrad: g += weight_decay·p; s += g² (s starts at initial_accumulator_value);
/// p −= lr_t·g / (√s + eps) with lr_t = lr / (1 + (t − 1)·lr_decay) at step t (as PyTorch's).
struct AdagradOptions {
  double lr = 0.01;                      ///< learning rate
  double lr_decay = 0.0;                 ///< decay of the rate with the step count
  double weight_decay = 0.0;             ///< L2 penalty
  double initial_accumulator_value = 0;  ///< where the sum of squares starts
  double eps = 1e-10;                    ///< added to its root
};

/// Adagrad (see AdagradOptions).
template <class T = float>
class Adagrad : public Optimizer<T> {
 public:
  /// Over `params`, one group.
  Adagrad(std::vector<Variable<T>> params, const AdagradOptions& options = {});
  /// Over parameter groups.
  Adagrad(std::vector<ParamGroup<T>> groups, const AdagradOptions& options = {});

 protected:
  /// One parameter's update.
  void update(Array<T>& p, const Array<T>& grad, ParamState<T>& state, std::size_t group,
              double lr) override;

 private:
  AdagradOptions options(std::size_t group) const;
  AdagradOptions o_;
};

/// Scales the gradients of `params` so that their global L2 norm is at most max_norm; returns
/// the norm before clipping.
template <class T>
double clip_grad_norm(const std::vector<Variable<T>>& params, double max_norm);

}  // namespace ad::nn
