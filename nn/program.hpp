// The program of a module's forward (ad::trace with the module's parameters by name).
#pragma once

#include "autodiff/program.hpp"
#include "nn/module.hpp"

namespace ad::nn {

/// The program of `module`'s forward at the example input `x`, its parameters named by module
/// path ("0.weight", "encoder.fc1.bias"), traced in the module's current mode (call eval() first
/// for the program of inference: dropout off, BatchNorm's running statistics as constants).
/// Axis 0 of x is the batch axis unless `dynamic_batch` is false. See ad::trace.
template <class T>
Program<T> trace(Module<T>& module, const Variable<T>& x, bool dynamic_batch = true) {
  TraceOptions<T> options;
  options.parameters = module.named_parameters();
  options.dynamic_batch = dynamic_batch;
  return ad::trace<T>(std::function<Variable<T>(const Variable<T>&)>(
                          [&module](const Variable<T>& input) { return module(input); }),
                      x, options);
}

}  // namespace ad::nn
