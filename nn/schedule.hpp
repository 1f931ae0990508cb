// Learning-rate schedules: a factor of the step count that scales each group's base rate.
// A schedule is a pure function of the step, so resuming only needs the step count.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "nn/optim.hpp"

namespace ad::nn {

/// lr(step) = base_lr · factor(step). step counts schedule steps (epochs or batches, whichever
/// the caller steps it by).
class Schedule {
 public:
  virtual ~Schedule() = default;
  /// The factor of the base rate at `step`.
  virtual double factor(std::uint64_t step) const = 0;
};

/// Multiplies by gamma every step_size steps.
class StepSchedule : public Schedule {
 public:
  /// × gamma every step_size steps.
  StepSchedule(std::uint64_t step_size, double gamma);
  /// The factor of the base rate at `step`.
  double factor(std::uint64_t step) const override;

 private:
  std::uint64_t step_size_;
  double gamma_;
};

/// Multiplies by gamma every step.
class ExponentialSchedule : public Schedule {
 public:
  /// × gamma every step.
  explicit ExponentialSchedule(double gamma) : gamma_(gamma) {}
  /// The factor of the base rate at `step`.
  double factor(std::uint64_t step) const override;

 private:
  double gamma_;
};

/// Cosine annealing from 1 to min_factor over `steps` steps, then min_factor.
class CosineSchedule : public Schedule {
 public:
  /// From 1 to min_factor over `steps`.
  CosineSchedule(std::uint64_t steps, double min_factor = 0.0);
  /// The factor of the base rate at `step`.
  double factor(std::uint64_t step) const override;

 private:
  std::uint64_t steps_;
  double min_factor_;
};

/// Linear warm-up from 1/(warmup + 1) to 1 over `warmup` steps, then `after` (shifted by warmup;
/// constant 1 when null).
class WarmupSchedule : public Schedule {
 public:
  /// Warm-up over `warmup` steps, then `after`.
  WarmupSchedule(std::uint64_t warmup, std::shared_ptr<const Schedule> after = nullptr);
  /// The factor of the base rate at `step`.
  double factor(std::uint64_t step) const override;

 private:
  std::uint64_t warmup_;
  std::shared_ptr<const Schedule> after_;
};

/// Applies a schedule to an optimizer: step() advances the count and sets the rates.
template <class T = float>
class Scheduler {
 public:
  /// Applies `schedule` to `optimizer`'s groups.
  Scheduler(Optimizer<T>& optimizer, std::shared_ptr<const Schedule> schedule);
  /// Advances one step and sets the rates.
  void step();
  /// Jumps to a step count (after loading a checkpoint).
  void set_step(std::uint64_t step);
  /// Steps taken.
  std::uint64_t steps() const { return step_; }
  /// The current factor.
  double factor() const { return schedule_->factor(step_); }

 private:
  Optimizer<T>& optimizer_;
  std::shared_ptr<const Schedule> schedule_;
  std::uint64_t step_ = 0;
};

/// Lowers the learning rate when a monitored figure (a validation loss) stops improving, as
/// PyTorch's ReduceLROnPlateau in "min" mode with a relative threshold: after more than
/// `patience` steps without a figure below best · (1 − threshold), the rates are multiplied by
/// `factor` (not below min_factor of the base rates), then `cooldown` steps pass before counting
/// again. A NaN figure is never an improvement. Not to be combined with a Scheduler on the same
/// optimizer (both set the rates).
template <class T = float>
class ReduceLROnPlateau {
 public:
  /// How it lowers the rate.
  struct Options {
    double factor = 0.1;        ///< multiplies the rate at each reduction, in (0, 1)
    std::size_t patience = 10;  ///< steps without improvement tolerated
    double threshold = 1e-4;    ///< relative improvement that counts, in [0, 1)
    std::size_t cooldown = 0;   ///< steps after a reduction before counting again
    double min_factor = 0;      ///< the rate never goes below min_factor · base rate, in [0, 1]
  };
  /// Watches `optimizer`'s rates (at their base values to start with).
  ReduceLROnPlateau(Optimizer<T>& optimizer, Options options);
  /// Takes this step's figure; returns whether the rates were lowered.
  bool step(double figure);
  /// The current factor of the base rates.
  double factor() const { return factor_; }
  /// The best figure so far (+∞ before the first).
  double best() const { return best_; }
  /// Its state as named numbers (for a checkpoint's meta, under `prefix`).
  void save(std::map<std::string, double>& meta, const std::string& prefix) const;
  /// Restores what save() wrote (a key missing or out of range throws, naming it).
  void load(const std::map<std::string, double>& meta, const std::string& prefix);

 private:
  Optimizer<T>& optimizer_;
  Options options_;
  double factor_ = 1;
  double best_;
  std::size_t bad_steps_ = 0;
  std::size_t cooldown_left_ = 0;
};

}  // namespace ad::nn
