// The gradient checker: reverse-mode gradients against the central difference
// (f(x+h) - f(x-h)) / 2h.
#pragma once

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "autodiff/variable.hpp"

namespace ad {

/// Options of gradcheck(). An entry passes when |analytic - numeric| <= atol + rtol * |numeric|.
struct GradcheckOptions {
  /// Step h of the central difference (in float64).
  double eps = 1e-6;
  /// Absolute tolerance.
  double atol = 1e-5;
  /// Relative tolerance.
  double rtol = 1e-3;
  /// Seed of the random projection and directions.
  std::uint64_t seed = 0;
  /// Check one random direction per input (two evaluations whatever its size) instead of the
  /// full Jacobian.
  bool fast = false;
  /// Also check the gradient of the gradient (the backward pass recorded with create_graph).
  bool second_order = false;
  /// Also check that backward accumulates into .grad and that two backward runs agree.
  bool check_backward = true;
  /// Outputs with more elements than this are projected onto a fixed random vector (one
  /// Jacobian row) instead of being checked row by row.
  std::size_t max_rows = 256;
  /// Tolerances of the float32 path (float inputs), against the float64 reference: an entry
  /// passes when |float32 - float64| <= float_atol * scale + float_rtol * |float64|, where scale
  /// is the largest |float64| entry of that input's Jacobian (or of the output), at least 1e-30;
  /// against the float64 numeric value, the float64 check's own tolerance is allowed on top.
  double float_atol = 1e-5;
  double float_rtol = 1e-4;  ///< (see float_atol)
  /// Localise: check every op of the computation alone (see Localisation), even when the whole
  /// passes. It runs anyway when the float64 check fails, unless localise_on_failure is off.
  bool localise = false;
  bool localise_on_failure = true;  ///< (see localise)
  /// At most this many ops are checked by the localisation; a computation with more is sampled
  /// evenly (the report says so).
  std::size_t max_nodes = 1000;
};

/// The op that the localisation found wrong: the first, in the order the computation ran, whose
/// own backward rule disagrees with the central difference of that op alone.
struct NodeFailure {
  std::size_t node = 0;              ///< its number: "%node" in Localisation::program
  std::string op;                    ///< the op's name (a custom op's own name)
  std::string attributes;            ///< its attributes, as the program prints them
  std::string module;                ///< the module it ran in ("block1.attn"), when known
  std::vector<Shape> input_shapes;   ///< its inputs' shapes
  std::size_t input = 0;             ///< the input whose gradient is wrong (the first of
                                     ///< several that are one Variable)
  std::vector<std::size_t> same_as;  ///< the other inputs that are that same Variable (x * x)
  double analytic = 0;               ///< the rule's directional derivative ⟨u, J d⟩
  double numeric = 0;                ///< the central difference of the op alone along d, against u
  double max_abs_error = 0;          ///< |analytic - numeric|
  double tolerance = 0;              ///< its tolerance
  /// Found on the float32 path: the op run in float on the inputs its float64 twin had; then
  /// `analytic` is the float value, `numeric` the float64 one, and `input` equal to the number
  /// of inputs means the output itself (the forward) is off.
  bool float32 = false;
};

/// What the localisation found: every op of the computation (those the output depends on),
/// each checked alone at the inputs it had (its backward rule against the central difference of
/// its own forward), in float64, in the order they ran, until the first that fails.
struct Localisation {
  bool ran = false;         ///< whether it ran
  std::size_t nodes = 0;    ///< ops the output depends on
  std::size_t checked = 0;  ///< ops checked
  std::size_t kinks = 0;    ///< op inputs not judged: at a kink along both directions tried
  std::size_t unchecked_inputs = 0;  ///< op inputs that could not be perturbed (leaves made
                                     ///< inside the function)
  /// An input of an op changed when another was probed, though no recorded op connects them:
  /// it was computed outside the tape (read with value() and made into a new Variable), and
  /// the gradient misses that path. The localisation stops there.
  bool off_tape = false;
  std::size_t off_tape_node = 0;  ///< the op whose input that is
  std::string off_tape_message;   ///< which inputs, named as in the program
  bool found = false;             ///< whether an op failed alone
  NodeFailure failure;            ///< the first that failed, when found
  std::string sampling;           ///< what was checked, and how
  std::string verdict;            ///< what it means for the whole check
  /// The computation as a program, one line per op, with the attributes of the library op that
  /// recorded it and its module: "%37: f64(64,4) = sum(%36) axes=[1] keepdims=false  # block1".
  std::string program;
};

/// The float32 path of one input: its float analytic gradient against the float64 analytic and
/// numeric ones.
struct FloatCheck {
  bool checked = false;              ///< whether the float32 path was checked
  bool passed = true;                ///< whether every entry was within the float tolerance
  std::size_t compared = 0;          ///< entries compared
  std::size_t failures = 0;          ///< entries out of tolerance
  double max_error_vs_analytic = 0;  ///< max |float32 - float64 analytic|
  double max_error_vs_numeric = 0;   ///< max |float32 - float64 numeric|
  bool has_worst = false;            ///< whether the fields below hold the worst entry
  Shape worst_input;                 ///< its index into the input
  Shape worst_output;                ///< its index into the output (empty under projection)
  double value = 0;                  ///< its float32 value
  double analytic = 0;               ///< its float64 analytic value
  double numeric = 0;                ///< its float64 numeric value
  double tolerance = 0;              ///< its tolerance
};

/// What gradcheck found for one input.
struct InputCheck {
  std::size_t input = 0;     ///< its position among the inputs
  std::string name;          ///< when the caller named the inputs (e.g. a module's parameters)
  Shape shape;               ///< its shape
  bool checked = false;      ///< false when the input does not require grad
  bool passed = true;        ///< whether every compared entry was within tolerance
  std::size_t compared = 0;  ///< Jacobian entries (or directions) compared
  std::size_t failures = 0;  ///< entries out of tolerance
  double max_abs_error = 0;  ///< max |a - n| over compared entries
  double max_rel_error = 0;  ///< max |a - n| / max(|n|, atol)
  /// Whether the fields below hold the entry with the largest error relative to its tolerance.
  bool has_worst = false;
  Shape worst_input;           ///< index into the input
  Shape worst_output;          ///< index into the output (empty under projection)
  double analytic = 0;         ///< its analytic value
  double numeric = 0;          ///< its numeric value
  double tolerance = 0;        ///< its tolerance
  double worst_ratio = 0;      ///< its error over its tolerance
  bool worst_at_kink = false;  ///< the worst entry failed as a kink: analytic outside the slopes
  double left_slope = 0;       ///< its left one-sided slope, when worst_at_kink
  double right_slope = 0;      ///< its right one-sided slope, when worst_at_kink
  std::size_t kinks = 0;       ///< entries skipped at kinks (the analytic value is a subgradient)
  std::size_t refined = 0;     ///< entries compared at a smaller step (high curvature)
  Shape first_kink;            ///< the input index of the first kink
  FloatCheck float32;          ///< the float32 path, for float inputs
};

/// The result of gradcheck(): converts to bool, prints the details with operator<<.
struct GradcheckReport {
  bool passed = true;        ///< whether the whole check passed
  GradcheckOptions options;  ///< the options it ran with
  /// The inputs were float32: the check ran in float64 (the reference) and the float32 path
  /// (the function run in float, its float gradient) was compared against it.
  bool float32_checked = false;
  double float32_output_error = 0;      ///< max |float32 output - float64 output|
  double float32_output_tolerance = 0;  ///< the absolute part of its tolerance
  std::string mode;                     ///< how the Jacobian was compared
  bool projected = false;               ///< the output was projected onto a random vector
  std::vector<InputCheck> inputs;       ///< what was found for each input
  std::vector<std::string> notes;       ///< remarks that do not fail the check
  std::vector<std::string> problems;    ///< reasons for failure beyond the Jacobian entries
  bool backward_checked = false;        ///< whether accumulation and repetition were checked
  double accumulation_error = 0;        ///< max |g2 - 2 g1| after two backward calls
  double repeat_error = 0;              ///< max |g1 - g1'| between two fresh forward+backward runs
  std::shared_ptr<GradcheckReport> second_order;  ///< the second-order check, when asked
  Localisation localisation;  ///< which op is wrong, when the check failed (or options.localise)

  /// Whether the check passed.
  explicit operator bool() const { return passed; }
  /// The report as printed by operator<<.
  std::string str() const;
};

std::ostream& operator<<(std::ostream& os, const GradcheckReport& report);

namespace detail {

using CheckedFunction = std::function<Variable<double>(const std::vector<Variable<double>>&)>;
using FloatFunction = std::function<Variable<float>(const std::vector<Variable<float>>&)>;

/// The dotted path of a module (the address detail::current_module holds), "" when unknown.
using ModuleNamer = std::function<std::string(const void* module)>;

/// The checker behind gradcheck(): f in float64 against central differences and, when f32 is
/// given, the float32 path against that float64 reference (inputs32 hold the same values as
/// inputs, in float). `modules` names the modules the localisation meets.
GradcheckReport run_gradcheck(const CheckedFunction& f, const std::vector<Variable<double>>& inputs,
                              const GradcheckOptions& options,
                              const std::vector<std::string>& names = {},
                              const FloatFunction* f32 = nullptr,
                              const std::vector<Variable<float>>* inputs32 = nullptr,
                              const ModuleNamer& modules = {});

/// The localisation of f at `inputs` (leaves that it may perturb and restores exactly).
Localisation localise(const CheckedFunction& f, const std::vector<Variable<double>>& inputs,
                      const std::vector<std::string>& names, const GradcheckOptions& options,
                      const ModuleNamer& modules);
/// The localisation of the float path: f32 op by op against f64 (x32 holds x64's values).
Localisation localise_float(const CheckedFunction& f64, const FloatFunction& f32,
                            const std::vector<Variable<double>>& x64,
                            const std::vector<Variable<float>>& x32,
                            const GradcheckOptions& options, const ModuleNamer& modules);

template <class F, class V, std::size_t... I>
auto call_unpacked(F& f, const std::vector<V>& xs, std::index_sequence<I...>) {
  return f(xs[I]...);
}

/// Whether f takes N arguments of type const V&.
template <class F, class V, std::size_t... I>
constexpr bool invocable_with_n(std::index_sequence<I...>) {
  return std::is_invocable_v<F&, decltype((void)I, std::declval<const V&>())...>;
}

template <class F, class V, std::size_t N>
bool call_if_arity(F& f, const std::vector<V>& xs, V& out) {
  if constexpr (invocable_with_n<F, V>(std::make_index_sequence<N>{})) {
    if (xs.size() == N) {
      out = call_unpacked(f, xs, std::make_index_sequence<N>{});
      return true;
    }
  }
  return false;
}

template <class F, class V, std::size_t... N>
constexpr bool invocable_with_some_arity(std::index_sequence<N...>) {
  return (invocable_with_n<F, V>(std::make_index_sequence<N + 1>{}) || ...);
}

template <class F, class V, std::size_t... N>
bool call_any_arity(F& f, const std::vector<V>& xs, V& out, std::index_sequence<N...>) {
  return (call_if_arity<F, V, N + 1>(f, xs, out) || ...);
}

/// Calls f with the Variables of xs as separate arguments (up to 8), or as one vector when f
/// takes a std::vector<Variable<double>>. (Separate arguments are tried first: asking whether a
/// generic lambda takes a vector would instantiate its body with one.)
template <class F, class V>
V call_with(F& f, const std::vector<V>& xs) {
  if constexpr (invocable_with_some_arity<F, V>(std::make_index_sequence<8>{})) {
    V out;
    if (!call_any_arity(f, xs, out, std::make_index_sequence<8>{}))
      fail("gradcheck: f does not take ", xs.size(), " Variable arguments");
    return out;
  } else {
    static_assert(std::is_invocable_v<F&, const std::vector<V>&>,
                  "gradcheck: f must accept Variable<double> arguments (or one "
                  "std::vector<Variable<double>>); write it generic over T, e.g. a lambda taking "
                  "const auto&, so that it can run in double");
    return f(xs);
  }
}

template <class T>
constexpr double default_step() {
  return std::is_same_v<T, float> ? 1e-3 : 1e-6;
}

template <class R>
double to_double(const R& r) {
  if constexpr (std::is_arithmetic_v<R>) {
    return static_cast<double>(r);
  } else {
    return static_cast<double>(r.item());
  }
}

}  // namespace detail

/// Checks the reverse-mode gradients of f against central differences, in float64. f maps the
/// inputs (as separate arguments or one std::vector) to a Variable of any shape; every input that
/// requires grad is checked against the full numeric Jacobian (or one random direction in fast
/// mode). An entry that the central difference at eps does not confirm is looked at again at
/// eps/10 and eps/100: where the one-sided differences meet as the step shrinks, the function is
/// smooth there (high curvature) and the entry is compared at the smallest step; where they stay
/// apart it has a kink, and the analytic value must lie between the two one-sided slopes (be a
/// subgradient) to be skipped, else the entry fails. A check that compares nothing fails. With
/// float inputs, f (generic over T) runs twice: in float64, the reference checked
/// against the central difference, and in float32, whose output and gradients are then compared
/// with that reference (the "float64 shadow"): a float path that is wrong fails. The report says
/// where and by how much analytic and numeric disagree.
template <class F, class U>
GradcheckReport gradcheck(F&& f, const std::vector<Variable<U>>& inputs,
                          const GradcheckOptions& options = {}) {
  std::vector<Variable<double>> xs;
  for (const auto& in : inputs) {
    Array<double> v = Array<double>::from_shape(in.shape());
    std::copy(in.value().begin(), in.value().end(), v.begin());
    xs.emplace_back(std::move(v), in.requires_grad());
  }
  detail::CheckedFunction fn = [&f](const std::vector<Variable<double>>& args) {
    return detail::call_with(f, args);
  };
  if constexpr (std::is_same_v<U, float>) {
    detail::FloatFunction fn32 = [&f](const std::vector<Variable<float>>& args) {
      return detail::call_with(f, args);
    };
    return detail::run_gradcheck(fn, xs, options, {}, &fn32, &inputs);
  } else {
    return detail::run_gradcheck(fn, xs, options);
  }
}

template <class F, class U>
GradcheckReport gradcheck(F&& f, std::initializer_list<Variable<U>> inputs,
                          const GradcheckOptions& options = {}) {
  return gradcheck(std::forward<F>(f), std::vector<Variable<U>>(inputs), options);
}

/// Central difference (f(x + h e_i) - f(x - h e_i)) / 2h of a scalar function with respect to
/// every element of x. f takes no argument (it reads x) or x itself, and returns a number or a
/// one-element Variable. x is probed in place and restored exactly after each probe; f runs
/// without recording. The default h is 1e-6 in double and 1e-3 in float.
template <class F, class T>
Array<T> numerical_gradient(F&& f, Array<T>& x, double h = detail::default_step<T>()) {
  NoGradGuard no_grad;
  Array<T> g = Array<T>::from_shape(x.shape());
  T* p = x.data();
  for (std::size_t i = 0; i < x.size(); ++i) {
    const T original = p[i];
    const T up = static_cast<T>(original + h);
    const T down = static_cast<T>(original - h);
    p[i] = up;
    const double fu = detail::to_double(f());
    p[i] = down;
    const double fd = detail::to_double(f());
    p[i] = original;
    g.data()[i] = static_cast<T>((fu - fd) / (static_cast<double>(up) - static_cast<double>(down)));
  }
  return g;
}

/// numerical_gradient with respect to a leaf Variable's value.
template <class F, class T>
Array<T> numerical_gradient(F&& f, Variable<T>& x, double h = detail::default_step<T>()) {
  auto call = [&]() {
    if constexpr (std::is_invocable_v<F&, Variable<T>&>) {
      return f(x);
    } else {
      return f();
    }
  };
  // Probed through the value itself, not mutable_value(): every probe is undone exactly, so a
  // graph that recorded x stays valid.
  return numerical_gradient(call, x.impl().value, h);
}

}  // namespace ad
