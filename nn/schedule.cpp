#include "nn/schedule.hpp"

#include <cmath>

namespace ad::nn {

StepSchedule::StepSchedule(std::uint64_t step_size, double gamma)
    : step_size_(step_size), gamma_(gamma) {
  if (step_size == 0) fail("StepSchedule: step_size must be positive");
}

double StepSchedule::factor(std::uint64_t step) const {
  return std::pow(gamma_, static_cast<double>(step / step_size_));
}

double ExponentialSchedule::factor(std::uint64_t step) const {
  return std::pow(gamma_, static_cast<double>(step));
}

CosineSchedule::CosineSchedule(std::uint64_t steps, double min_factor)
    : steps_(steps), min_factor_(min_factor) {
  if (steps == 0) fail("CosineSchedule: steps must be positive");
}

double CosineSchedule::factor(std::uint64_t step) const {
  if (step >= steps_) return min_factor_;
  const double progress = static_cast<double>(step) / static_cast<double>(steps_);
  return min_factor_ + (1 - min_factor_) * 0.5 * (1 + std::cos(M_PI * progress));
}

WarmupSchedule::WarmupSchedule(std::uint64_t warmup, std::shared_ptr<const Schedule> after)
    : warmup_(warmup), after_(std::move(after)) {}

double WarmupSchedule::factor(std::uint64_t step) const {
  if (step < warmup_) return static_cast<double>(step + 1) / static_cast<double>(warmup_ + 1);
  return after_ ? after_->factor(step - warmup_) : 1.0;
}

template <class T>
Scheduler<T>::Scheduler(Optimizer<T>& optimizer, std::shared_ptr<const Schedule> schedule)
    : optimizer_(optimizer), schedule_(std::move(schedule)) {
  if (!schedule_) fail("Scheduler: schedule is null");
  optimizer_.scale_lr(schedule_->factor(0));
}

template <class T>
void Scheduler<T>::step() {
  set_step(step_ + 1);
}

template <class T>
void Scheduler<T>::set_step(std::uint64_t step) {
  step_ = step;
  optimizer_.scale_lr(schedule_->factor(step_));
}

template class Scheduler<float>;
template class Scheduler<double>;

}  // namespace ad::nn
