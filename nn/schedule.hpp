// Learning-rate schedules: a factor of the step count that scales each group's base rate.
// A schedule is a pure function of the step, so resuming only needs the step count.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

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

}  // namespace ad::nn
