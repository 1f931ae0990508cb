// The gradient checker's localisation: which op of a computation has a wrong backward rule.
//
// The function runs once under a tape observer that lists every op it records, in order (the
// ops its backward pass would run, custom ops included, whether or not a program could describe
// them). Each op the output depends on is then checked alone, at the inputs it had: its rule
// gives ⟨u, J d⟩ for a random output cotangent u and a random direction d of each input, and the
// function runs again with ±h·d added to that input (to the output of the op that made it, as it
// is recorded, or to a leaf in place), up to the op, whose output is read and the run ended.
// Nothing but the op under test sees a difference between its own forward and its rule.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>
#include <random>
#include <sstream>
#include <unordered_map>

#include "autodiff/checking.hpp"
#include "autodiff/gradcheck.hpp"
#include "autodiff/ops.hpp"
#include "autodiff/trace.hpp"

namespace ad::detail {

namespace {

using V = Variable<double>;
using Impl = VariableImpl<double>;
constexpr std::size_t none = static_cast<std::size_t>(-1);

/// Installs a tape observer on this thread for its lifetime.
template <class T>
class Observe {
 public:
  explicit Observe(TapeObserver<T>* o) : saved_(tape_observer<T>) { tape_observer<T> = o; }
  ~Observe() { tape_observer<T> = saved_; }
  Observe(const Observe&) = delete;
  Observe& operator=(const Observe&) = delete;

 private:
  TapeObserver<T>* saved_;
};

/// Lists every op recorded, with the module it ran in and the attributes of the library op that
/// recorded it ("axes=[1] keepdims=false"; "[mean axes=[1] ...]" when that op has another name,
/// as a composite's parts do).
template <class T>
class Lister final : public TapeObserver<T> {
 public:
  void recorded(const Variable<T>& output) override {
    ops.push_back(output);
    modules.push_back(current_module<T>);
    std::string described;
    if (!op_calls<T>.empty()) {
      const OpCall& call = op_calls<T>.back();
      described = attributes_str(call.attributes);
      if (std::string(call.op) != output.op_name())
        described = "[" + std::string(call.op) + (described.empty() ? "" : " ") + described + "]";
    }
    attributes.push_back(std::move(described));
  }
  std::vector<Variable<T>> ops;
  std::vector<const void*> modules;
  std::vector<std::string> attributes;
};

/// The ops of `list` that `output` depends on, by their place in it, in the order they ran;
/// `tape` maps each op's output to its place.
template <class T>
std::vector<std::size_t> needed_ops(const Lister<T>& list, const Variable<T>& output,
                                    std::unordered_map<const VariableImpl<T>*, std::size_t>& tape) {
  for (std::size_t k = 0; k < list.ops.size(); ++k) tape[&list.ops[k].impl()] = k;
  std::vector<char> needed(list.ops.size(), 0);
  std::vector<std::size_t> stack;
  auto visit = [&](const Variable<T>& v) {
    auto it = tape.find(&v.impl());
    if (it == tape.end() || needed[it->second]) return;
    needed[it->second] = 1;
    stack.push_back(it->second);
  };
  visit(output);
  while (!stack.empty()) {
    const std::size_t k = stack.back();
    stack.pop_back();
    for (const Variable<T>& in : list.ops[k].impl().node->inputs) visit(in);
  }
  std::vector<std::size_t> order;
  for (std::size_t k = 0; k < needed.size(); ++k)
    if (needed[k]) order.push_back(k);
  return order;
}

/// Ends a probing run once the op under test has been recorded.
struct Reached {};

/// One probing run: adds `shift` to the output of op `shift_at` (none: no op) as it is recorded,
/// puts the given values into the outputs of the ops in `resets` (the other inputs of the op
/// under test, which may depend on the shifted value), and keeps the output of op `read_at`,
/// then ends the run.
template <class T>
class Prober final : public TapeObserver<T> {
 public:
  void recorded(const Variable<T>& output) override {
    const std::size_t k = count++;
    Array<T>& v = output.impl().value;
    if (k == shift_at) {
      if (v.shape() != shift->shape()) differs(k, output);
      v += *shift;
    }
    for (const auto& [at, original] : resets)
      if (k == at) {
        if (v.shape() != original->shape()) differs(k, output);
        v = *original;
      }
    if (k != read_at) return;
    op = output.op_name();
    const auto& inputs = output.impl().node->inputs;
    if (inputs.size() != expected.size()) differs(k, output);
    same_input = leaf == nullptr || &inputs[slot].impl() == leaf;
    for (std::size_t s = 0; s < inputs.size(); ++s)
      if (expected[s] && !same_bits(inputs[s].value(), *expected[s])) changed = s;
    value = output;
    throw Reached{};
  }
  [[noreturn]] static void differs(std::size_t k, const Variable<T>& output) {
    fail("gradcheck localisation: op ", k, " (", output.op_name(),
         ") has other shapes or inputs on another run: the computation must run the same ops "
         "every time");
  }
  std::size_t count = 0;
  std::size_t shift_at = none;
  const Array<T>* shift = nullptr;
  std::vector<std::pair<std::size_t, const Array<T>*>> resets;
  std::size_t read_at = none;
  const VariableImpl<T>* leaf = nullptr;  ///< the leaf input `slot` of op read_at must be
  std::size_t slot = 0;
  /// The values the inputs of op read_at other than the probed one must have (null: the probed).
  std::vector<const Array<T>*> expected;
  const char* op = nullptr;
  bool same_input = true;
  std::size_t changed = none;  ///< an input that changed though it should not have
  Variable<T> value;           ///< op read_at's output, with its node
};

/// Runs f under observer `o` until it ends (or the op of a Prober is reached).
template <class T, class F>
void observed_run(const F& f, const std::vector<Variable<T>>& inputs, TapeObserver<T>* o) {
  try {
    Observe<T> on(o);
    GradModeGuard enabled(true);
    f(inputs);
  } catch (const Reached&) {
  }
}

class Localiser {
 public:
  Localiser(const CheckedFunction& f, const std::vector<V>& inputs,
            const std::vector<std::string>& names, const GradcheckOptions& o,
            const ModuleNamer& modules)
      : f_(f), inputs_(inputs), names_(names), o_(o), modules_(modules), rng_(o.seed + 0x5eed) {}

  Localisation run() {
    report_.ran = true;
    {
      Observe<double> on(&list_);
      GradModeGuard enabled(true);
      output_ = f_(inputs_);
    }
    order_ = needed_ops(list_, output_, tape_);
    for (std::size_t i = 0; i < order_.size(); ++i) number_[order_[i]] = i;
    report_.nodes = order_.size();
    write_program();
    std::vector<std::size_t> chosen = order_;
    if (chosen.size() > o_.max_nodes) {
      chosen.clear();
      for (std::size_t i = 0; i < o_.max_nodes; ++i)
        chosen.push_back(order_[i * order_.size() / o_.max_nodes]);
    }
    std::ostringstream sampling;
    sampling << "each op checked alone at its recorded inputs, in float64: its rule's ⟨u, J d⟩ "
                "for a random output cotangent u and a random direction d per input, against "
                "the central difference of the op's forward along d (eps "
             << o_.eps << ")";
    if (chosen.size() < order_.size())
      sampling << "; " << chosen.size() << " of the " << order_.size()
               << " ops, evenly spaced (max_nodes " << o_.max_nodes << ")";
    report_.sampling = sampling.str();
    for (std::size_t k : chosen) {
      ++report_.checked;
      const bool passed = check(k);
      if (report_.off_tape) break;  // the op's own check is meaningless then
      if (passed) continue;
      report_.found = true;
      break;
    }
    return report_;
  }

 private:
  /// How the program names a value an op reads.
  std::string name_of(const V& v) {
    auto it = tape_.find(&v.impl());
    if (it != tape_.end()) return "%" + std::to_string(number_.at(it->second));
    for (std::size_t i = 0; i < inputs_.size(); ++i)
      if (&inputs_[i].impl() == &v.impl())
        return i < names_.size() && !names_[i].empty() ? names_[i] : "x" + std::to_string(i);
    auto [at, added] = others_.emplace(&v.impl(), others_.size());
    (void)added;
    return (v.requires_grad() ? "p" : "c") + std::to_string(at->second);
  }

  std::string module_of(std::size_t k) const {
    return modules_ && list_.modules[k] ? modules_(list_.modules[k]) : std::string();
  }

  void write_program() {
    std::ostringstream os;
    for (std::size_t k : order_) {
      const V& out = list_.ops[k];
      os << "%" << number_[k] << ": f64" << shape_str(out.shape()) << " = " << out.op_name() << "(";
      const auto& ins = out.impl().node->inputs;
      for (std::size_t i = 0; i < ins.size(); ++i) os << (i ? ", " : "") << name_of(ins[i]);
      os << ")";
      if (!list_.attributes[k].empty()) os << " " << list_.attributes[k];
      const std::string m = module_of(k);
      if (!m.empty()) os << "  # " << m;
      os << "\n";
    }
    report_.program = os.str();
  }

  /// ⟨u, output of op k⟩ with h·d added to op k's input `slot` (through the op that made it,
  /// or in place in a leaf); nothing when that leaf is made anew by each run.
  std::optional<double> probe(std::size_t k, std::size_t slot, const Array<double>& d, double h,
                              const Array<double>& u) {
    const auto& ins = list_.ops[k].impl().node->inputs;
    const V& in = ins[slot];
    const Array<double> shift = h * d;
    Prober<double> p;
    p.read_at = k;
    for (const V& other : ins) {
      const bool probed = &other.impl() == &in.impl();
      p.expected.push_back(probed ? nullptr : &other.value());
      auto at = tape_.find(&other.impl());
      if (!probed && at != tape_.end()) p.resets.emplace_back(at->second, &other.value());
    }
    auto producer = tape_.find(&in.impl());
    Array<double> original;
    if (producer != tape_.end()) {
      p.shift_at = producer->second;
      p.shift = &shift;
    } else {
      p.leaf = &in.impl();
      p.slot = slot;
      original = in.value();
      in.impl().value += shift;
    }
    try {
      observed_run(f_, inputs_, &p);
    } catch (...) {
      if (p.leaf) in.impl().value = original;
      throw;
    }
    if (p.leaf) in.impl().value = original;
    if (!p.op)
      fail("gradcheck localisation: the computation recorded ", p.count,
           " ops on another run, not reaching op %", number_[k], " (", list_.ops[k].op_name(),
           "): it must run the same ops every time");
    if (std::string(p.op) != list_.ops[k].op_name())
      fail("gradcheck localisation: op %", number_[k], " was ", list_.ops[k].op_name(), " and is ",
           p.op, " on another run: the computation must run the same ops every time");
    if (!p.same_input) return std::nullopt;
    if (p.changed != none && !report_.off_tape) {
      report_.off_tape = true;
      report_.off_tape_node = number_[k];
      report_.off_tape_message =
          "input " + std::to_string(p.changed) + " (" + name_of(ins[p.changed]) + ") of op %" +
          std::to_string(number_[k]) + " (" + list_.ops[k].op_name() + ") changes with its input " +
          std::to_string(slot) + " (" + name_of(in) +
          ") though no recorded op connects them: it was computed from it outside the tape, "
          "where no gradient flows";
    }
    return dot(u, p.value.value());
  }

  double tolerance(double numeric) const { return o_.atol + o_.rtol * std::abs(numeric); }

  /// A direction whose entry depends on the input's value only (equal values, equal steps).
  Array<double> keyed_direction(const Array<double>& x) const {
    Array<double> d = Array<double>::from_shape(x.shape());
    for (std::size_t i = 0; i < x.size(); ++i) {
      const double v = x.data()[i] == 0 ? 0.0 : x.data()[i];  // -0 and 0 alike
      std::uint64_t z;
      std::memcpy(&z, &v, sizeof z);
      z += o_.seed + 0x9e3779b97f4a7c15ull;  // splitmix64
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      z ^= z >> 31;
      d.data()[i] = static_cast<double>(z >> 11) * 0x1p-53 * 2 - 1;
    }
    return d;
  }

  /// The rule of op k against the central difference along d, for input `slot`.
  struct Judged {
    bool unprobed = false;  // a leaf made anew by each run
    bool kink = false;      // the one-sided slopes stay apart as the step shrinks
    double analytic = 0, numeric = 0;
  };
  Judged judge(std::size_t k, std::size_t slot, const Array<double>& gradient,
               const Array<double>& d, const Array<double>& u, double base) {
    Judged j;
    j.analytic = dot(gradient, d);
    const double h = o_.eps;
    const std::optional<double> up = probe(k, slot, d, h, u);
    if (!up) {
      j.unprobed = true;
      return j;
    }
    j.numeric = (*up - *probe(k, slot, d, -h, u)) / (2 * h);
    if (std::abs(j.analytic - j.numeric) <= tolerance(j.numeric)) return j;
    // Curvature or a kink: the one-sided slopes at h/10 and h/100 tell them apart, as in the
    // whole check.
    auto slopes = [&](double step) {
      const double r = (*probe(k, slot, d, step, u) - base) / step;
      const double l = (base - *probe(k, slot, d, -step, u)) / step;
      return std::make_pair(l, r);
    };
    const auto [l10, r10] = slopes(h / 10);
    const auto [l100, r100] = slopes(h / 100);
    j.numeric = 0.5 * (l100 + r100);
    const double gap10 = std::abs(r10 - l10), gap100 = std::abs(r100 - l100);
    j.kink = !(gap100 <= tolerance(j.numeric) || gap100 <= 0.5 * gap10);
    return j;
  }

  /// Checks op k alone; false when its rule is wrong (the report then holds the failure).
  bool check(std::size_t k) {
    const V& out = list_.ops[k];
    const auto& ins = out.impl().node->inputs;
    // The inputs to probe: those that require grad, one slot for each distinct Variable.
    std::vector<std::size_t> slots;
    std::vector<V> wanted;
    std::vector<std::vector<std::size_t>> same;
    for (std::size_t i = 0; i < ins.size(); ++i) {
      if (!ins[i].requires_grad()) continue;
      bool seen = false;
      for (std::size_t w = 0; w < wanted.size(); ++w)
        if (&wanted[w].impl() == &ins[i].impl()) {
          same[w].push_back(i);
          seen = true;
        }
      if (seen) continue;
      slots.push_back(i);
      wanted.push_back(ins[i]);
      same.emplace_back();
    }
    if (slots.empty()) return true;
    const Array<double> u = random_normal(out.shape(), rng_);
    std::vector<V> g;
    {
      GradModeGuard off(false);
      g = grad_until(out, wanted, V(u), BackwardOptions{true, false});
    }
    const double base = dot(u, out.value());
    for (std::size_t w = 0; w < slots.size() && !report_.off_tape; ++w) {
      const std::size_t slot = slots[w];
      Judged j = judge(k, slot, g[w].value(), random_normal(wanted[w].shape(), rng_), u, base);
      if (j.kink) {
        // Ties (a max pool over zeros) are kinks along any direction that moves tied entries
        // apart; along one that gives equal entries equal steps they stay ties, and the rule's
        // value is the same whichever of them it picks.
        j = judge(k, slot, g[w].value(), keyed_direction(wanted[w].value()), u, base);
      }
      if (j.unprobed) {
        ++report_.unchecked_inputs;
        continue;
      }
      if (j.kink) {
        ++report_.kinks;
        continue;
      }
      const double a = j.analytic, n = j.numeric, err = std::abs(a - n);
      if (report_.off_tape || err <= tolerance(n)) continue;
      NodeFailure& r = report_.failure;
      r.node = number_[k];
      r.op = out.op_name();
      r.attributes = list_.attributes[k];
      r.module = module_of(k);
      for (const V& in : ins) r.input_shapes.push_back(in.shape());
      r.input = slot;
      r.same_as = same[w];
      r.analytic = a;
      r.numeric = n;
      r.max_abs_error = err;
      r.tolerance = tolerance(n);
      return false;
    }
    return true;
  }

  const CheckedFunction& f_;
  const std::vector<V>& inputs_;
  const std::vector<std::string>& names_;
  const GradcheckOptions& o_;
  const ModuleNamer& modules_;
  std::mt19937_64 rng_;
  Localisation report_;
  Lister<double> list_;
  V output_;
  std::unordered_map<const Impl*, std::size_t> tape_;    // op output -> its place in list_
  std::unordered_map<std::size_t, std::size_t> number_;  // place in list_ -> program number
  std::vector<std::size_t> order_;                       // the places of the needed ops
  std::unordered_map<const Impl*, std::size_t> others_;  // other leaves and constants
};

/// The float path op by op: each op of the float run, given exactly the inputs its float64
/// twin had (rounded to float), against that twin: its output and its rule's ⟨u, J d⟩.
class FloatLocaliser {
 public:
  FloatLocaliser(const CheckedFunction& f64, const FloatFunction& f32, const std::vector<V>& x64,
                 const std::vector<Variable<float>>& x32, const GradcheckOptions& o,
                 const ModuleNamer& modules)
      : f64_(f64),
        f32_(f32),
        x64_(x64),
        x32_(x32),
        o_(o),
        modules_(modules),
        rng_(o.seed + 0xf32) {}

  Localisation run() {
    Localisation report;
    report.ran = true;
    V y64;
    Variable<float> y32;
    {
      Observe<double> on(&list64_);
      GradModeGuard enabled(true);
      y64 = f64_(x64_);
    }
    {
      Observe<float> on(&list32_);
      GradModeGuard enabled(true);
      y32 = f32_(x32_);
    }
    const std::vector<std::size_t> order64 = needed_ops(list64_, y64, tape64_);
    const std::vector<std::size_t> order32 = needed_ops(list32_, y32, tape32_);
    report.nodes = order64.size();
    std::ostringstream sampling;
    sampling << "the float32 path op by op: each op run in float on the inputs its float64 twin "
                "had (rounded to float), its output and its rule's ⟨u, J d⟩ against the twin's "
                "(pass within float_atol·scale + float_rtol·|value|)";
    report.sampling = sampling.str();
    bool same = order32.size() == order64.size();
    for (std::size_t i = 0; same && i < order64.size(); ++i)
      same = std::string(list64_.ops[order64[i]].op_name()) == list32_.ops[order32[i]].op_name();
    if (!same) {
      report.sampling += "; not done: the float and the float64 runs recorded different ops";
      return report;
    }
    for (std::size_t i = 0; i < order64.size(); ++i) {
      ++report.checked;
      if (check(i, order64[i], order32[i], report.failure)) continue;
      report.found = true;
      break;
    }
    return report;
  }

 private:
  double tolerance(double scale, double value) const {
    return o_.float_atol * std::max(scale, 1e-30) + o_.float_rtol * std::abs(value);
  }

  /// Op `number` (list64_[k64], list32_[k32]): false when its float forward or rule is off.
  bool check(std::size_t number, std::size_t k64, std::size_t k32, NodeFailure& r) {
    const V& out64 = list64_.ops[k64];
    const auto& ins64 = out64.impl().node->inputs;
    Prober<float> p;
    p.read_at = k32;
    std::vector<Array<float>> rounded;
    rounded.reserve(ins64.size());
    const auto& ins32 = list32_.ops[k32].impl().node->inputs;
    if (ins32.size() != ins64.size()) return true;
    for (std::size_t s = 0; s < ins64.size(); ++s) {
      rounded.emplace_back(ins64[s].value());
      p.expected.push_back(nullptr);
      auto at = tape32_.find(&ins32[s].impl());
      if (at != tape32_.end()) p.resets.emplace_back(at->second, &rounded.back());
    }
    observed_run(f32_, x32_, &p);
    if (!p.value.defined()) return true;
    auto fill = [&](std::size_t input, double got, double want, double tol) {
      r.node = number;
      r.op = out64.op_name();
      r.attributes = list64_.attributes[k64];
      r.module = modules_ && list64_.modules[k64] ? modules_(list64_.modules[k64]) : "";
      for (const V& in : ins64) r.input_shapes.push_back(in.shape());
      r.input = input;
      r.float32 = true;
      r.analytic = got;
      r.numeric = want;
      r.max_abs_error = std::abs(got - want);
      r.tolerance = tol;
      return false;
    };
    // The forward.
    const Array<double>& o64 = out64.value();
    const Array<float>& o32 = p.value.value();
    double scale = 0;
    for (double v : o64) scale = std::max(scale, std::abs(v));
    for (std::size_t e = 0; e < o64.size(); ++e) {
      const double want = o64.data()[e], got = o32.data()[e];
      if (std::isnan(want) && std::isnan(got)) continue;
      if (!(std::abs(got - want) <= tolerance(scale, want)))
        return fill(ins64.size(), got, want, tolerance(scale, want));
    }
    // The rule, for one random cotangent and one direction per input that requires grad.
    std::vector<std::size_t> slots;
    std::vector<V> w64;
    std::vector<Variable<float>> w32;
    const auto& held32 = p.value.impl().node->inputs;
    for (std::size_t s = 0; s < ins64.size(); ++s) {
      if (!ins64[s].requires_grad() || !held32[s].requires_grad()) continue;
      bool seen = false;
      for (const V& v : w64) seen = seen || &v.impl() == &ins64[s].impl();
      if (seen) continue;
      slots.push_back(s);
      w64.push_back(ins64[s]);
      w32.push_back(held32[s]);
    }
    if (slots.empty()) return true;
    const Array<double> u = random_normal(out64.shape(), rng_);
    std::vector<V> g64;
    std::vector<Variable<float>> g32;
    {
      GradModeGuard off(false);
      g64 = grad_until(out64, w64, V(u), BackwardOptions{true, false});
      g32 =
          grad_until(p.value, w32, Variable<float>(Array<float>(u)), BackwardOptions{false, false});
    }
    for (std::size_t w = 0; w < slots.size(); ++w) {
      const Array<double> d = random_normal(w64[w].shape(), rng_);
      double want = 0, got = 0, magnitude = 0;
      for (std::size_t e = 0; e < d.size(); ++e) {
        want += g64[w].value().data()[e] * d.data()[e];
        got += static_cast<double>(g32[w].value().data()[e]) * d.data()[e];
        magnitude += std::abs(g64[w].value().data()[e] * d.data()[e]);
      }
      if (!(std::abs(got - want) <= tolerance(magnitude, want)))
        return fill(slots[w], got, want, tolerance(magnitude, want));
    }
    return true;
  }

  const CheckedFunction& f64_;
  const FloatFunction& f32_;
  const std::vector<V>& x64_;
  const std::vector<Variable<float>>& x32_;
  const GradcheckOptions& o_;
  const ModuleNamer& modules_;
  std::mt19937_64 rng_;
  Lister<double> list64_;
  Lister<float> list32_;
  std::unordered_map<const VariableImpl<double>*, std::size_t> tape64_;
  std::unordered_map<const VariableImpl<float>*, std::size_t> tape32_;
};

}  // namespace

Localisation localise_float(const CheckedFunction& f64, const FloatFunction& f32,
                            const std::vector<V>& x64, const std::vector<Variable<float>>& x32,
                            const GradcheckOptions& options, const ModuleNamer& modules) {
  return FloatLocaliser(f64, f32, x64, x32, options, modules).run();
}

Localisation localise(const CheckedFunction& f, const std::vector<V>& inputs,
                      const std::vector<std::string>& names, const GradcheckOptions& options,
                      const ModuleNamer& modules) {
  return Localiser(f, inputs, names, options, modules).run();
}

}  // namespace ad::detail
