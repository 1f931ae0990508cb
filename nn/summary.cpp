#include "nn/summary.hpp"

#include <cxxabi.h>

#include <cstdlib>
#include <iomanip>
#include <map>
#include <memory>
#include <ostream>
#include <sstream>
#include <typeinfo>

namespace ad::nn {

namespace {

/// The class's name without namespaces and template arguments ("ad::nn::Linear<float>" → "Linear").
std::string class_name(const std::type_info& type) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> demangled(
      abi::__cxa_demangle(type.name(), nullptr, nullptr, &status), std::free);
  std::string name = status == 0 ? demangled.get() : type.name();
  name = name.substr(0, name.find('<'));
  const std::size_t colon = name.rfind("::");
  return colon == std::string::npos ? name : name.substr(colon + 2);
}

/// Every module of the tree by address, with its dotted name and depth.
template <class T>
void name_modules(const Module<T>& m, const std::string& name, std::size_t depth,
                  std::map<const Module<T>*, std::pair<std::string, std::size_t>>& out) {
  out.emplace(&m, std::make_pair(name, depth));
  for (const auto& [child, module] : m.children())
    name_modules<T>(*module, name.empty() ? child : name + "." + child, depth + 1, out);
}

}  // namespace

std::string ModelSummary::str() const {
  std::size_t width = 5;
  std::vector<std::string> labels;
  for (const Row& r : rows) {
    std::string label =
        std::string(2 * r.depth, ' ') + (r.name.empty() ? "" : r.name + ": ") + r.type;
    width = std::max(width, label.size());
    labels.push_back(std::move(label));
  }
  std::ostringstream out;
  out << std::left << std::setw(static_cast<int>(width) + 2) << "layer" << std::setw(20)
      << "output shape"
      << "parameters\n";
  for (std::size_t i = 0; i < rows.size(); ++i)
    out << std::setw(static_cast<int>(width) + 2) << labels[i] << std::setw(20)
        << shape_str(rows[i].output) << rows[i].parameters << "\n";
  out << "total parameters: " << total_parameters << " (" << parameter_bytes << " bytes)\n";
  return out.str();
}

std::ostream& operator<<(std::ostream& out, const ModelSummary& summary) {
  return out << summary.str();
}

template <class T>
ModelSummary summary(Module<T>& model, const Shape& input_shape) {
  std::vector<detail::ModuleCall<T>> calls;
  struct Stop {
    ~Stop() { detail::module_calls<T> = nullptr; }
  } stop;
  if (detail::module_calls<T>) fail("summary: already running on this thread");
  detail::module_calls<T> = &calls;
  model.predict(Array<T>(xt::zeros<T>(input_shape)));
  std::map<const Module<T>*, std::pair<std::string, std::size_t>> names;
  name_modules<T>(model, "", 0, names);
  ModelSummary s;
  for (const auto& call : calls) {
    auto found = names.find(call.module);
    // A module outside the tree (made inside forward) is listed under its class only.
    const std::string name = found == names.end() ? "?" : found->second.first;
    const std::size_t depth = found == names.end() ? 1 : found->second.second;
    const std::string details = call.module->details();
    s.rows.push_back(
        {name, class_name(typeid(*call.module)) + (details.empty() ? "" : "(" + details + ")"),
         depth, call.output, call.module->parameter_count()});
  }
  s.total_parameters = model.parameter_count();
  s.parameter_bytes = s.total_parameters * sizeof(T);
  return s;
}

template ModelSummary summary(Module<float>&, const Shape&);
template ModelSummary summary(Module<double>&, const Shape&);

}  // namespace ad::nn
