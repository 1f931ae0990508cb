#include "nn/gradcheck.hpp"

namespace ad::nn {

GradcheckReport gradcheck_module(Module<double>& module, const Variable<double>& x,
                                 const GradcheckOptions& options,
                                 const std::function<void()>& before_each) {
  auto named = module.named_parameters();
  std::vector<Variable<double>> inputs{x};
  std::vector<std::string> names{"input"};
  std::vector<Variable<double>> saved;
  for (const auto& [name, p] : named) {
    inputs.push_back(*p);
    names.push_back(name);
    saved.push_back(*p);
  }
  // Put the module's own parameter handles back however the check ends.
  struct Restore {
    std::vector<std::pair<std::string, Variable<double>*>>& named;
    std::vector<Variable<double>>& saved;
    ~Restore() {
      for (std::size_t i = 0; i < named.size(); ++i) *named[i].second = saved[i];
    }
  } restore{named, saved};
  detail::CheckedFunction f = [&](const std::vector<Variable<double>>& args) {
    for (std::size_t i = 0; i < named.size(); ++i) *named[i].second = args[i + 1];
    if (before_each) before_each();
    return module.forward(args[0]);
  };
  return detail::run_gradcheck(f, inputs, options, names);
}

}  // namespace ad::nn
