// The program behind a computation: ad::trace runs a function once (twice, to find the batch axis)
// and reads back the ops it called, each with its attributes, as a program of primitives (as
// JAX's jaxpr is one). A program prints (text, Graphviz dot), runs again on new inputs of other
// batch sizes (on Variables: differentiable, gradient-checkable), and is what ONNX export reads.
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "autodiff/trace.hpp"
#include "autodiff/variable.hpp"

namespace ad {

/// An extent of a program's value or an integer attribute of a node, as a function of the batch
/// size B: scale·B + offset (scale 0: fixed).
struct Dim {
  long scale = 0;   ///< how many times the batch size
  long offset = 0;  ///< plus this
  /// The extent for batch size `batch`.
  long at(long batch) const { return scale * batch + offset; }
  /// "B", "4B", "2B+1", "10".
  std::string str() const;
};

/// A program: inputs, parameters (named: "fc1.weight") and constants, nodes in the order they run
/// (each an op of the library with its attributes, reading earlier values), and outputs. Values
/// are numbered: every input, parameter, constant and node output has one id.
template <class T>
struct Program {
  /// Where a value comes from.
  enum class Source { input, parameter, constant, node };

  /// One value of the program.
  struct Value {
    Source source;           ///< an input, a parameter, a constant or a node's output
    std::string name;        ///< the input's or parameter's name; "c3" or "%7" otherwise
    std::vector<Dim> shape;  ///< its extents, in terms of the batch size
    std::size_t index = 0;   ///< its place in inputs, parameters, constants or nodes
  };

  /// An integer inside an attribute that depends on the batch size: entry `position` of
  /// attribute `attribute` (position 0 for a single integer) is dim.at(B).
  struct BatchEntry {
    std::string attribute;     ///< the attribute's name
    std::size_t position = 0;  ///< the entry of a list (0 for a single integer)
    Dim dim;                   ///< its value as a function of B
  };

  /// One call of an op.
  struct Node {
    std::string op;                   ///< the op's name (its replay and its ONNX mapping go by it)
    Attributes attributes;            ///< its attributes at the traced batch size
    std::vector<std::size_t> inputs;  ///< value ids
    std::size_t output = 0;           ///< value id
    std::vector<BatchEntry> batch_entries;  ///< the integer attributes that follow the batch
  };

  std::vector<Value> values;         ///< every value, by id
  std::vector<std::size_t> inputs;   ///< value ids of the inputs, in order
  std::vector<std::size_t> outputs;  ///< value ids of the outputs, in order
  /// The parameters (shared with the model traced: running the program uses their current
  /// values, and gradients reach them).
  std::vector<std::pair<std::string, Variable<T>>> parameters;
  std::vector<Array<T>> constants;  ///< the constants' values
  std::vector<Node> nodes;          ///< the ops in the order they run
  /// The batch size of the trace (axis 0 of every input); 0 when the batch is fixed (every
  /// extent is then a plain number).
  long batch = 0;

  /// Runs the program on `inputs` (as many as it has, of its shapes but for the batch axis),
  /// recording ops as any computation does. Throws ad::Error naming the node that fails.
  std::vector<Variable<T>> run(const std::vector<Variable<T>>& inputs) const;
  /// run() of a program with one input and one output.
  Variable<T> operator()(const Variable<T>& x) const;
  /// One line per node, like a jaxpr:
  ///   program(x: f32[B,784]; fc.weight: f32[10,784], fc.bias: f32[10]) {
  ///     %0: f32[B,10] = linear(x, fc.weight, fc.bias) activation=none
  ///     return %0
  ///   }
  std::string str() const;
  /// The program as a Graphviz graph (dot -Tpng model.dot -o model.png).
  std::string dot() const;
  /// The value's shape for batch size `batch_size` (its traced shape for this->batch).
  Shape shape_of(std::size_t value, long batch_size) const;
  /// The node's attributes for batch size `batch_size`.
  Attributes attributes_for(const Node& node, long batch_size) const;
};

/// What ad::trace is told besides the function and its example inputs.
template <class T>
struct TraceOptions {
  /// Names of the inputs ("x" for a single one, "x0", "x1", ... otherwise).
  std::vector<std::string> input_names;
  /// Leaves the function reads besides its inputs, by name (a module's named_parameters()).
  /// Other leaves that require grad become parameters "param0", "param1", ...; leaves that do
  /// not, constants.
  std::vector<std::pair<std::string, Variable<T>>> parameters;
  /// Axis 0 of every input is the batch axis: the function is traced at the example's batch size
  /// B and at B + 1 (the example with its first sample appended), and every extent and integer
  /// attribute that differs becomes a function of B. Off, the program takes only the example's
  /// shapes.
  bool dynamic_batch = true;
};

/// A function of Variables to Variables.
template <class T>
using TracedFn = std::function<std::vector<Variable<T>>(const std::vector<Variable<T>>&)>;

/// The program of `f` at `example_inputs`: every op it calls, with its attributes. Throws
/// ad::Error when the computation cannot be a program: an op of the library without a program
/// description or a custom op made an intermediate value, or a constant depends on the inputs'
/// values or on the batch size (computed from them outside an op: a mask made from the data, for
/// instance), or the ops differ between the two batch sizes.
template <class T>
Program<T> trace(const TracedFn<T>& f, const std::vector<Variable<T>>& example_inputs,
                 const TraceOptions<T>& options = {});

/// trace() of a function of one Variable.
template <class T>
Program<T> trace(const std::function<Variable<T>(const Variable<T>&)>& f, const Variable<T>& x,
                 const TraceOptions<T>& options = {});

namespace detail {
/// The replay of op `op`, or null when there is none.
template <class T>
Replay<T> find_replay(const std::string& op);
}  // namespace detail

}  // namespace ad
