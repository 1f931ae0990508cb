#include "nn/init.hpp"

#include <cmath>

namespace ad::nn::init {

std::pair<std::size_t, std::size_t> fans(const Shape& shape) {
  if (shape.size() < 2)
    fail("init: fans need a weight of at least 2 axes, got shape ", shape_str(shape));
  std::size_t receptive = 1;
  for (std::size_t d = 2; d < shape.size(); ++d) receptive *= shape[d];
  return {shape[1] * receptive, shape[0] * receptive};
}

template <class T>
void uniform(Array<T>& a, double lo, double hi, Generator& rng) {
  std::uniform_real_distribution<double> u(lo, hi);
  for (auto& x : a) x = static_cast<T>(u(rng));
}

template <class T>
void normal(Array<T>& a, double mean, double std, Generator& rng) {
  std::normal_distribution<double> n(mean, std);
  for (auto& x : a) x = static_cast<T>(n(rng));
}

template <class T>
void constant(Array<T>& a, double value) {
  std::fill(a.begin(), a.end(), static_cast<T>(value));
}

template <class T>
void xavier_uniform(Array<T>& a, Generator& rng, double gain) {
  auto [in, out] = fans(a.shape());
  const double bound = gain * std::sqrt(6.0 / static_cast<double>(in + out));
  uniform(a, -bound, bound, rng);
}

template <class T>
void xavier_normal(Array<T>& a, Generator& rng, double gain) {
  auto [in, out] = fans(a.shape());
  normal(a, 0.0, gain * std::sqrt(2.0 / static_cast<double>(in + out)), rng);
}

namespace {
double kaiming_std(const Shape& shape, double slope, FanMode mode) {
  auto [in, out] = fans(shape);
  const double fan = static_cast<double>(mode == FanMode::fan_in ? in : out);
  return std::sqrt(2.0 / ((1.0 + slope * slope) * fan));
}
}  // namespace

template <class T>
void kaiming_uniform(Array<T>& a, Generator& rng, double slope, FanMode mode) {
  const double bound = std::sqrt(3.0) * kaiming_std(a.shape(), slope, mode);
  uniform(a, -bound, bound, rng);
}

template <class T>
void kaiming_normal(Array<T>& a, Generator& rng, double slope, FanMode mode) {
  normal(a, 0.0, kaiming_std(a.shape(), slope, mode), rng);
}

#define AD_INSTANTIATE(T)                                                \
  template void uniform(Array<T>&, double, double, Generator&);          \
  template void normal(Array<T>&, double, double, Generator&);           \
  template void constant(Array<T>&, double);                             \
  template void xavier_uniform(Array<T>&, Generator&, double);           \
  template void xavier_normal(Array<T>&, Generator&, double);            \
  template void kaiming_uniform(Array<T>&, Generator&, double, FanMode); \
  template void kaiming_normal(Array<T>&, Generator&, double, FanMode);

AD_INSTANTIATE(float)
AD_INSTANTIATE(double)
#undef AD_INSTANTIATE

}  // namespace ad::nn::init
