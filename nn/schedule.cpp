#include "nn/schedule.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

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

template <class T>
ReduceLROnPlateau<T>::ReduceLROnPlateau(Optimizer<T>& optimizer, Options options)
    : optimizer_(optimizer), options_(options), best_(std::numeric_limits<double>::infinity()) {
  if (!(options_.factor > 0 && options_.factor < 1))
    fail("ReduceLROnPlateau: factor is ", options_.factor, "; it must be in (0, 1)");
  if (!(options_.threshold >= 0 && options_.threshold < 1))
    fail("ReduceLROnPlateau: threshold is ", options_.threshold, "; it must be in [0, 1)");
  if (!(options_.min_factor >= 0 && options_.min_factor <= 1))
    fail("ReduceLROnPlateau: min_factor is ", options_.min_factor, "; it must be in [0, 1]");
  optimizer_.scale_lr(factor_);
}

template <class T>
bool ReduceLROnPlateau<T>::step(double figure) {
  if (figure < best_ * (1 - options_.threshold)) {
    best_ = figure;
    bad_steps_ = 0;
  } else {
    ++bad_steps_;
  }
  if (cooldown_left_ > 0) {
    --cooldown_left_;
    bad_steps_ = 0;
  }
  if (bad_steps_ <= options_.patience) return false;
  bad_steps_ = 0;
  cooldown_left_ = options_.cooldown;
  const double lowered = std::max(factor_ * options_.factor, options_.min_factor);
  if (lowered >= factor_) return false;
  factor_ = lowered;
  optimizer_.scale_lr(factor_);
  return true;
}

template <class T>
void ReduceLROnPlateau<T>::save(std::map<std::string, double>& meta,
                                const std::string& prefix) const {
  meta[prefix + "factor"] = factor_;
  meta[prefix + "best"] = best_;
  meta[prefix + "bad_steps"] = static_cast<double>(bad_steps_);
  meta[prefix + "cooldown_left"] = static_cast<double>(cooldown_left_);
}

template <class T>
void ReduceLROnPlateau<T>::load(const std::map<std::string, double>& meta,
                                const std::string& prefix) {
  auto get = [&](const std::string& key, double low, double high) {
    auto it = meta.find(prefix + key);
    if (it == meta.end()) fail("ReduceLROnPlateau::load: no meta/", prefix, key);
    const double v = it->second;
    if (!(v >= low && v <= high))
      fail("ReduceLROnPlateau::load: meta/", prefix, key, " is ", v, ", not in [", low, ", ", high,
           "]");
    return v;
  };
  auto count = [&](const std::string& key) {
    const double v = get(key, 0, 9007199254740992.0);
    if (v != std::floor(v))
      fail("ReduceLROnPlateau::load: meta/", prefix, key, " is ", v, ", not a whole number");
    return static_cast<std::size_t>(v);
  };
  const double factor = get("factor", options_.min_factor, 1);
  const auto found = meta.find(prefix + "best");
  if (found == meta.end()) fail("ReduceLROnPlateau::load: no meta/", prefix, "best");
  const std::size_t bad = count("bad_steps"), cooldown = count("cooldown_left");
  factor_ = factor;
  best_ = found->second;
  bad_steps_ = bad;
  cooldown_left_ = cooldown;
  optimizer_.scale_lr(factor_);
}

template class ReduceLROnPlateau<float>;
template class ReduceLROnPlateau<double>;
template class Scheduler<float>;
template class Scheduler<double>;

}  // namespace ad::nn
