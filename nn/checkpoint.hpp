// Checkpoints: a model's parameters, buffers and states, an optimizer's state and named numbers,
// in one .npz file that NumPy reads without this library.
//
// Entries (each a .npy array):
//   <dotted name>                  every parameter, buffer (float32/64) and state (uint64) of the
//   model optimizer/<param>/<buffer>     the optimizer's per-parameter buffers (e.g.
//   momentum_buffer) optimizer/<param>/step         its per-parameter step count (uint64, 0-d)
//   optimizer/type                 the optimizer's name ("SGD", "Adam", ...) as uint8 bytes
//   meta/<key>                     named numbers such as the epoch (float64, 0-d)
#pragma once

#include <functional>
#include <map>
#include <string>

#include "nn/lbfgs.hpp"
#include "nn/module.hpp"
#include "nn/optim.hpp"

namespace ad::nn {

/// Named numbers stored beside the model (epoch, schedule step, ...).
using Meta = std::map<std::string, double>;

/// Saves atomically (temporary file, then rename): a crash mid-save never leaves a torn file.
template <class T>
void save_checkpoint(const std::string& path, const Module<T>& model,
                     const Optimizer<T>* optimizer = nullptr, const Meta& meta = {});

/// How load_checkpoint loads.
struct LoadOptions {
  /// Start the optimizer afresh instead of loading its state: needed to resume with another
  /// kind of optimizer, or from a checkpoint saved without one. Without it, both are errors.
  bool reset_optimizer = false;
  /// Called with the meta values before anything is written; it throws to refuse them.
  std::function<void(const Meta&)> check_meta;
};

/// Loads into `model` (and `optimizer`, when given) and returns the meta numbers. Everything is
/// checked before anything is written: a missing or unexpected entry, a wrong shape or dtype,
/// optimizer state of another kind of optimizer (or none at all), or a corrupt or truncated
/// archive throws ad::Error naming the entry and the file, and leaves the model and optimizer
/// untouched.
template <class T>
Meta load_checkpoint(const std::string& path, Module<T>& model, Optimizer<T>* optimizer = nullptr,
                     const LoadOptions& options = {});

/// save_checkpoint with the state of an L-BFGS minimiser (optimizer/type "LBFGS", its arrays
/// under optimizer/lbfgs/, see LBFGS::state_arrays).
template <class T>
void save_checkpoint(const std::string& path, const Module<T>& model, const LBFGS<T>& lbfgs,
                     const Meta& meta = {});

/// load_checkpoint into a model and an L-BFGS minimiser: its state is checked with the rest
/// before anything is written (reset_optimizer starts it afresh instead).
template <class T>
Meta load_checkpoint(const std::string& path, Module<T>& model, LBFGS<T>& lbfgs,
                     const LoadOptions& options = {});

}  // namespace ad::nn
