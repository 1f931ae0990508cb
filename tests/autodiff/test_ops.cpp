// Every public op against an independent reference: forward values against NumPy
// (tests/autodiff/numpy_ops.py) in double and float, on random shapes that broadcast (leading
// axes, size-1 axes, 0-d, empty where legal) and with NaN inputs; gradients against the central
// difference in double, and the float path against that double reference (gradcheck's float64
// shadow). The same program runs in the plain, native and sanitizer builds (scripts/test).
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <sstream>

#include <xtensor/xnpy.hpp>

#include "autodiff/kernels/reduce.hpp"
#include "helpers.hpp"

namespace tt = boost::test_tools;
using ad::Array;
using ad::Shape;
using V64 = ad::Variable<double>;
using V32 = ad::Variable<float>;

namespace {

/// An op under test, callable on double and on float Variables (one generic definition).
struct Fn {
  std::function<V64(const std::vector<V64>&)> f64;
  std::function<V32(const std::vector<V32>&)> f32;
  V64 operator()(const std::vector<V64>& xs) const { return f64(xs); }
  V32 operator()(const std::vector<V32>& xs) const { return f32(xs); }
};

template <class G>
Fn fn(G g) {
  return Fn{[g](const std::vector<V64>& xs) { return g(xs); },
            [g](const std::vector<V32>& xs) { return g(xs); }};
}

/// One case: the op's name in numpy_ops.py with its keyword arguments (JSON), the inputs, the
/// op itself, and whether its gradient is checked (not for NaN inputs or empty tensors).
struct Case {
  std::string label;  // the op and what is special, for messages
  std::string op;
  std::string args;
  std::vector<Array<double>> inputs;
  Fn f;
  bool gradcheck = true;
  bool second_order = false;  // also the gradient of the gradient
};

/// Random shapes and values from one seeded stream.
class Draw {
 public:
  explicit Draw(std::uint64_t seed) : rng_(seed) {}
  std::size_t index(std::size_t n) {
    return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng_);
  }
  bool chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng_) < p; }
  double uniform(double lo, double hi) {
    return std::uniform_real_distribution<double>(lo, hi)(rng_);
  }

  /// A shape of rank lo..hi with extents 1..4 (0 sometimes when `empty`).
  Shape shape(std::size_t lo, std::size_t hi, bool empty = false) {
    Shape s(lo + index(hi - lo + 1));
    for (auto& d : s) d = empty && chance(0.1) ? 0 : 1 + index(4);
    return s;
  }
  /// A shape that broadcasts to `full`: some leading axes dropped, some axes set to 1.
  Shape broadcast_from(const Shape& full) {
    const std::size_t drop = index(full.size() + 1);
    Shape s(full.begin() + static_cast<std::ptrdiff_t>(drop), full.end());
    for (auto& d : s)
      if (chance(0.3)) d = 1;
    return s;
  }
  /// Values in [lo, hi), representable in float (so double and float see the same inputs).
  Array<double> values(const Shape& s, double lo = -1.5, double hi = 1.5) {
    Array<double> a = Array<double>::from_shape(s);
    for (auto& x : a) x = static_cast<float>(uniform(lo, hi));
    return a;
  }
  /// Values whose magnitude is in [lo, hi), with random signs: away from a kink at 0.
  Array<double> away_from_zero(const Shape& s, double lo = 0.2, double hi = 1.5) {
    Array<double> a = values(s, lo, hi);
    for (auto& x : a) x = chance(0.5) ? -x : x;
    return a;
  }
  /// Some axes of `s`, each with probability p, written negative half of the time.
  std::vector<long> axes(const Shape& s, double p) {
    std::vector<long> out;
    for (std::size_t a = 0; a < s.size(); ++a)
      if (chance(p)) out.push_back(chance(0.5) ? long(a) : long(a) - long(s.size()));
    return out;
  }
  std::mt19937_64& rng() { return rng_; }

 private:
  std::mt19937_64 rng_;
};

std::string json(const Shape& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i) out += (i ? "," : "") + std::to_string(s[i]);
  return out + "]";
}

template <class C>
std::string json_list(const C& c) {
  std::ostringstream out;
  out << "[";
  for (std::size_t i = 0; i < c.size(); ++i) out << (i ? "," : "") << c[i];
  out << "]";
  return out.str();
}

std::string json_bool(bool b) {
  return b ? "true" : "false";
}

/// Shape pairs that broadcast, drawn at random, with the pairs that once went wrong first.
std::vector<std::pair<Shape, Shape>> broadcast_pairs(Draw& d, std::size_t random) {
  std::vector<std::pair<Shape, Shape>> pairs = {{{1, 8}, {3, 8}},    {{8}, {2, 8}},
                                                {{3, 3}, {4, 3, 3}}, {{4}, {2, 4}},
                                                {{}, {2, 3}},        {{2, 0, 3}, {3}}};
  for (std::size_t i = 0; i < random; ++i) {
    Shape full = d.shape(0, 4, true);
    Shape a = d.broadcast_from(full), b = d.broadcast_from(full);
    if (d.chance(0.5)) std::swap(a, b);
    pairs.emplace_back(a, b);
  }
  return pairs;
}

/// NumPy's broadcast of two shapes (that do broadcast).
Shape broadcast(const Shape& a, const Shape& b) {
  const std::size_t n = std::max(a.size(), b.size());
  Shape out(n, 1);
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    const std::size_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    out[i] = da == 1 ? db : da;
  }
  return out;
}

bool has_empty(const std::vector<Array<double>>& inputs) {
  for (const auto& a : inputs)
    if (a.size() == 0) return true;
  return false;
}

/// An elementwise op under test: its name and arguments for NumPy, the op, and its inputs'
/// domains (check_op's specs: ranges and kinks).
struct Elementwise {
  const char* op;
  std::string args;
  Fn f;
  std::vector<ad::InputSpec> specs;
  bool second_order = false;  // also the gradient of the gradient
};

ad::InputSpec domain(double lo, double hi, std::vector<double> kinks = {}) {
  ad::InputSpec s;
  s.lo = lo;
  s.hi = hi;
  s.kinks = std::move(kinks);
  return s;
}

std::vector<Elementwise> elementwise_ops() {
  using Specs = std::vector<ad::InputSpec>;
  const Specs any{domain(-2, 2)}, positive{domain(0.5, 2)}, kink{domain(-2, 2, {0})},
      pair{domain(-2, 2), domain(-2, 2)};
  return {
      {"neg", "{}", fn([](const auto& x) { return ad::neg(x[0]); }), any},
      {"affine", R"({"scale": -0.75, "shift": 0.5})",
       fn([](const auto& x) { return ad::affine(x[0], -0.75, 0.5); }), any},
      {"pow_scalar", R"({"p": 3.0})", fn([](const auto& x) { return ad::pow(x[0], 3.0); }), any},
      {"pow_scalar", R"({"p": -1.5})", fn([](const auto& x) { return ad::pow(x[0], -1.5); }),
       positive},
      {"pow_scalar", R"({"p": 0.5})", fn([](const auto& x) { return ad::pow(x[0], 0.5); }),
       positive},
      {"exp", "{}", fn([](const auto& x) { return ad::exp(x[0]); }), {domain(-3, 3)}},
      {"log", "{}", fn([](const auto& x) { return ad::log(x[0]); }), {domain(0.2, 3)}},
      {"sqrt", "{}", fn([](const auto& x) { return ad::sqrt(x[0]); }), {domain(0.2, 3)}},
      {"abs", "{}", fn([](const auto& x) { return ad::abs(x[0]); }), kink},
      {"tanh", "{}", fn([](const auto& x) { return ad::tanh(x[0]); }), {domain(-3, 3)}},
      {"sigmoid", "{}", fn([](const auto& x) { return ad::sigmoid(x[0]); }), {domain(-6, 6)}},
      {"relu", "{}", fn([](const auto& x) { return ad::relu(x[0]); }), kink},
      {"leaky_relu", R"({"slope": 0.1})",
       fn([](const auto& x) { return ad::leaky_relu(x[0], 0.1); }), kink},
      {"softplus", "{}", fn([](const auto& x) { return ad::softplus(x[0]); }), {domain(-5, 5)}},
      {"erf", "{}", fn([](const auto& x) { return ad::erf(x[0]); }), any},
      {"square", "{}", fn([](const auto& x) { return ad::square(x[0]); }), any},
      {"clamp",
       R"({"lo": -0.5, "hi": 0.75})",
       fn([](const auto& x) { return ad::clamp(x[0], -0.5, 0.75); }),
       {domain(-2, 2, {-0.5, 0.75})}},
      {"add", "{}", fn([](const auto& x) { return x[0] + x[1]; }), pair},
      {"sub", "{}", fn([](const auto& x) { return x[0] - x[1]; }), pair},
      {"mul", "{}", fn([](const auto& x) { return x[0] * x[1]; }), pair},
      {"div", "{}", fn([](const auto& x) { return x[0] / x[1]; }),
       Specs{domain(-2, 2), domain(0.5, 2)}},
      {"maximum", "{}", fn([](const auto& x) { return ad::maximum(x[0], x[1]); }), pair},
      {"minimum", "{}", fn([](const auto& x) { return ad::minimum(x[0], x[1]); }), pair},
      {"pow",
       "{}",
       fn([](const auto& x) { return ad::pow(x[0], x[1]); }),
       {domain(0.5, 2), domain(-1.5, 2.5)}},
      // The second round's and the sequence models' activations, to second order.
      {"sin", "{}", fn([](const auto& x) { return ad::sin(x[0]); }), {domain(-3, 3)}, true},
      {"cos", "{}", fn([](const auto& x) { return ad::cos(x[0]); }), {domain(-3, 3)}, true},
      {"elu", R"({"alpha": 0.7})", fn([](const auto& x) { return ad::elu(x[0], 0.7); }), kink,
       true},
      {"silu", "{}", fn([](const auto& x) { return ad::silu(x[0]); }), {domain(-5, 5)}, true},
      {"mish", "{}", fn([](const auto& x) { return ad::mish(x[0]); }), {domain(-5, 5)}, true},
      {"logsigmoid",
       "{}",
       fn([](const auto& x) { return ad::logsigmoid(x[0]); }),
       {domain(-8, 8)},
       true},
      {"hardtanh",
       "{}",
       fn([](const auto& x) { return ad::hardtanh(x[0]); }),
       {domain(-2, 2, {-1, 1})},
       true},
      {"gelu", "{}", fn([](const auto& x) { return ad::gelu(x[0]); }), {domain(-4, 4)}, true},
      {"gelu",
       R"({"approximate": "tanh"})",
       fn([](const auto& x) { return ad::gelu(x[0], ad::Gelu::tanh); }),
       {domain(-4, 4)},
       true},
  };
}

/// The elementwise ops' forward values against NumPy: each unary op on a 0-d input and on three
/// random shapes (empty ones among them), each binary op on broadcasting pairs. (Their gradients
/// are check_op's: every_elementwise_op_under_check_op.)
void elementwise_cases(std::vector<Case>& cases, Draw& d) {
  for (const auto& e : elementwise_ops()) {
    const ad::InputSpec &a = e.specs[0], &b = e.specs.back();
    if (e.specs.size() == 1)
      for (int i = 0; i < 4; ++i) {
        Shape s = i == 0 ? Shape{} : d.shape(1, 4, true);
        cases.push_back({std::string(e.op) + " " + ad::shape_str(s),
                         e.op,
                         e.args,
                         {d.values(s, a.lo, a.hi)},
                         e.f,
                         false});
      }
    else
      for (const auto& [sa, sb] : broadcast_pairs(d, 6))
        cases.push_back({std::string(e.op) + " " + ad::shape_str(sa) + " " + ad::shape_str(sb),
                         e.op,
                         e.args,
                         {d.values(sa, a.lo, a.hi), d.values(sb, b.lo, b.hi)},
                         e.f,
                         false});
  }
  // where: the mask broadcasts too; it is passed to NumPy as 0/1 values.
  for (const auto& [sa, sb] : broadcast_pairs(d, 6)) {
    Shape full = broadcast(sa, sb);
    Shape sm = d.broadcast_from(full);
    ad::Mask mask = ad::Mask::from_shape(sm);
    Array<double> m = Array<double>::from_shape(sm);
    for (std::size_t i = 0; i < mask.size(); ++i) m.data()[i] = mask.data()[i] = d.chance(0.5);
    cases.push_back(
        {"where " + ad::shape_str(sm) + " " + ad::shape_str(sa) + " " + ad::shape_str(sb),
         "where",
         "{}",
         {m, d.values(sa), d.values(sb)},
         // input 0 is the mask as numbers, for NumPy; the op takes it as a Mask
         fn([mask](const auto& x) { return ad::where(mask, x[1], x[2]); })});
  }
}

void reduction_cases(std::vector<Case>& cases, Draw& d) {
  using Reduce = std::function<Fn(std::vector<long>, bool)>;
  const std::vector<std::pair<const char*, Reduce>> ops = {
      {"sum", [](std::vector<long> ax,
                 bool k) { return fn([ax, k](const auto& x) { return ad::sum(x[0], ax, k); }); }},
      {"mean", [](std::vector<long> ax,
                  bool k) { return fn([ax, k](const auto& x) { return ad::mean(x[0], ax, k); }); }},
      {"max", [](std::vector<long> ax,
                 bool k) { return fn([ax, k](const auto& x) { return ad::max(x[0], ax, k); }); }},
      {"min", [](std::vector<long> ax,
                 bool k) { return fn([ax, k](const auto& x) { return ad::min(x[0], ax, k); }); }},
      {"log_sum_exp",
       [](std::vector<long> ax, bool k) {
         return fn([ax, k](const auto& x) { return ad::log_sum_exp(x[0], ax, k); });
       }},
  };
  for (const auto& [op, make] : ops)
    for (int i = 0; i < 6; ++i) {
      Shape s = i == 0 ? Shape{} : d.shape(1, 4);
      const std::vector<long> axes = d.axes(s, 0.4);
      const bool keep = d.chance(0.5);
      cases.push_back(
          {std::string(op) + " " + ad::shape_str(s) + " axes " + json_list(axes),
           op,
           R"({"axes": )" + json_list(axes) + R"(, "keepdims": )" + json_bool(keep) + "}",
           {d.values(s, -2, 2)},
           make(axes, keep)});
    }
  // Sums over empty tensors are legal (zeros); reductions of all axes plainly.
  cases.push_back({"sum of an empty tensor",
                   "sum",
                   R"({"axes": [1], "keepdims": false})",
                   {Array<double>::from_shape({2, 0, 3})},
                   fn([](const auto& x) { return ad::sum(x[0], {1}, false); }),
                   false});
  cases.push_back({"sum of all", "sum", "{}", {d.values({3, 4})}, fn([](const auto& x) {
                     return ad::sum(x[0]);
                   })});
  cases.push_back({"mean of all", "mean", "{}", {d.values({2, 3, 2})}, fn([](const auto& x) {
                     return ad::mean(x[0]);
                   })});
  for (int i = 0; i < 5; ++i) {
    Shape s = d.shape(1, 4);
    const long axis = long(d.index(s.size())) - (d.chance(0.5) ? long(s.size()) : 0);
    const std::string args = R"({"axis": )" + std::to_string(axis) + "}";
    Array<double> x = d.values(s, -3, 3);
    cases.push_back(
        {"log_softmax " + ad::shape_str(s), "log_softmax", args, {x}, fn([axis](const auto& x) {
           return ad::log_softmax(x[0], axis);
         })});
    cases.push_back({"softmax " + ad::shape_str(s), "softmax", args, {x}, fn([axis](const auto& x) {
                       return ad::softmax(x[0], axis);
                     })});
  }
  for (int i = 0; i < 3; ++i) {
    Shape s = d.shape(0, 3);
    cases.push_back({"squared_distance " + ad::shape_str(s),
                     "squared_distance",
                     "{}",
                     {d.values(s), d.values(s)},
                     fn([](const auto& x) { return ad::squared_distance(x[0], x[1]); })});
    const double scale = i == 0 ? 0.5 : std::round(d.uniform(-2, 2) * 100) / 100;  // as printed
    cases.push_back(
        {"squared_distance scaled " + ad::shape_str(s),
         "squared_distance",
         R"({"scale": )" + std::to_string(scale) + "}",
         {d.values(s), d.values(s)},
         fn([scale](const auto& x) { return ad::squared_distance(x[0], x[1], scale); })});
  }
  for (double smoothing : {0.0, 0.1}) {
    // Up to 17 rows: the kernel takes them a register's width at a time (8 floats with AVX).
    const std::size_t n = 2 + d.index(16), k = 2 + d.index(5);
    std::vector<std::size_t> labels(n);
    for (auto& l : labels) l = d.index(k);
    std::ostringstream args;
    args << R"({"labels": )" << json_list(labels) << R"(, "label_smoothing": )" << smoothing << "}";
    cases.push_back({"softmax_cross_entropy",
                     "softmax_cross_entropy",
                     args.str(),
                     {d.values({n, k}, -3, 3)},
                     fn([labels, smoothing](const auto& x) {
                       return ad::softmax_cross_entropy(x[0], labels, smoothing);
                     })});
  }
}

void product_cases(std::vector<Case>& cases, Draw& d) {
  for (int i = 0; i < 12; ++i) {
    const bool ta = d.chance(0.5), tb = d.chance(0.5);
    const std::size_t n = 1 + d.index(4), k = d.index(5), m = 1 + d.index(4),
                      batch = 1 + d.index(3);
    const int kind = i % 4;  // 2-D·2-D, 3-D·2-D, 2-D·3-D, 3-D·3-D
    Shape sa = ta ? Shape{k, n} : Shape{n, k}, sb = tb ? Shape{m, k} : Shape{k, m};
    auto batched = [batch](const Shape& m) { return Shape{batch, m[0], m[1]}; };
    if (kind == 1 || kind == 3) sa = batched(sa);
    if (kind == 2 || kind == 3) sb = batched(sb);
    cases.push_back(
        {"matmul " + ad::shape_str(sa) + (ta ? "ᵀ " : " ") + ad::shape_str(sb) + (tb ? "ᵀ" : ""),
         "matmul",
         R"({"trans_a": )" + json_bool(ta) + R"(, "trans_b": )" + json_bool(tb) + "}",
         {d.values(sa), d.values(sb)},
         fn([ta, tb](const auto& x) { return ad::matmul(x[0], x[1], ta, tb); }),
         k > 0});
  }
  for (int i = 0; i < 4; ++i) {
    const std::size_t in = 1 + d.index(4), out = 1 + d.index(4);
    Shape sx = d.shape(1, 3);
    sx.back() = in;
    std::vector<Array<double>> inputs = {d.values(sx), d.values({out, in})};
    if (i % 2 == 0) inputs.push_back(d.values({out}));
    cases.push_back({"linear " + ad::shape_str(sx), "linear", "{}", inputs, fn([](const auto& x) {
                       return ad::linear(x[0], x[1],
                                         x.size() == 3 ? x[2] : std::decay_t<decltype(x[0])>());
                     })});
  }
  // With an activation applied in the same op.
  const std::pair<ad::Activation, const char*> activations[] = {
      {ad::Activation::relu, "relu"},
      {ad::Activation::tanh, "tanh"},
      {ad::Activation::sigmoid, "sigmoid"}};
  for (int i = 0; i < 6; ++i) {
    const auto [act, name] = activations[i % 3];
    const std::size_t in = 1 + d.index(4), out = 1 + d.index(4);
    Shape sx = d.shape(1, 3);
    sx.back() = in;
    std::vector<Array<double>> inputs = {d.values(sx), d.values({out, in})};
    if (i < 3) inputs.push_back(d.values({out}));
    cases.push_back({"linear_" + std::string(name) + " " + ad::shape_str(sx), "linear",
                     R"({"activation": ")" + std::string(name) + R"("})", inputs,
                     fn([act = act](const auto& x) {
                       return ad::linear(
                           x[0], x[1], x.size() == 3 ? x[2] : std::decay_t<decltype(x[0])>(), act);
                     })});
  }
}

void conv_cases(std::vector<Case>& cases, Draw& d) {
  // Square convolutions through the short forms, then kernels of any height and width with
  // strides, paddings and dilations per axis and groups through ConvOptions.
  for (int i = 0; i < 8; ++i) {
    const std::size_t k = 1 + d.index(3), stride = 1 + d.index(2), pad = d.index(k);
    const std::size_t n = 1 + d.index(2), c = 1 + d.index(2), o = 1 + d.index(3);
    const std::size_t h = k + d.index(4), w = k + d.index(4);
    Shape sx{n, c, h, w}, sw{o, c, k, k};
    const std::size_t ho = (h + 2 * pad - k) / stride + 1, wo = (w + 2 * pad - k) / stride + 1;
    const std::string args =
        R"({"stride": )" + std::to_string(stride) + R"(, "padding": )" + std::to_string(pad) + "}";
    const std::string geo = ad::shape_str(sx) + " k" + std::to_string(k) + " s" +
                            std::to_string(stride) + " p" + std::to_string(pad);
    Array<double> x = d.values(sx), wt = d.values(sw), b = d.values({o});
    cases.push_back({"conv2d " + geo, "conv2d", args, {x, wt}, fn([stride, pad](const auto& v) {
                       return ad::conv2d(v[0], v[1], stride, pad);
                     })});
    cases.push_back(
        {"conv2d+bias " + geo, "conv2d", args, {x, wt, b}, fn([stride, pad](const auto& v) {
           return ad::conv2d(v[0], v[1], v[2], stride, pad);
         })});
    Array<double> g = d.values({n, o, ho, wo});
    cases.push_back({"conv2d_input_grad " + geo,
                     "conv2d_input_grad",
                     R"({"x_shape": )" + json(sx) + ", " + args.substr(1),
                     {g, wt},
                     fn([sx, stride, pad](const auto& v) {
                       return ad::conv2d_input_grad(v[0], v[1], sx, stride, pad);
                     })});
    cases.push_back({"conv2d_weight_grad " + geo,
                     "conv2d_weight_grad",
                     R"({"w_shape": )" + json(sw) + ", " + args.substr(1),
                     {x, g},
                     fn([sw, stride, pad](const auto& v) {
                       return ad::conv2d_weight_grad(v[0], v[1], sw, stride, pad);
                     })});
  }
  for (int i = 0; i < 10; ++i) {
    ad::ConvOptions co;
    const std::size_t kh = 1 + d.index(3), kw = 1 + d.index(3);
    co.stride_h = 1 + d.index(2), co.stride_w = 1 + d.index(2);
    co.dilation_h = 1 + d.index(2), co.dilation_w = 1 + d.index(2);
    co.padding_h = d.index(kh), co.padding_w = d.index(kw);
    co.groups = 1 + d.index(3);
    const std::size_t n = 1 + d.index(2), c = co.groups * (1 + d.index(2)),
                      o = co.groups * (1 + d.index(2));
    const std::size_t span_h = co.dilation_h * (kh - 1) + 1, span_w = co.dilation_w * (kw - 1) + 1;
    const std::size_t h = span_h + d.index(4), w = span_w + d.index(4);
    Shape sx{n, c, h, w}, sw{o, c / co.groups, kh, kw};
    const std::size_t ho = (h + 2 * co.padding_h - span_h) / co.stride_h + 1,
                      wo = (w + 2 * co.padding_w - span_w) / co.stride_w + 1;
    auto pair = [](std::size_t a, std::size_t b) {
      return "[" + std::to_string(a) + ", " + std::to_string(b) + "]";
    };
    const std::string args = R"({"stride": )" + pair(co.stride_h, co.stride_w) +
                             R"(, "padding": )" + pair(co.padding_h, co.padding_w) +
                             R"(, "dilation": )" + pair(co.dilation_h, co.dilation_w) +
                             R"(, "groups": )" + std::to_string(co.groups) + "}";
    const std::string geo = ad::shape_str(sx) + " w" + ad::shape_str(sw) + " " + args;
    Array<double> x = d.values(sx), wt = d.values(sw), b = d.values({o});
    cases.push_back({"conv2d " + geo, "conv2d", args, {x, wt}, fn([co](const auto& v) {
                       return ad::conv2d(v[0], v[1], std::decay_t<decltype(v[0])>(), co);
                     })});
    cases.push_back({"conv2d+bias " + geo, "conv2d", args, {x, wt, b}, fn([co](const auto& v) {
                       return ad::conv2d(v[0], v[1], v[2], co);
                     })});
    Array<double> g = d.values({n, o, ho, wo});
    cases.push_back(
        {"conv2d_input_grad " + geo,
         "conv2d_input_grad",
         R"({"x_shape": )" + json(sx) + ", " + args.substr(1),
         {g, wt},
         fn([sx, co](const auto& v) { return ad::conv2d_input_grad(v[0], v[1], sx, co); })});
    cases.push_back(
        {"conv2d_weight_grad " + geo,
         "conv2d_weight_grad",
         R"({"w_shape": )" + json(sw) + ", " + args.substr(1),
         {x, g},
         fn([sw, co](const auto& v) { return ad::conv2d_weight_grad(v[0], v[1], sw, co); })});
  }
  for (int i = 0; i < 8; ++i) {
    const std::size_t k = 1 + d.index(3), stride = 1 + d.index(2), pad = d.index(k / 2 + 1);
    Shape sx{1 + d.index(2), 1 + d.index(2), k + d.index(4), k + d.index(4)};
    const std::string args = R"({"kernel": )" + std::to_string(k) + R"(, "stride": )" +
                             std::to_string(stride) + R"(, "padding": )" + std::to_string(pad) +
                             "}";
    const std::string geo = ad::shape_str(sx) + " k" + std::to_string(k) + " s" +
                            std::to_string(stride) + " p" + std::to_string(pad);
    Array<double> x = d.values(sx, -3, 3);
    cases.push_back(
        {"max_pool2d " + geo, "max_pool2d", args, {x}, fn([k, stride, pad](const auto& v) {
           return ad::max_pool2d(v[0], k, stride, pad);
         })});
    cases.push_back(
        {"avg_pool2d " + geo, "avg_pool2d", args, {x}, fn([k, stride, pad](const auto& v) {
           return ad::avg_pool2d(v[0], k, stride, pad);
         })});
    const std::size_t ho = (sx[2] + 2 * pad - k) / stride + 1,
                      wo = (sx[3] + 2 * pad - k) / stride + 1;
    cases.push_back({"avg_pool2d_grad " + geo,
                     "avg_pool2d_grad",
                     R"({"x_shape": )" + json(sx) + ", " + args.substr(1),
                     {d.values({sx[0], sx[1], ho, wo})},
                     fn([sx, k, stride, pad](const auto& v) {
                       return ad::avg_pool2d_grad(v[0], sx, k, stride, pad);
                     })});
  }
  // The 2×2, stride-2 fast path of max pooling on a wider plane.
  cases.push_back({"max_pool2d 2x2 fast path",
                   "max_pool2d",
                   R"({"kernel": 2, "stride": 2, "padding": 0})",
                   {d.values({2, 3, 6, 10}, -3, 3)},
                   fn([](const auto& v) { return ad::max_pool2d(v[0], 2, 2, 0); })});
}

void shape_cases(std::vector<Case>& cases, Draw& d) {
  for (int i = 0; i < 4; ++i) {
    Shape s = d.shape(1, 4, true);
    Shape t{ad::shape_size(s)};
    if (t[0] % 2 == 0 && t[0] > 0) t = {2, t[0] / 2};
    cases.push_back({"reshape " + ad::shape_str(s),
                     "reshape",
                     R"({"shape": )" + json(t) + "}",
                     {d.values(s)},
                     fn([t](const auto& x) { return ad::reshape(x[0], t); })});
    const long start = long(d.index(s.size())), end = long(s.size()) - 1;
    cases.push_back(
        {"flatten " + ad::shape_str(s),
         "flatten",
         R"({"start": )" + std::to_string(start) + R"(, "end": )" + std::to_string(end) + "}",
         {d.values(s)},
         fn([start, end](const auto& x) { return ad::flatten(x[0], start, end); })});
    std::vector<std::size_t> axes(s.size());
    std::iota(axes.begin(), axes.end(), 0);
    std::shuffle(axes.begin(), axes.end(), d.rng());
    cases.push_back({"permute " + ad::shape_str(s),
                     "permute",
                     R"({"axes": )" + json_list(axes) + "}",
                     {d.values(s)},
                     fn([axes](const auto& x) { return ad::permute(x[0], axes); })});
  }
  for (int i = 0; i < 3; ++i) {
    Shape s = d.shape(2, 4);
    cases.push_back(
        {"transpose " + ad::shape_str(s), "transpose", "{}", {d.values(s)}, fn([](const auto& x) {
           return ad::transpose(x[0]);
         })});
  }
  for (int i = 0; i < 5; ++i) {
    Shape s = d.shape(1, 3);
    const long axis = long(d.index(s.size()));
    const std::size_t extent = s[axis], start = d.index(extent + 1), step = 1 + d.index(2);
    const std::size_t stop = start + d.index(extent + 2);
    cases.push_back({"slice " + ad::shape_str(s),
                     "slice",
                     R"({"axis": )" + std::to_string(axis) + R"(, "start": )" +
                         std::to_string(start) + R"(, "stop": )" + std::to_string(stop) +
                         R"(, "step": )" + std::to_string(step) + "}",
                     {d.values(s)},
                     fn([=](const auto& x) { return ad::slice(x[0], axis, start, stop, step); }),
                     start < extent});
    const std::size_t index = d.index(extent);
    cases.push_back(
        {"select " + ad::shape_str(s),
         "select",
         R"({"axis": )" + std::to_string(axis) + R"(, "index": )" + std::to_string(index) + "}",
         {d.values(s)},
         fn([=](const auto& x) { return ad::select(x[0], axis, index); }),
         true,
         true});  // and to second order
    // unslice: a part of length len placed at start:..:step of an axis of the target
    Shape target = s;
    const std::size_t len = start < extent ? (std::min(stop, extent) - start + step - 1) / step : 0;
    Shape part = s;
    part[axis] = len;
    cases.push_back(
        {"unslice " + ad::shape_str(target),
         "unslice",
         R"({"shape": )" + json(target) + R"(, "axis": )" + std::to_string(axis) +
             R"(, "start": )" + std::to_string(start) + R"(, "step": )" + std::to_string(step) +
             "}",
         {d.values(part)},
         fn([=](const auto& x) { return ad::unslice(x[0], target, axis, start, step); }),
         len > 0});
  }
  for (int i = 0; i < 4; ++i) {
    Shape s = d.shape(1, 3);
    const long axis = long(d.index(s.size()));
    std::vector<std::size_t> idx(1 + d.index(5));
    for (auto& v : idx) v = d.index(s[axis]);
    cases.push_back(
        {"index_select " + ad::shape_str(s),
         "index_select",
         R"({"axis": )" + std::to_string(axis) + R"(, "indices": )" + json_list(idx) + "}",
         {d.values(s)},
         fn([axis, idx](const auto& x) { return ad::index_select(x[0], axis, idx); })});
    Shape part = s;
    part[axis] = idx.size();
    cases.push_back(
        {"index_add " + ad::shape_str(s),
         "index_add",
         R"({"shape": )" + json(s) + R"(, "axis": )" + std::to_string(axis) + R"(, "indices": )" +
             json_list(idx) + "}",
         {d.values(part)},
         fn([s, axis, idx](const auto& x) { return ad::index_add(x[0], s, axis, idx); })});
    Shape is = s;
    is[axis] = 1 + d.index(4);
    Array<std::size_t> positions = Array<std::size_t>::from_shape(is);
    std::vector<std::size_t> flat;
    for (auto& v : positions) flat.push_back(v = d.index(s[axis]));
    const ad::Index index(std::move(positions));
    const std::string index_json = json_list(flat);  // flat, with its shape beside it
    cases.push_back({"gather " + ad::shape_str(s),
                     "gather_flat",
                     R"({"axis": )" + std::to_string(axis) + R"(, "index": )" + index_json +
                         R"(, "index_shape": )" + json(is) + "}",
                     {d.values(s)},
                     fn([axis, index](const auto& x) { return ad::gather(x[0], axis, index); })});
    // embedding: rows of a (count, dim) table at ids of any shape, the ids a constant Variable
    const Shape table{1 + d.index(5), 1 + d.index(4)};
    const Shape id_shape = d.shape(0, 2);
    std::vector<std::size_t> ids(ad::shape_size(id_shape));
    for (auto& v : ids) v = d.index(table[0]);
    cases.push_back({"embedding " + ad::shape_str(id_shape),
                     "embedding",
                     R"({"ids": )" + json_list(ids) + R"(, "ids_shape": )" + json(id_shape) + "}",
                     {d.values(table)},
                     fn([ids, id_shape](const auto& x) {
                       using T = typename std::decay_t<decltype(x[0])>::value_type;
                       Array<T> a = Array<T>::from_shape(id_shape);
                       std::copy(ids.begin(), ids.end(), a.begin());
                       return ad::embedding(x[0], ad::Variable<T>(std::move(a)));
                     }),
                     true,
                     true});
    cases.push_back(
        {"scatter_add " + ad::shape_str(s),
         "scatter_add_flat",
         R"({"shape": )" + json(s) + R"(, "axis": )" + std::to_string(axis) + R"(, "index": )" +
             index_json + R"(, "index_shape": )" + json(is) + "}",
         {d.values(is)},
         fn([s, axis, index](const auto& x) { return ad::scatter_add(x[0], s, axis, index); })});
  }
  for (int i = 0; i < 3; ++i) {
    Shape s = d.shape(1, 3);
    const long axis = long(d.index(s.size()));
    std::vector<Array<double>> parts;
    for (int p = 0; p < 3; ++p) {
      Shape ps = s;
      ps[axis] = d.index(3) + (p == 0);
      parts.push_back(d.values(ps));
    }
    cases.push_back({"concatenate " + ad::shape_str(s), "concatenate",
                     R"({"axis": )" + std::to_string(axis) + "}", parts,
                     fn([axis](const auto& x) { return ad::concatenate(x, axis); }),
                     !has_empty(parts)});
    const long at = long(d.index(s.size() + 1));
    cases.push_back({"stack " + ad::shape_str(s),
                     "stack",
                     R"({"axis": )" + std::to_string(at) + "}",
                     {d.values(s), d.values(s)},
                     fn([at](const auto& x) { return ad::stack(x, at); })});
  }
  for (int i = 0; i < 4; ++i) {
    Shape full = d.shape(1, 4);
    Shape s = d.broadcast_from(full);
    cases.push_back({"broadcast_to " + ad::shape_str(s) + " " + ad::shape_str(full),
                     "broadcast_to",
                     R"({"shape": )" + json(full) + "}",
                     {d.values(s)},
                     fn([full](const auto& x) { return ad::broadcast_to(x[0], full); })});
    cases.push_back({"sum_to " + ad::shape_str(full) + " " + ad::shape_str(s),
                     "sum_to",
                     R"({"shape": )" + json(s) + "}",
                     {d.values(full)},
                     fn([s](const auto& x) { return ad::sum_to(x[0], s); })});
  }
}

/// The activations, math and reductions of the second round, each also checked to second order
/// (gradcheck's create_graph pass against the central difference of the gradient).
void second_round_cases(std::vector<Case>& cases, Draw& d) {
  const std::size_t first = cases.size();
  for (int i = 0; i < 4; ++i) {  // hidden sizes across the SIMD width, for the rows' ends
    const std::size_t n = 1 + d.index(3), h = 1 + d.index(10);
    cases.push_back(
        {"lstm_cell N=" + std::to_string(n) + " H=" + std::to_string(h),
         "lstm_cell",
         "{}",
         {d.values({n, 4 * h}, -2, 2), d.values({n, 4 * h}, -2, 2), d.values({n, h}, -2, 2)},
         fn([](const auto& x) { return ad::lstm_cell(x[0], x[1], x[2]); })});
  }
  for (int i = 0; i < 8; ++i) {
    Shape s = i == 0 ? Shape{} : d.shape(1, 4);
    const std::vector<long> axes = d.axes(s, 0.5);
    const bool keep = d.chance(0.5);
    Shape kept = ad::kernels::keepdims_shape(s, axes, "test");
    const double n = double(ad::shape_size(s)) / double(ad::shape_size(kept));
    const double correction = n > 1 && d.chance(0.6) ? 1.0 : 0.0;
    std::ostringstream args;
    args << R"({"axes": )" << json_list(axes) << R"(, "correction": )" << correction
         << R"(, "keepdims": )" << json_bool(keep) << "}";
    Array<double> x = d.values(s, -2, 2);
    cases.push_back({"var " + ad::shape_str(s),
                     "var",
                     args.str(),
                     {x},
                     fn([=](const auto& x) { return ad::var(x[0], axes, correction, keep); }),
                     n > 1});
    cases.push_back({"std " + ad::shape_str(s),
                     "std",
                     args.str(),
                     {x},
                     fn([=](const auto& x) { return ad::std(x[0], axes, correction, keep); }),
                     n > 1});
    for (double p : {2.0, 1.0, 3.0, HUGE_VAL}) {
      std::ostringstream nargs;
      nargs << R"({"p": )" << (std::isinf(p) ? std::string("\"inf\"") : std::to_string(p))
            << R"(, "axes": )" << json_list(axes) << R"(, "keepdims": )" << json_bool(keep) << "}";
      cases.push_back({"norm p=" + std::to_string(p) + " " + ad::shape_str(s),
                       "norm",
                       nargs.str(),
                       {d.away_from_zero(s)},
                       fn([=](const auto& x) { return ad::norm(x[0], p, axes, keep); })});
    }
    if (s.empty()) continue;
    const long axis = long(d.index(s.size())) - (d.chance(0.5) ? long(s.size()) : 0);
    const bool reverse = d.chance(0.5);
    cases.push_back(
        {"cumsum " + ad::shape_str(s),
         "cumsum",
         R"({"axis": )" + std::to_string(axis) + R"(, "reverse": )" + json_bool(reverse) + "}",
         {x},
         fn([=](const auto& x) { return ad::cumsum(x[0], axis, reverse); })});
    for (const char* op : {"argmax", "argmin"}) {
      const bool smallest = op[3] == 'm' && op[4] == 'i';
      Array<double> v = d.values(s, -2, 2);
      if (i % 3 == 0) std::fill(v.begin(), v.end(), 0.5);  // ties: the first one
      cases.push_back(
          {std::string(op) + " " + ad::shape_str(s),
           op,
           R"({"axis": )" + std::to_string(axis) + R"(, "keepdims": )" + json_bool(keep) + "}",
           {v},
           fn([=](const auto& x) {
             using V = std::decay_t<decltype(x[0])>;
             const ad::Index at =
                 smallest ? ad::argmin(x[0], axis, keep) : ad::argmax(x[0], axis, keep);
             Array<typename V::value_type> out =
                 Array<typename V::value_type>::from_shape(at.values().shape());
             std::copy(at.values().begin(), at.values().end(), out.begin());
             return V(std::move(out));
           }),
           false});
    }
  }
  for (std::size_t i = first; i < cases.size(); ++i) cases[i].second_order = true;
}

/// The ops of sequence models (gelu, layer_norm, scaled_dot_product_attention, lstm), each also
/// checked to second order.
void sequence_cases(std::vector<Case>& cases, Draw& d) {
  const std::size_t first = cases.size();
  for (int i = 0; i < 8; ++i) {
    const Shape s = d.shape(1, 4);
    const std::size_t axes = 1 + d.index(std::min<std::size_t>(2, s.size()));
    const Shape normalised(s.end() - long(axes), s.end());
    const bool affine = i % 4 != 0, shift = i % 3 != 0;
    // (a tiny eps on rows of fewer than 4 values makes the gradient pure cancellation, beyond
    // float's reach: the checker's float pass would rightly fail it)
    const double eps = i % 2 && ad::shape_size(normalised) >= 4 ? 1e-5 : 0.1;
    std::vector<Array<double>> inputs{d.values(s, -2, 2)};
    if (affine) inputs.push_back(d.values(normalised, 0.5, 1.5));
    if (shift) inputs.push_back(d.values(normalised, -1, 1));
    std::ostringstream args;
    args << R"({"axes": )" << axes << R"(, "eps": )" << eps << R"(, "affine": )"
         << json_bool(affine) << R"(, "shift": )" << json_bool(shift) << "}";
    cases.push_back(
        {"layer_norm " + ad::shape_str(s), "layer_norm", args.str(), inputs, fn([=](const auto& x) {
           using V = std::decay_t<decltype(x[0])>;
           return ad::layer_norm(x[0], axes, affine ? x[1] : V(), shift ? x.back() : V(), eps);
         })});
  }
  for (int i = 0; i < 12; ++i) {
    const Shape lead = d.shape(0, 2);
    const std::size_t heads = 1 + d.index(2), lq = 1 + d.index(5), lk = 1 + d.index(5);
    const std::size_t width = 1 + d.index(3), vwidth = 1 + d.index(3);
    auto with = [&](std::size_t length, std::size_t w) {
      Shape s = lead;
      s.push_back(length);
      s.push_back(heads * w);
      return s;
    };
    ad::AttentionOptions o;
    o.causal = i % 3 == 1;
    o.heads = heads;
    o.scale = i % 4 == 3 ? 0.7 : 0.0;
    std::vector<Array<double>> inputs{d.values(with(lq, width)), d.values(with(lk, width)),
                                      d.values(with(lk, vwidth))};
    std::string mask;
    if (i % 3 == 2) {  // an additive mask that broadcasts to the scores
      Shape scores = lead;
      if (heads > 1) scores.push_back(heads);
      scores.push_back(lq);
      scores.push_back(lk);
      // Its key axis is kept: a mask constant along a row shifts the softmax by nothing, its
      // gradient is exactly 0 and float's rounding of a sum of zero is all the float pass sees.
      Shape m = d.broadcast_from(scores);
      if (m.empty()) m.push_back(lk);
      m.back() = lk;
      inputs.push_back(d.values(m, -2, 1));
      mask = " mask " + ad::shape_str(inputs.back().shape());
    }
    std::ostringstream args;
    args << R"({"causal": )" << json_bool(o.causal) << R"(, "scale": )" << o.scale
         << R"(, "heads": )" << heads << "}";
    cases.push_back(
        {"scaled_dot_product_attention q " + ad::shape_str(inputs[0].shape()) + " k " +
             ad::shape_str(inputs[1].shape()) + " v " + ad::shape_str(inputs[2].shape()) + mask,
         "scaled_dot_product_attention", args.str(), inputs, fn([=](const auto& x) {
           using V = std::decay_t<decltype(x[0])>;
           return ad::scaled_dot_product_attention(x[0], x[1], x[2], o, x.size() > 3 ? x[3] : V());
         })});
  }
  for (int i = 0; i < 6; ++i) {  // hidden sizes across the SIMD width, for the rows' ends
    const std::size_t n = 1 + d.index(3), length = d.index(4), in = 1 + d.index(3),
                      h = 1 + d.index(10);
    const bool biased = i % 3 != 0;
    std::vector<Array<double>> inputs{d.values({n, length, in}), d.values({4 * h, in}),
                                      d.values({4 * h, h})};
    if (biased) {
      inputs.push_back(d.values({4 * h}));
      inputs.push_back(d.values({4 * h}));
    }
    inputs.push_back(d.values({n, h}));
    inputs.push_back(d.values({n, h}));
    cases.push_back({"lstm x " + ad::shape_str(inputs[0].shape()) + " H=" + std::to_string(h),
                     "lstm", R"({"biased": )" + json_bool(biased) + "}", inputs,
                     fn([=](const auto& x) {
                       using V = std::decay_t<decltype(x[0])>;
                       if (biased) return ad::lstm(x[0], x[1], x[2], x[3], x[4], x[5], x[6]);
                       return ad::lstm(x[0], x[1], x[2], V(), V(), x[3], x[4]);
                     })});
  }
  for (std::size_t i = first; i < cases.size(); ++i) cases[i].second_order = true;
}

/// The same ops with a NaN in the first input: the output must hold NaN exactly where NumPy's
/// does (NaN propagates through every op as IEEE arithmetic says).
void nan_cases(std::vector<Case>& cases, const std::vector<Case>& all) {
  for (const auto& c : all) {
    if (c.inputs[0].size() == 0 || c.op == "where") continue;  // (where's input 0: its mask)
    Case n = c;
    n.label = "NaN: " + c.label;
    n.inputs[0].data()[n.inputs[0].size() / 2] = std::numeric_limits<double>::quiet_NaN();
    n.gradcheck = false;
    cases.push_back(std::move(n));
  }
}

std::vector<Case> all_cases() {
  Draw d(2026);
  std::vector<Case> cases;
  elementwise_cases(cases, d);
  reduction_cases(cases, d);
  product_cases(cases, d);
  conv_cases(cases, d);
  shape_cases(cases, d);
  second_round_cases(cases, d);
  sequence_cases(cases, d);
  std::vector<Case> nans;
  nan_cases(nans, cases);
  cases.insert(cases.end(), nans.begin(), nans.end());
  return cases;
}

/// Runs numpy_ops.py once over every case; returns the reference outputs.
std::vector<Array<double>> numpy_references(const std::vector<Case>& cases) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(AD_BINARY_DIR) / "tests" / "numpy_ops";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const fs::path manifest = dir / "manifest.jsonl";
  {
    std::ofstream out(manifest);
    for (std::size_t i = 0; i < cases.size(); ++i) {
      std::string inputs;
      for (std::size_t j = 0; j < cases[i].inputs.size(); ++j) {
        const fs::path p = dir / (std::to_string(i) + "_" + std::to_string(j) + ".npy");
        xt::dump_npy(p.string(), cases[i].inputs[j]);
        inputs += (j ? ", \"" : "\"") + p.string() + "\"";
      }
      out << R"({"op": ")" << cases[i].op << R"(", "inputs": [)" << inputs << R"(], "args": )"
          << cases[i].args << R"(, "out": ")" << (dir / (std::to_string(i) + "_out.npy")).string()
          << "\"}\n";
    }
  }
  const std::string command = "/usr/bin/python3 " + std::string(AD_SOURCE_DIR) +
                              "/tests/autodiff/numpy_ops.py " + manifest.string();
  BOOST_REQUIRE_MESSAGE(std::system(command.c_str()) == 0, "failed: " << command);
  std::vector<Array<double>> refs;
  for (std::size_t i = 0; i < cases.size(); ++i)
    refs.push_back(xt::load_npy<double>((dir / (std::to_string(i) + "_out.npy")).string()));
  return refs;
}

/// Whether `got` matches the reference: same shape, NaN where it is NaN, infinities equal, and
/// |got - ref| <= tol · (|ref| + scale) elsewhere (scale: the largest finite |ref|, at least 1).
template <class T>
bool matches(const Array<T>& got, const Array<double>& ref, double tol, std::string& why) {
  Shape gs(got.shape().begin(), got.shape().end()), rs(ref.shape().begin(), ref.shape().end());
  if (gs != rs) {
    why = "shape " + ad::shape_str(gs) + ", NumPy " + ad::shape_str(rs);
    return false;
  }
  double scale = 1;
  for (double r : ref)
    if (std::isfinite(r)) scale = std::max(scale, std::abs(r));
  for (std::size_t i = 0; i < ref.size(); ++i) {
    const double g = static_cast<double>(got.data()[i]), r = ref.data()[i];
    const bool ok = std::isnan(r)   ? std::isnan(g)
                    : std::isinf(r) ? g == r
                                    : std::abs(g - r) <= tol * (std::abs(r) + scale);
    if (!ok) {
      std::ostringstream os;
      os << "flat index " << i << ": " << g << ", NumPy " << r;
      why = os.str();
      return false;
    }
  }
  return true;
}

template <class T>
std::vector<ad::Variable<T>> leaves(const Case& c) {
  std::vector<ad::Variable<T>> xs;
  for (const auto& a : c.inputs) xs.emplace_back(Array<T>(a), true);
  return xs;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(ops)

BOOST_AUTO_TEST_CASE(every_op_against_numpy_and_the_central_difference) {
  const std::vector<Case> cases = all_cases();
  const std::vector<Array<double>> refs = numpy_references(cases);
  std::size_t checked = 0;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    BOOST_TEST_CONTEXT("case " << i << ": " << c.label << " " << c.args) {
      std::string why;
      // Forward values, in double and in float.
      BOOST_TEST(matches(c.f(leaves<double>(c)).value(), refs[i], 1e-10, why), "double: " << why);
      BOOST_TEST(matches(c.f(leaves<float>(c)).value(), refs[i], 2e-5, why), "float: " << why);
      // Gradients: double against the central difference, float against double.
      if (c.gradcheck && !has_empty(c.inputs) && refs[i].size() > 0) {
        ad::GradcheckOptions o;
        o.max_rows = 64;
        o.second_order = c.second_order;
        BOOST_TEST(ad::testing::passed(ad::gradcheck(c.f, leaves<float>(c), o)));
        ++checked;
      }
    }
  }
  BOOST_TEST(checked > 150u);
}

BOOST_AUTO_TEST_CASE(every_elementwise_op_under_check_op) {
  // Gradients (float64 against the central difference, the float path against float64), one
  // Variable for both operands, NaN propagation, and 1 against 2 threads, on drawn cases that
  // broadcast (0-d and empty ones among them), a failure shrunk to a minimal case.
  ad::CheckOpOptions o;
  o.cases = 40;
  o.gradcheck.max_rows = 64;
  for (const auto& e : elementwise_ops()) {
    o.second_order = e.second_order;
    const ad::CheckOpReport r = ad::check_op(e.f, e.specs, o);
    BOOST_TEST(r.passed, e.op << " " << e.args << ":\n" << r);
  }
}

BOOST_AUTO_TEST_SUITE_END()
