// Parameter initialisation, always from an explicit seeded generator so that runs reproduce.
#pragma once

#include <random>
#include <utility>

#include "autodiff/variable.hpp"

namespace ad::nn {

/// The random generator of the library: every random choice (initial weights, shuffling,
/// dropout) comes from one that the caller seeds.
using Generator = std::mt19937_64;

namespace init {

/// Whether Kaiming initialisation preserves the variance of the forward or the backward pass.
enum class FanMode { fan_in, fan_out };

/// (fan_in, fan_out) of a weight: (in, out) for (out, in); (in·k·k, out·k·k) for (out, in, k, k).
std::pair<std::size_t, std::size_t> fans(const Shape& shape);

/// U(lo, hi) elementwise.
template <class T>
void uniform(Array<T>& a, double lo, double hi, Generator& rng);
/// N(mean, std²) elementwise.
template <class T>
void normal(Array<T>& a, double mean, double std, Generator& rng);
/// Every element set to `value`.
template <class T>
void constant(Array<T>& a, double value);
template <class T>
void zeros(Array<T>& a) {
  constant(a, 0.0);
}
/// Glorot: U(±gain·√(6 / (fan_in + fan_out))).
template <class T>
void xavier_uniform(Array<T>& a, Generator& rng, double gain = 1.0);
/// Glorot: N(0, gain²·2 / (fan_in + fan_out)).
template <class T>
void xavier_normal(Array<T>& a, Generator& rng, double gain = 1.0);
/// He: U(±√(6 / ((1 + slope²)·fan))), for a (leaky) ReLU of negative slope `slope`.
template <class T>
void kaiming_uniform(Array<T>& a, Generator& rng, double slope = 0.0,
                     FanMode mode = FanMode::fan_in);
/// He: N(0, 2 / ((1 + slope²)·fan)).
template <class T>
void kaiming_normal(Array<T>& a, Generator& rng, double slope = 0.0,
                    FanMode mode = FanMode::fan_in);

}  // namespace init
}  // namespace ad::nn
