// onnx_run: runs any ONNX model on this library's ops, on inputs from .npy files, and writes every
// output (and, with --grad, the gradients of the sum of the first output with respect to every
// parameter and input) to an .npz archive under their ONNX names, so that they compare with
// ONNX Runtime's outputs or PyTorch's .grad entries directly. Its parameters load from and save
// to safetensors files under their ONNX names.
//
//   onnx_run model.onnx --input x=x.npy --output out.npz --grad
//   python3 -c "import numpy; z = numpy.load('out.npz'); print(z['output'], z['grad/fc1.weight'])"
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>

#include "autodiff/autodiff.hpp"
#include "cli.hpp"
#include "interop/onnx.hpp"
#include "interop/safetensors.hpp"
#include "nn/atomic_write.hpp"
#include "nn/npz.hpp"

namespace {

struct Options {
  std::string model;
  std::vector<std::string> inputs;
  std::string output;
  bool grad = false;
  bool print = false;
  std::string dot;
  bool use_double = false;
  std::string load_safetensors, save_safetensors;
};

/// The array `name` of a .npz archive (or its only one), or the array of a .npy file.
ad::nn::npz::Entry read_entry(const std::string& path, const std::string& name) {
  if (path.size() < 4 || path.substr(path.size() - 4) != ".npz") return ad::nn::npz::load_npy(path);
  auto entries = ad::nn::npz::load(path);
  for (auto& [n, e] : entries)
    if (n == name) return e;
  if (entries.size() == 1) return entries[0].second;
  throw ad::Error("'" + path + "' has no array '" + name + "'");
}

/// An input array as T: float32, float64 and integer arrays (token ids) are converted.
template <class T>
ad::Array<T> read_input(const std::string& path, const std::string& name) {
  const ad::nn::npz::Entry e = read_entry(path, name);
  ad::Array<T> a = ad::Array<T>::from_shape(e.shape);
  const char* p = e.data.data();
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (e.dtype == "<f4") {
      float v;
      std::memcpy(&v, p + 4 * i, 4);
      a.data()[i] = T(v);
    } else if (e.dtype == "<f8") {
      double v;
      std::memcpy(&v, p + 8 * i, 8);
      a.data()[i] = T(v);
    } else if (e.dtype == "<i8") {
      std::int64_t v;
      std::memcpy(&v, p + 8 * i, 8);
      a.data()[i] = T(v);
    } else if (e.dtype == "<u8") {
      std::uint64_t v;
      std::memcpy(&v, p + 8 * i, 8);
      a.data()[i] = T(v);
    } else if (e.dtype == "|u1" || e.dtype == "|b1") {
      a.data()[i] = T(static_cast<unsigned char>(p[i]));
    } else if (e.dtype == "|i1") {
      a.data()[i] = T(static_cast<signed char>(p[i]));
    } else {
      throw ad::Error("'" + path + "': dtype " + e.dtype + " is not a number type onnx_run reads");
    }
  }
  return a;
}

template <class T>
int run(const Options& o) {
  auto model = ad::onnx::load<T>(o.model);
  const auto unsupported = model->unsupported_ops();
  if (!unsupported.empty()) {
    std::string list;
    for (const auto& op : unsupported) list += (list.empty() ? "" : ", ") + op;
    throw ad::Error("'" + o.model + "' uses ops this library does not run: " + list);
  }
  // Parameters in safetensors files under their ONNX names (PyTorch's state_dict names for a
  // model PyTorch exported).
  ad::interop::SafetensorsOptions st;
  st.rename = [&](const std::string& path) { return model->onnx_names().at(path); };
  if (!o.load_safetensors.empty()) {
    st.strict = false;
    ad::interop::load_safetensors(*model, o.load_safetensors, st);
    std::cout << "parameters loaded from '" << o.load_safetensors << "'\n";
  }
  if (!o.save_safetensors.empty()) {
    ad::interop::save_safetensors(*model, o.save_safetensors, st);
    std::cout << "parameters saved to '" << o.save_safetensors << "'\n";
  }
  const std::vector<std::string> names = model->input_names();
  std::map<std::string, std::string> files;
  std::size_t position = 0;
  for (const std::string& spec : o.inputs) {
    const auto eq = spec.find('=');
    std::string name, file;
    if (eq == std::string::npos) {
      if (position >= names.size())
        throw ad::Error("--input '" + spec + "': the model takes " + std::to_string(names.size()) +
                        " inputs");
      name = names[position++], file = spec;
    } else {
      name = spec.substr(0, eq), file = spec.substr(eq + 1);
    }
    if (std::find(names.begin(), names.end(), name) == names.end())
      throw ad::Error("--input '" + spec + "': the model has no input '" + name +
                      "' (its inputs: " +
                      [&] {
                        std::string s;
                        for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
                        return s;
                      }() +
                      ")");
    if (files.count(name)) throw ad::Error("--input: '" + name + "' is given twice");
    files[name] = file;
  }
  std::vector<ad::Variable<T>> inputs;
  for (const auto& name : names) {
    if (!files.count(name))
      throw ad::Error("input '" + name + "' is missing: give --input " + name + "=FILE.npy");
    inputs.emplace_back(read_input<T>(files[name], name), o.grad);
  }
  if (o.print || !o.dot.empty()) {
    ad::TraceOptions<T> trace_options;
    trace_options.input_names = names;
    trace_options.parameters = model->named_parameters();
    trace_options.dynamic_batch = false;
    const ad::Program<T> program = ad::trace<T>(
        ad::TracedFn<T>([&](const std::vector<ad::Variable<T>>& in) { return model->run(in); }),
        inputs, trace_options);
    if (o.print) std::cout << program.str();
    if (!o.dot.empty()) {
      std::ofstream out(o.dot);
      out << program.dot();
      if (!out) throw ad::Error("--dot: cannot write '" + o.dot + "'");
    }
  }
  const std::vector<ad::Variable<T>> outputs = model->run(inputs);
  const std::vector<std::string> output_names = model->output_names();
  std::vector<std::pair<std::string, ad::nn::npz::Entry>> entries;
  for (std::size_t k = 0; k < outputs.size(); ++k) {
    entries.emplace_back(output_names[k], ad::nn::npz::from_array(outputs[k].value()));
    std::cout << output_names[k] << ": shape " << ad::shape_str(outputs[k].shape());
    if (outputs[k].size() > 0) std::cout << ", first " << outputs[k].value().data()[0];
    std::cout << "\n";
  }
  if (o.grad) {
    std::vector<ad::Variable<T>> wrt;
    std::vector<std::string> wrt_names;
    for (const auto& [path, p] : model->named_parameters()) {
      wrt.push_back(p);
      wrt_names.push_back(model->onnx_names().at(path));
    }
    for (std::size_t k = 0; k < inputs.size(); ++k) {
      wrt.push_back(inputs[k]);
      wrt_names.push_back(names[k]);
    }
    const std::vector<ad::Variable<T>> grads = ad::grad(ad::sum(outputs.at(0)), wrt);
    for (std::size_t k = 0; k < grads.size(); ++k)
      entries.emplace_back("grad/" + wrt_names[k], ad::nn::npz::from_array(grads[k].value()));
    std::cout << grads.size() << " gradients of sum(" << output_names[0] << ")\n";
  }
  if (!o.output.empty()) ad::nn::npz::save(o.output, entries);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  namespace po = boost::program_options;
  Options o;
  po::options_description desc(
      "onnx_run: runs an ONNX model on this library's ops\n"
      "usage: onnx_run MODEL.onnx --input NAME=FILE.npy ... [--output OUT.npz] [--grad]\n"
      "options");
  desc.add_options()("help,h", "show this help")("model", po::value(&o.model)->required(),
                                                 "the ONNX model")(
      "input,i", po::value(&o.inputs)->composing(),
      "an input: NAME=FILE.npy, or FILE.npy for the next input in order (an .npz: its array "
      "NAME, or its only one)")("output,o", po::value(&o.output),
                                "write every output (and gradient) to this .npz")(
      "grad", po::bool_switch(&o.grad),
      "also the gradients of the sum of the first output with respect to every parameter and "
      "input, as grad/<ONNX name>")("print", po::bool_switch(&o.print),
                                    "print the program the model runs")(
      "dot", po::value(&o.dot), "write the program as a Graphviz graph to this file")(
      "double", po::bool_switch(&o.use_double), "compute in double (default float)")(
      "load-safetensors", po::value(&o.load_safetensors),
      "first load the parameters found in this safetensors file (by ONNX name)")(
      "save-safetensors", po::value(&o.save_safetensors),
      "write the model's parameters to this safetensors file (by ONNX name)");
  po::positional_options_description positional;
  positional.add("model", 1);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(desc).positional(positional).run(), vm);
    if (vm.count("help")) {
      std::cout << desc;
      return 0;
    }
    po::notify(vm);
    if (!o.output.empty()) ad::nn::check_writable(o.output, "--output");
    if (!o.dot.empty()) ad::nn::check_writable(o.dot, "--dot");
    if (!o.save_safetensors.empty())
      ad::nn::check_writable(o.save_safetensors, "--save-safetensors");
  } catch (const std::exception& e) {
    std::cerr << "onnx_run: " << e.what() << "\n\n" << desc;
    return 2;
  }
  try {
    return o.use_double ? run<double>(o) : run<float>(o);
  } catch (const std::exception& e) {
    std::cerr << "onnx_run: " << e.what() << "\n";
    return 1;
  }
}
