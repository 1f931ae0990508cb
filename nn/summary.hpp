// nn::summary: a model's layers, their output shapes and parameter counts (as Keras's summary and
// torchinfo print them).
#pragma once

#include <cstddef>
#include <iosfwd>
#include <string>
#include <vector>

#include "nn/module.hpp"

namespace ad::nn {

/// What summary() found: one row per module call, in call order.
struct ModelSummary {
  /// One call of a module.
  struct Row {
    std::string name;        ///< dotted name in the model ("" for the model itself)
    std::string type;        ///< the module's class ("Linear", "Conv2d", ...)
    std::size_t depth = 0;   ///< 0 for the model, 1 for its children, ...
    Shape output;            ///< shape of what the call returned
    std::size_t parameters;  ///< parameter elements of the module and its submodules
  };
  std::vector<Row> rows;             ///< every call, the model's first
  std::size_t total_parameters = 0;  ///< the model's parameter elements (tied ones once)
  std::size_t parameter_bytes = 0;   ///< their memory
  /// The table as text: one line per row, indented by depth, then the totals.
  std::string str() const;
};

/// Writes summary.str().
std::ostream& operator<<(std::ostream& out, const ModelSummary& summary);

/// Runs `model` once on zeros of `input_shape` (batch axis included), in evaluation mode and
/// without recording, and notes each module called through operator() (Sequential calls its
/// modules so; a custom model's forward should too, `fc1_->operator()(x)` or `(*fc1_)(x)`, for its
/// parts to appear). Parameters are counted whether or not a module was called. The model's
/// mode is put back afterwards. An error of the forward pass propagates, naming its op.
template <class T>
ModelSummary summary(Module<T>& model, const Shape& input_shape);

}  // namespace ad::nn
