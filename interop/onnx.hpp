// ONNX export: a program (ad::trace) or a module's forward as an ONNX model, opset 17, through
// ONNX's own protobuf classes. Each op of a program maps to one ONNX node or a few (the table in
// docs/onnx.md); an op without an equivalent is an error naming it and its node.
#pragma once

#include <string>
#include <vector>

#include "autodiff/program.hpp"
#include "nn/module.hpp"

namespace ad::onnx {

/// The opset the models are written for (what Debian's ONNX 1.12 checks).
inline constexpr int opset = 17;

/// How a program is written as an ONNX model.
struct SaveOptions {
  /// Names of the graph's outputs ("output" for one, "output0", "output1", ... otherwise).
  std::vector<std::string> output_names;
  /// The name of the symbolic batch dimension of the inputs and outputs (a program traced with
  /// a dynamic batch); the other extents are fixed.
  std::string batch_name = "batch";
  /// The graph's name.
  std::string graph_name = "ad";
};

/// The program as a serialized ONNX ModelProto: inputs and outputs typed (float or double) with
/// the batch axis symbolic, parameters and constants as initializers under their names
/// ("fc1.weight", "c0"). Throws ad::Error naming the first node without an ONNX equivalent (its op,
/// its place in the program and its line as Program::str() prints it).
template <class T>
std::string to_model(const Program<T>& program, const SaveOptions& options = {});

/// Writes to_model(program) to `path` atomically (a temporary file, fsync, rename).
template <class T>
void save(const Program<T>& program, const std::string& path, const SaveOptions& options = {});

/// Writes the ONNX model of `module`'s forward: traced at `example` in evaluation mode (dropout
/// off, BatchNorm's running statistics; the module's mode is put back), parameters named by
/// module path, the batch axis symbolic.
template <class T>
void save(nn::Module<T>& module, const Variable<T>& example, const std::string& path,
          const SaveOptions& options = {});

/// Checks a serialized model with ONNX's checker and its shape inference in strict mode (every
/// node's types and shapes inferred, none contradicting what the model declares); throws
/// ad::Error with ONNX's message otherwise. Returns the graph outputs' inferred shapes, one
/// string each ("batch,10").
std::vector<std::string> check(const std::string& model);

}  // namespace ad::onnx
