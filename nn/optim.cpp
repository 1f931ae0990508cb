#include "nn/optim.hpp"

#include "autodiff/parallel.hpp"

#include <cmath>
#include <type_traits>
#include <unordered_set>

namespace ad::nn {

namespace {

template <class T>
std::vector<ParamGroup<T>> one_group(std::vector<Variable<T>> params) {
  return {ParamGroup<T>(std::move(params))};
}

/// The state buffer `name`, created as zeros of the parameter's shape on first use.
template <class T>
Array<T>& buffer(ParamState<T>& state, const char* name, const Array<T>& like) {
  auto it = state.buffers.find(name);
  if (it == state.buffers.end())
    it = state.buffers.emplace(name, Array<T>(xt::zeros<T>(like.shape()))).first;
  if (it->second.shape() != like.shape())
    fail("optimizer: state '", name, "' has shape ", shape_str(it->second.shape()),
         " but its parameter has shape ", shape_str(like.shape()));
  return it->second;
}

}  // namespace

template <class T>
Optimizer<T>::Optimizer(std::vector<ParamGroup<T>> groups, double default_lr, const char* name)
    : name_(name), groups_(std::move(groups)) {
  std::unordered_set<const VariableImpl<T>*> seen;
  for (auto& g : groups_) {
    if (g.lr == 0) g.lr = default_lr;
    if (!(g.lr > 0)) fail(name, ": learning rate must be positive, got ", g.lr);
    for (const auto& p : g.params) {
      if (!p.defined() || !p.is_leaf() || !p.requires_grad())
        fail(name, ": parameters must be leaves that require grad");
      // The same parameter twice would be stepped twice (tied weights listed per module).
      if (!seen.insert(p.impl_ptr().get()).second)
        fail(name, ": parameter ", state_.size(), " (shape ", shape_str(p.shape()),
             ") is listed more than once; list each parameter once (Module::parameters() "
             "does)");
      state_.emplace_back();
    }
    base_lrs_.push_back(g.lr);
  }
}

template <class T>
void Optimizer<T>::step() {
  if (flat_) {
    flat_->attach();
    if (update_flat(*flat_, groups_[0].lr)) {
      for (auto& s : state_) ++s.step;
      for (auto& p : flat_->parameters())
        ++p.impl().version;  // written in place, as by mutable_value
      return;
    }
  }
  std::size_t index = 0;
  for (std::size_t gi = 0; gi < groups_.size(); ++gi) {
    auto& g = groups_[gi];
    for (auto& p : g.params) {
      ParamState<T>& s = state_[index++];
      if (!p.has_grad()) continue;
      const Array<T>& grad = p.grad().value();
      if (!same_shape(grad.shape(), p.shape()))
        fail("optimizer: gradient of shape ", shape_str(grad.shape()), " for a parameter of shape ",
             shape_str(p.shape()));
      ++s.step;
      update(p.mutable_value(), grad, s, gi, g.lr);
    }
  }
}

namespace {

/// An option that a parameter group may set for itself: its name, where the group sets it, and
/// the field of the optimizer's options it replaces. One table per optimizer says both which
/// options its groups may set and how they override its own.
template <class O>
struct GroupField {
  const char* name;
  std::optional<double> GroupOptions::*group;
  double O::*own;
};

/// `o` with the fields that group options `g` set.
template <class O, std::size_t N>
O with_group(O o, const GroupOptions& g, const GroupField<O> (&fields)[N]) {
  for (const auto& f : fields)
    if (g.*f.group) o.*f.own = *(g.*f.group);
  return o;
}

/// The names of `fields`, and `more`.
template <class O, std::size_t N>
std::vector<const char*> names(const GroupField<O> (&fields)[N],
                               std::vector<const char*> more = {}) {
  for (const auto& f : fields) more.push_back(f.name);
  return more;
}

using G = GroupOptions;
constexpr GroupField<SGDOptions> sgd_fields[] = {
    {"weight_decay", &G::weight_decay, &SGDOptions::weight_decay},
    {"momentum", &G::momentum, &SGDOptions::momentum},
    {"dampening", &G::dampening, &SGDOptions::dampening}};
constexpr GroupField<AdamOptions> adam_fields[] = {
    {"weight_decay", &G::weight_decay, &AdamOptions::weight_decay},
    {"beta1", &G::beta1, &AdamOptions::beta1},
    {"beta2", &G::beta2, &AdamOptions::beta2},
    {"eps", &G::eps, &AdamOptions::eps}};
constexpr GroupField<RMSPropOptions> rmsprop_fields[] = {
    {"weight_decay", &G::weight_decay, &RMSPropOptions::weight_decay},
    {"momentum", &G::momentum, &RMSPropOptions::momentum},
    {"eps", &G::eps, &RMSPropOptions::eps},
    {"alpha", &G::alpha, &RMSPropOptions::alpha}};
constexpr GroupField<AdagradOptions> adagrad_fields[] = {
    {"weight_decay", &G::weight_decay, &AdagradOptions::weight_decay},
    {"eps", &G::eps, &AdagradOptions::eps}};

}  // namespace

template <class T>
void Optimizer<T>::allow_options(const char* name, const std::vector<const char*>& allowed) const {
  auto allows = [&](const char* option) {
    for (const char* a : allowed)
      if (std::string(a) == option) return true;
    return false;
  };
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    const GroupOptions& o = groups_[g].options;
    const std::pair<const char*, bool> set[] = {{"weight_decay", o.weight_decay.has_value()},
                                                {"momentum", o.momentum.has_value()},
                                                {"dampening", o.dampening.has_value()},
                                                {"nesterov", o.nesterov.has_value()},
                                                {"beta1", o.beta1.has_value()},
                                                {"beta2", o.beta2.has_value()},
                                                {"eps", o.eps.has_value()},
                                                {"alpha", o.alpha.has_value()}};
    for (const auto& [option, given] : set)
      if (given && !allows(option))
        fail(name, ": parameter group ", g, " sets ", option, ", which ", name, " does not have");
  }
}

template <class T>
void Optimizer<T>::zero_grad() {
  for (auto& g : groups_)
    for (auto& p : g.params) p.zero_grad();
}

template <class T>
void Optimizer<T>::scale_lr(double factor) {
  for (std::size_t i = 0; i < groups_.size(); ++i) groups_[i].lr = base_lrs_[i] * factor;
}

template <class T>
std::vector<Variable<T>> Optimizer<T>::parameters() const {
  std::vector<Variable<T>> out;
  for (const auto& g : groups_) out.insert(out.end(), g.params.begin(), g.params.end());
  return out;
}

// ---- SGD

template <class T>
SGD<T>::SGD(std::vector<Variable<T>> params, const SGDOptions& o)
    : SGD(one_group(std::move(params)), o) {}

template <class T>
SGD<T>::SGD(std::vector<ParamGroup<T>> groups, const SGDOptions& o)
    : Optimizer<T>(std::move(groups), o.lr, "SGD"), o_(o) {
  this->allow_options("SGD", names(sgd_fields, {"nesterov"}));
  for (std::size_t g = 0; g < this->groups().size(); ++g) {
    const SGDOptions go = options(g);
    if (go.nesterov && (go.momentum <= 0 || go.dampening != 0))
      fail("SGD: Nesterov momentum needs momentum > 0 and no dampening");
  }
}

template <class T>
SGD<T>::SGD(std::shared_ptr<FlatParameters<T>> flat, const SGDOptions& o)
    : SGD(flat->parameters(), o) {
  this->flat_ = std::move(flat);
}

template <class T>
SGDOptions SGD<T>::options(std::size_t group) const {
  const GroupOptions& g = this->groups_at(group).options;
  SGDOptions o = with_group(o_, g, sgd_fields);
  o.nesterov = g.nesterov.value_or(o.nesterov);
  return o;
}

namespace {

/// The SGD update of n values, in one pass: d = g + wd·w; b = first ? d : mu·b + (1 − damp)·d;
/// w −= lr·(nesterov ? d + mu·b : b) (without momentum: w −= lr·d).
template <class T>
void sgd_pass(T* w, const T* g, T* b, std::size_t n, const SGDOptions& o, double lr, bool first) {
  const T wd = static_cast<T>(o.weight_decay), mu = static_cast<T>(o.momentum);
  const T damp = static_cast<T>(1 - o.dampening), rate = static_cast<T>(lr);
  if (!b) {
    ad::detail::parallel_for(n, 1 << 15, [=](std::size_t begin, std::size_t end) {
      T* __restrict wl = w;
      const T* __restrict gl = g;
      for (std::size_t i = begin; i < end; ++i) wl[i] -= rate * (gl[i] + wd * wl[i]);
    });
    return;
  }
  // One pass, with the two choices fixed at compile time so that the loop vectorises.
  auto run = [&](auto first_step, auto nesterov) {
    ad::detail::parallel_for(n, 1 << 15, [=](std::size_t begin, std::size_t end) {
      // restrict-qualified locals (a lambda's captures lose the qualifier), so that it vectorises
      T* __restrict wl = w;
      const T* __restrict gl = g;
      T* __restrict bl = b;
      for (std::size_t i = begin; i < end; ++i) {
        const T d = gl[i] + wd * wl[i];
        bl[i] = first_step ? d : mu * bl[i] + damp * d;
        wl[i] -= rate * (nesterov ? d + mu * bl[i] : bl[i]);
      }
    });
  };
  using yes = std::true_type;
  using no = std::false_type;
  if (first)
    o.nesterov ? run(yes{}, yes{}) : run(yes{}, no{});
  else
    o.nesterov ? run(no{}, yes{}) : run(no{}, no{});
}

}  // namespace

template <class T>
void SGD<T>::update(Array<T>& p, const Array<T>& grad, ParamState<T>& s, std::size_t group,
                    double lr) {
  const SGDOptions o = options(group);
  T* b = o.momentum == 0 ? nullptr : buffer(s, "momentum_buffer", p).data();
  sgd_pass(p.data(), grad.data(), b, p.size(), o, lr, s.step == 1);
}

template <class T>
bool SGD<T>::update_flat(FlatParameters<T>& flat, double lr) {
  const SGDOptions o = options(0);
  auto& states = this->state();
  for (const auto& s : states)
    if (s.step != states[0].step) return false;  // (steps differ only after odd resumes)
  T* b = nullptr;
  if (o.momentum != 0) {
    // The momentum buffers live in one arena too, each parameter's state a view of its slice
    // (checkpoints see them per parameter); a state loaded or made elsewhere is copied in.
    if (!momentum_) {
      momentum_ = std::make_shared<memory::Arena>(flat.size() * sizeof(T));
      std::fill_n(reinterpret_cast<T*>(momentum_->data()), flat.size(), T(0));
    }
    b = reinterpret_cast<T*>(momentum_->data());
    const auto& params = flat.parameters();
    for (std::size_t i = 0; i < params.size(); ++i) {
      T* slice = b + flat.offset(i);
      auto it = states[i].buffers.find("momentum_buffer");
      if (it != states[i].buffers.end() && it->second.data() == slice) continue;
      Array<T> view = placed_array(slice, params[i].shape());
      if (it != states[i].buffers.end() && it->second.shape() == view.shape())
        std::copy(it->second.begin(), it->second.end(), view.begin());
      states[i].buffers["momentum_buffer"] = std::move(view);
    }
  }
  sgd_pass(flat.values(), flat.grads(), b, flat.size(), o, lr,
           states.empty() || states[0].step == 0);
  return true;
}

// ---- Adam and AdamW

template <class T>
Adam<T>::Adam(std::vector<Variable<T>> params, const AdamOptions& o)
    : Adam(one_group(std::move(params)), o) {}

template <class T>
Adam<T>::Adam(std::vector<ParamGroup<T>> groups, const AdamOptions& o)
    : Optimizer<T>(std::move(groups), o.lr, "Adam"), o_(o) {
  this->allow_options("Adam", names(adam_fields));
  for (std::size_t g = 0; g < this->groups().size(); ++g) {
    const AdamOptions go = options(g);
    if (!(go.beta1 >= 0 && go.beta1 < 1 && go.beta2 >= 0 && go.beta2 < 1))
      fail("Adam: betas must be in [0, 1), got ", go.beta1, " and ", go.beta2);
  }
}

template <class T>
AdamOptions Adam<T>::options(std::size_t group) const {
  return with_group(o_, this->groups_at(group).options, adam_fields);
}

template <class T>
void Adam<T>::update(Array<T>& p, const Array<T>& grad, ParamState<T>& s, std::size_t group,
                     double lr) {
  const AdamOptions o = options(group);
  T* w = p.data();
  const T* g = grad.data();
  T* m = buffer(s, "exp_avg", p).data();
  T* v = buffer(s, "exp_avg_sq", p).data();
  const T b1 = static_cast<T>(o.beta1), b2 = static_cast<T>(o.beta2);
  const T eps = static_cast<T>(o.eps), wd = static_cast<T>(o.weight_decay);
  const double t = static_cast<double>(s.step);
  const T c1 = static_cast<T>(1 - std::pow(o.beta1, t));
  const T c2 = static_cast<T>(1 - std::pow(o.beta2, t));
  const T rate = static_cast<T>(lr);
  const std::size_t n = p.size();
  if (decoupled_)
    for (std::size_t i = 0; i < n; ++i) w[i] -= rate * wd * w[i];
  for (std::size_t i = 0; i < n; ++i) {
    const T d = decoupled_ ? g[i] : g[i] + wd * w[i];
    m[i] = b1 * m[i] + (1 - b1) * d;
    v[i] = b2 * v[i] + (1 - b2) * d * d;
    w[i] -= rate * (m[i] / c1) / (std::sqrt(v[i] / c2) + eps);
  }
}

template <class T>
AdamW<T>::AdamW(std::vector<Variable<T>> params, const AdamWOptions& o) : Adam<T>(params, o) {
  this->decoupled_ = true;
  this->name_ = "AdamW";
}

template <class T>
AdamW<T>::AdamW(std::vector<ParamGroup<T>> groups, const AdamWOptions& o) : Adam<T>(groups, o) {
  this->decoupled_ = true;
  this->name_ = "AdamW";
}

// ---- RMSProp

template <class T>
RMSProp<T>::RMSProp(std::vector<Variable<T>> params, const RMSPropOptions& o)
    : RMSProp(one_group(std::move(params)), o) {}

template <class T>
RMSProp<T>::RMSProp(std::vector<ParamGroup<T>> groups, const RMSPropOptions& o)
    : Optimizer<T>(std::move(groups), o.lr, "RMSProp"), o_(o) {
  this->allow_options("RMSProp", names(rmsprop_fields));
}

template <class T>
RMSPropOptions RMSProp<T>::options(std::size_t group) const {
  return with_group(o_, this->groups_at(group).options, rmsprop_fields);
}

template <class T>
void RMSProp<T>::update(Array<T>& p, const Array<T>& grad, ParamState<T>& s, std::size_t group,
                        double lr) {
  const RMSPropOptions o = options(group);
  T* w = p.data();
  const T* g = grad.data();
  T* v = buffer(s, "square_avg", p).data();
  T* b = o.momentum > 0 ? buffer(s, "momentum_buffer", p).data() : nullptr;
  const T alpha = static_cast<T>(o.alpha), eps = static_cast<T>(o.eps);
  const T wd = static_cast<T>(o.weight_decay), mu = static_cast<T>(o.momentum);
  const T rate = static_cast<T>(lr);
  for (std::size_t i = 0, n = p.size(); i < n; ++i) {
    const T d = g[i] + wd * w[i];
    v[i] = alpha * v[i] + (1 - alpha) * d * d;
    const T step = d / (std::sqrt(v[i]) + eps);
    if (b) {
      b[i] = mu * b[i] + step;
      w[i] -= rate * b[i];
    } else {
      w[i] -= rate * step;
    }
  }
}

// ---- Adagrad

template <class T>
Adagrad<T>::Adagrad(std::vector<Variable<T>> params, const AdagradOptions& o)
    : Adagrad(one_group(std::move(params)), o) {}

template <class T>
Adagrad<T>::Adagrad(std::vector<ParamGroup<T>> groups, const AdagradOptions& o)
    : Optimizer<T>(std::move(groups), o.lr, "Adagrad"), o_(o) {
  this->allow_options("Adagrad", names(adagrad_fields));
  if (!(o.lr_decay >= 0)) fail("Adagrad: lr_decay must be >= 0, got ", o.lr_decay);
  if (!(o.initial_accumulator_value >= 0))
    fail("Adagrad: initial_accumulator_value must be >= 0, got ", o.initial_accumulator_value);
}

template <class T>
AdagradOptions Adagrad<T>::options(std::size_t group) const {
  return with_group(o_, this->groups_at(group).options, adagrad_fields);
}

template <class T>
void Adagrad<T>::update(Array<T>& p, const Array<T>& grad, ParamState<T>& s, std::size_t group,
                        double lr) {
  const AdagradOptions o = options(group);
  const bool fresh = !s.buffers.count("sum");
  T* sum = buffer(s, "sum", p).data();
  if (fresh) std::fill(sum, sum + p.size(), static_cast<T>(o.initial_accumulator_value));
  T* w = p.data();
  const T* g = grad.data();
  const T eps = static_cast<T>(o.eps), wd = static_cast<T>(o.weight_decay);
  const T rate = static_cast<T>(lr / (1 + double(s.step - 1) * o.lr_decay));
  for (std::size_t i = 0, n = p.size(); i < n; ++i) {
    const T d = g[i] + wd * w[i];
    sum[i] += d * d;
    w[i] -= rate * d / (std::sqrt(sum[i]) + eps);
  }
}

// ---- Clipping

template <class T>
double clip_grad_norm(const std::vector<Variable<T>>& params, double max_norm) {
  double total = 0;
  for (const auto& p : params)
    if (p.has_grad())
      for (T g : p.grad().value()) total += double(g) * double(g);
  total = std::sqrt(total);
  if (total > max_norm && total > 0) {
    const T scale = static_cast<T>(max_norm / total);
    for (const auto& p : params)
      if (p.has_grad()) {
        Variable<T> g = p.grad();
        for (auto& x : g.mutable_value()) x *= scale;
      }
  }
  return total;
}

#define AD_INSTANTIATE(T)      \
  template class Optimizer<T>; \
  template class SGD<T>;       \
  template class Adam<T>;      \
  template class AdamW<T>;     \
  template class RMSProp<T>;   \
  template class Adagrad<T>;   \
  template double clip_grad_norm(const std::vector<Variable<T>>&, double);

AD_INSTANTIATE(float)
AD_INSTANTIATE(double)
#undef AD_INSTANTIATE

}  // namespace ad::nn
