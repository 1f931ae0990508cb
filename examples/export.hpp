// --export-onnx and --graph of the example programs: the trained model as an ONNX model, and its
// program as a Graphviz graph.
#pragma once

#include <fstream>
#include <ostream>
#include <string>

#include "autodiff/program.hpp"
#include "nn/atomic_write.hpp"
#include "nn/module.hpp"
#include "nn/npz.hpp"
#include "nn/program.hpp"
#ifdef AD_WITH_ONNX
#include "interop/onnx.hpp"
#endif

namespace examples {

/// Throws, naming the option, unless the paths can be written (checked before training).
inline void check_export_paths(const std::string& onnx_path, const std::string& graph_path) {
#ifndef AD_WITH_ONNX
  if (!onnx_path.empty())
    throw ad::Error("--export-onnx needs a build with ONNX (install libonnx-dev and rebuild)");
#endif
  if (!onnx_path.empty()) ad::nn::check_writable(onnx_path, "--export-onnx");
  if (!graph_path.empty()) ad::nn::check_writable(graph_path, "--graph");
}

/// Writes the model's program (traced in evaluation mode at `example`, the batch axis symbolic)
/// as a Graphviz graph to `graph_path`, and as an ONNX model to `onnx_path`, with
/// `onnx_path`.expected.npz beside it: the example ("x") and the model's output on it
/// ("output"), to check another runtime against. An empty path skips it.
inline void export_model(ad::nn::Module<float>& model, const ad::Variable<float>& example,
                         const std::string& onnx_path, const std::string& graph_path,
                         std::ostream& out) {
  if (onnx_path.empty() && graph_path.empty()) return;
  const bool training = model.is_training();
  model.eval();
  const ad::Program<float> program = ad::nn::trace(model, example);
  const ad::Array<float> expected = model(example).value();
  model.train(training);
  if (!graph_path.empty()) {
    const std::string text = program.dot();
    ad::nn::write_atomically(
        graph_path,
        [&](const std::string& temporary) {
          std::ofstream f(temporary);
          f << text;
          f.flush();
          if (!f) throw ad::Error("cannot write '" + temporary + "'");
        },
        "graph");
    out << "graph of the model (" << program.nodes.size() << " ops) written to '" << graph_path
        << "' (dot -Tpng " << graph_path << " -o model.png)\n";
  }
#ifdef AD_WITH_ONNX
  if (!onnx_path.empty()) {
    ad::onnx::save(program, onnx_path);
    ad::nn::npz::save(onnx_path + ".expected.npz", {{"x", ad::nn::npz::from_array(example.value())},
                                                    {"output", ad::nn::npz::from_array(expected)}});
    out << "ONNX model written to '" << onnx_path << "' (opset " << ad::onnx::opset
        << "), with its input and output on " << example.shape()[0] << " samples in '" << onnx_path
        << ".expected.npz'\n";
  }
#endif
}

}  // namespace examples
