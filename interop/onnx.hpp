// ONNX export and import. Export writes a program (ad::trace) or a module's forward as an ONNX
// model, opset 17, through ONNX's own protobuf classes: each op maps to one ONNX node or a few
// (the table in docs/onnx.md), and an op without an equivalent is an error naming its node.
// Import reads a model into a module whose forward runs the graph on this library's ops.
#pragma once

#include <map>
#include <memory>
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

/// How load() builds a module from a model.
struct LoadOptions {
  /// Floating-point initializers become trainable parameters (false: constants of the module).
  bool trainable = true;
};

namespace detail {
struct Graph;
}  // namespace detail

/// A module whose forward runs an ONNX graph on this library's ops (differentiable: it trains,
/// fine-tunes and gradchecks like any other module). Its floating-point initializers are its
/// parameters, named by their ONNX names where these are module paths ("conv1.weight"; other
/// names have their '/' and ':' replaced by '_'): named_parameters(), checkpoints and the
/// optimizers see them. Integer initializers (shapes, indices) are constants.
template <class T>
class Model : public nn::Module<T> {
 public:
  /// The module of a graph that load() read.
  explicit Model(std::shared_ptr<const detail::Graph> graph, const LoadOptions& options);
  /// The graph's inputs (initializers excluded), in order.
  std::vector<std::string> input_names() const;
  /// The graph's outputs, in order.
  std::vector<std::string> output_names() const;
  /// The first output for the only input.
  Variable<T> forward(const Variable<T>& x) override;
  /// Every output, for the inputs by position. An integer input (token ids) is given as whole
  /// numbers of T.
  std::vector<Variable<T>> run(const std::vector<Variable<T>>& inputs);
  /// Every output, for the inputs by name.
  std::vector<Variable<T>> run(const std::map<std::string, Variable<T>>& inputs);
  /// Every value the graph computes, by ONNX name, for the inputs by position: integer values
  /// (shapes, indices) as T. (The conformance tests compare outputs of any type with it.)
  std::map<std::string, Variable<T>> run_all(const std::vector<Variable<T>>& inputs,
                                             const std::vector<std::string>& wanted);
  /// The ONNX name of each parameter, by module path.
  const std::map<std::string, std::string>& onnx_names() const { return onnx_names_; }
  /// The ONNX ops of the graph that this library does not run (empty when it runs them all).
  std::vector<std::string> unsupported_ops() const;

 private:
  struct Slot;
  std::shared_ptr<const detail::Graph> graph_;
  std::vector<std::shared_ptr<Slot>> slots_;
  std::map<std::string, std::string> onnx_names_;
};

/// Reads an ONNX model (a file, or the bytes of one with load_bytes) as a Model. Malformed models
/// are ad::Error naming what is wrong: not a ModelProto, a node reading a value nothing defines
/// (a missing initializer, a cycle), an initializer whose data does not match its shape, a
/// declared extent that overflows. An op this library does not run is an error when the model
/// runs (unsupported_ops() lists them first).
template <class T>
std::shared_ptr<Model<T>> load(const std::string& path, const LoadOptions& options = {});
template <class T>
std::shared_ptr<Model<T>> load_bytes(const std::string& bytes, const LoadOptions& options = {});

/// A tensor in ONNX's own file format (a serialized TensorProto, as ONNX's test data holds it):
/// its values as T and its ONNX element type (1 float, 7 int64, 9 bool, 11 double, ...).
template <class T>
std::pair<Array<T>, int> read_tensor(const std::string& path);

/// The ONNX ops that load() runs (for the docs' table).
std::vector<std::string> supported_ops();

/// Checks a serialized model with ONNX's checker and its shape inference in strict mode (every
/// node's types and shapes inferred, none contradicting what the model declares); throws
/// ad::Error with ONNX's message otherwise. Returns the graph outputs' inferred shapes, one
/// string each ("batch,10").
std::vector<std::string> check(const std::string& model);

}  // namespace ad::onnx
