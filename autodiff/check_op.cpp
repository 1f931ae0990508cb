#include "autodiff/check_op.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iomanip>
#include <random>
#include <sstream>

#include "autodiff/checking.hpp"
#include "autodiff/ops.hpp"
#include "autodiff/threads.hpp"

namespace ad {
namespace detail {

namespace {

using V = Variable<double>;

/// One case: every input's values (representable in float when the case runs in float).
struct Case {
  std::vector<Array<double>> x;
  bool f32 = false;
};

/// A property that failed on a case.
struct Failure {
  std::string property;
  std::string detail;
  std::vector<std::size_t> same;
  std::size_t nan_input = 0;
};

std::size_t elements(const Case& c) {
  std::size_t n = 0;
  for (const auto& a : c.x) n += a.size();
  return n;
}

bool has_empty(const Case& c) {
  for (const auto& a : c.x)
    if (a.size() == 0) return true;
  return false;
}

/// Significant digits needed to write v exactly (in float when f32), the measure of how simple a
/// value is.
int digits(double v, bool f32) {
  for (int p = 1; p < 17; ++p) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*g", p, v);
    const double back = std::strtod(buf, nullptr);
    if (f32 ? static_cast<float>(back) == static_cast<float>(v) : back == v) return p;
  }
  return 17;
}

/// v written as C++ (exactly, with as few digits as that takes).
std::string literal(double v, bool f32) {
  if (std::isnan(v)) return "NAN";
  if (std::isinf(v)) return v > 0 ? "INFINITY" : "-INFINITY";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*g", digits(v, f32), v);
  std::string s = buf;
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return f32 ? s + "f" : s;
}

/// The values of `a` as a nested initializer list.
void nested(std::ostream& os, const Array<double>& a, std::size_t axis, std::size_t& at, bool f32) {
  os << "{";
  for (std::size_t i = 0; i < a.shape()[axis]; ++i) {
    if (i) os << ", ";
    if (axis + 1 == a.dimension())
      os << literal(a.data()[at++], f32);
    else
      nested(os, a, axis + 1, at, f32);
  }
  os << "}";
}

/// `a` as a C++ expression of type Array<T>.
std::string array_literal(const Array<double>& a, bool f32) {
  const std::string type = f32 ? "ad::Array<float>" : "ad::Array<double>";
  std::ostringstream os;
  if (a.dimension() == 0) {
    os << type << "(" << literal(a(), f32) << ")";
  } else if (a.size() == 0) {
    os << type << "::from_shape({";
    for (std::size_t d = 0; d < a.dimension(); ++d) os << (d ? ", " : "") << a.shape()[d];
    os << "})";
  } else {
    std::size_t at = 0;
    os << type;
    nested(os, a, 0, at, f32);
  }
  return os.str();
}

/// Entries start..start+n of `a` along `axis`; with `remove`, entry `start` without the axis.
Array<double> part(const Array<double>& a, std::size_t axis, std::size_t start, std::size_t n,
                   bool remove) {
  Shape s = a.shape();
  if (remove)
    s.erase(s.begin() + static_cast<std::ptrdiff_t>(axis));
  else
    s[axis] = n;
  Array<double> out = Array<double>::from_shape(s);
  std::size_t outer = 1, inner = 1;
  for (std::size_t d = 0; d < axis; ++d) outer *= a.shape()[d];
  for (std::size_t d = axis + 1; d < a.dimension(); ++d) inner *= a.shape()[d];
  const std::size_t keep = remove ? 1 : n, extent = a.shape()[axis];
  for (std::size_t o = 0; o < outer; ++o)
    for (std::size_t k = 0; k < keep; ++k)
      std::copy_n(a.data() + (o * extent + start + k) * inner, inner,
                  out.data() + (o * keep + k) * inner);
  return out;
}

/// The windows (start, length) of an axis of `extent` that shrinking tries: every single entry,
/// and the first and the last half and all but one.
std::vector<std::pair<std::size_t, std::size_t>> windows(std::size_t extent) {
  std::vector<std::pair<std::size_t, std::size_t>> out;
  for (std::size_t i = 0; i < extent; ++i) out.emplace_back(i, 1);
  for (std::size_t n : {extent / 2, extent - 1})
    if (n > 1 && n < extent)
      for (std::size_t start : {std::size_t(0), extent - n})
        if (std::find(out.begin(), out.end(), std::make_pair(start, n)) == out.end())
          out.emplace_back(start, n);
  return out;
}

class OpChecker {
 public:
  OpChecker(const CheckedFunction& f64, const FloatFunction& f32,
            const std::vector<InputSpec>& specs, const CheckOpOptions& o)
      : f64_(f64), f32_(f32), specs_(specs), o_(o), rng_(o.seed) {
    for (const auto& s : specs_) {
      if (!(s.lo <= s.hi)) fail("check_op: an input's domain [", s.lo, ", ", s.hi, "] is empty");
      if (!(s.margin >= 0)) fail("check_op: a margin must be non-negative, got ", s.margin);
    }
    if (specs_.empty()) fail("check_op: no input specs");
  }

  CheckOpReport run() {
    CheckOpReport report;
    for (std::size_t i = 0; i < o_.cases; ++i) {
      Case c = draw(o_.float32 && i % 2 == 1);
      ++report.cases;
      std::optional<Failure> failure = check(c, "");
      if (!failure) continue;
      report.original_elements = elements(c);
      shrink(c, *failure, report.shrink_steps);
      fill(report, c, *failure);
      return report;
    }
    if (o_.threads) {
      Case big = draw(false, true);
      if (std::optional<Failure> failure = check_threads(big)) {
        report.original_elements = elements(big);
        fill(report, big, *failure);
      }
    }
    return report;
  }

 private:
  // ----- drawing

  double uniform(double lo, double hi) {
    return std::uniform_real_distribution<double>(lo, hi)(rng_);
  }
  std::size_t below(std::size_t n) {
    return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng_);
  }
  bool chance(double p) { return uniform(0, 1) < p; }

  bool valid(const InputSpec& s, double v) const {
    if (!(v >= s.lo && v <= s.hi)) return false;
    for (double k : s.kinks)
      if (std::abs(v - k) < s.margin) return false;
    return true;
  }

  double value(const InputSpec& s, bool f32) {
    for (int attempt = 0; attempt < 100; ++attempt) {
      const int mode = static_cast<int>(below(s.kinks.empty() ? 4 : 5));
      double v;
      if (mode == 0) {
        v = uniform(s.lo, s.hi);
      } else if (mode == 1) {  // near zero
        v = (chance(0.5) ? 1 : -1) * std::pow(10.0, uniform(-3, -0.5));
      } else if (mode == 2) {  // near the ends of the domain
        const double w = 0.05 * (s.hi - s.lo);
        v = chance(0.5) ? s.lo + uniform(0, w) : s.hi - uniform(0, w);
      } else if (mode == 3) {  // a simple number
        v = std::round(uniform(s.lo, s.hi) * 2) / 2;
      } else {  // near a kink, not on it
        v = s.kinks[below(s.kinks.size())] + (chance(0.5) ? 1 : -1) * s.margin * uniform(1.5, 10);
      }
      if (f32) v = static_cast<float>(v);
      if (valid(s, v)) return v;
    }
    fail("check_op: no value of [", s.lo, ", ", s.hi, "] keeps the margin ", s.margin,
         " from the kinks");
  }

  /// A case: one drawn full shape, each input's shape broadcasting to it (or fixed by its
  /// spec); `big` makes the full shape about 100,000 elements (the threads check).
  Case draw(bool f32, bool big = false) {
    Shape full(big ? 3 : below(o_.max_rank + 1));
    for (auto& d : full) d = o_.empty && !big && chance(0.08) ? 0 : 1 + below(o_.max_extent);
    if (big) full = {2, 160, 320};
    Case c;
    c.f32 = f32;
    for (const auto& s : specs_) {
      Shape shape = full;
      if (s.shape) {
        shape = *s.shape;
      } else if (o_.broadcast && !big) {
        shape.erase(shape.begin(),
                    shape.begin() + static_cast<std::ptrdiff_t>(below(full.size() + 1)));
        for (auto& d : shape)
          if (chance(0.25)) d = 1;
      }
      Array<double> a = Array<double>::from_shape(shape);
      for (auto& v : a) v = value(s, f32);
      c.x.push_back(std::move(a));
    }
    return c;
  }

  // ----- properties

  template <class T>
  std::vector<Variable<T>> leaves(const Case& c) const {
    std::vector<Variable<T>> xs;
    for (std::size_t i = 0; i < c.x.size(); ++i)
      xs.emplace_back(Array<T>(c.x[i]), specs_[i].requires_grad);
    return xs;
  }

  /// f's output in double without recording, or the exception it threw.
  std::optional<Array<double>> output(const Case& c, Failure& error) const {
    NoGradGuard no_grad;
    try {
      return f64_(leaves<double>(c)).value();
    } catch (const std::exception& e) {
      error = {"exception", e.what(), {}, 0};
      return std::nullopt;
    }
  }

  /// The first property that fails on c (only `only`, when given).
  std::optional<Failure> check(const Case& c, const std::string& only) {
    Failure error;
    std::optional<Array<double>> out = output(c, error);
    if (!out) return error;
    if (only == "exception") return std::nullopt;
    const bool gradients = out->size() > 0 && !has_empty(c);
    if (gradients && (only.empty() || is_gradient_property(only)))
      if (auto f = check_gradient(c)) return f;
    if (gradients && o_.repeated && (only.empty() || only == "repeated input"))
      if (auto f = check_repeated(c)) return f;
    if (o_.nan && (only.empty() || only == "NaN propagation"))
      if (auto f = check_nan(c, *out)) return f;
    return std::nullopt;
  }

  static bool is_gradient_property(const std::string& p) {
    return p == "gradient" || p == "float32" || p == "second order" || p == "backward";
  }

  GradcheckOptions gradcheck_options() const {
    GradcheckOptions g = o_.gradcheck;
    g.max_rows = std::min<std::size_t>(g.max_rows, 64);
    g.localise = g.localise_on_failure = false;
    g.second_order = o_.second_order;
    return g;
  }

  std::optional<Failure> check_gradient(const Case& c) {
    bool any = false;
    for (const auto& s : specs_) any = any || s.requires_grad;
    if (!any) return std::nullopt;
    const std::vector<V> xs = leaves<double>(c);
    const std::vector<Variable<float>> xf = leaves<float>(c);
    GradcheckReport r;
    try {
      r = run_gradcheck(f64_, xs, gradcheck_options(), {}, c.f32 ? &f32_ : nullptr,
                        c.f32 ? &xf : nullptr);
    } catch (const std::exception& e) {
      return Failure{"exception", e.what(), {}, 0};
    }
    if (r.passed) return std::nullopt;
    std::string property = "backward";
    bool f64_failed = false, f32_failed = false;
    for (const auto& in : r.inputs) {
      f64_failed = f64_failed || !in.passed;
      f32_failed = f32_failed || !in.float32.passed;
    }
    for (const auto& p : r.problems)
      if (p.find("float32") != std::string::npos) f32_failed = true;
    bool only_kinks = !f64_failed && !f32_failed && !(r.second_order && !r.second_order->passed);
    for (const auto& p : r.problems)
      only_kinks = only_kinks && p.find("every entry is at a kink") != std::string::npos;
    if (only_kinks) return std::nullopt;  // a case at a kink of two inputs (maximum's tie)
    if (f64_failed)
      property = "gradient";
    else if (f32_failed)
      property = "float32";
    else if (r.second_order && !r.second_order->passed)
      property = "second order";
    return Failure{property, r.str(), {}, 0};
  }

  /// The same Variable for two inputs of one shape.
  std::optional<Failure> check_repeated(const Case& c) {
    for (std::size_t i = 0; i < c.x.size(); ++i)
      for (std::size_t j = i + 1; j < c.x.size(); ++j) {
        if (!specs_[i].requires_grad || !specs_[j].requires_grad) continue;
        if (c.x[i].shape() != c.x[j].shape()) continue;
        std::vector<V> xs = leaves<double>(c);
        xs.erase(xs.begin() + static_cast<std::ptrdiff_t>(j));
        const CheckedFunction& f = f64_;
        CheckedFunction g = [&f, i, j](const std::vector<V>& args) {
          std::vector<V> all = args;
          all.insert(all.begin() + static_cast<std::ptrdiff_t>(j), args[i]);
          return f(all);
        };
        GradcheckOptions go = gradcheck_options();
        go.second_order = false;
        GradcheckReport r;
        try {
          r = run_gradcheck(g, xs, go);
        } catch (const std::exception& e) {
          return Failure{"repeated input", e.what(), {i, j}, 0};
        }
        if (!r.passed) return Failure{"repeated input", r.str(), {i, j}, 0};
        return std::nullopt;
      }
    return std::nullopt;
  }

  /// A NaN at element 0 of an input the output depends on there gives a NaN in the output.
  std::optional<Failure> check_nan(const Case& c, const Array<double>& out) {
    if (out.size() == 0) return std::nullopt;
    for (std::size_t i = 0; i < c.x.size(); ++i) {
      if (c.x[i].size() == 0) continue;
      Case moved = c;
      moved.x[i].data()[0] += 1;
      Failure error;
      std::optional<Array<double>> changed = output(moved, error);
      if (!changed || same_bits(*changed, out))
        continue;  // the output does not depend on that element
      Case poisoned = c;
      poisoned.x[i].data()[0] = std::nan("");
      std::optional<Array<double>> y = output(poisoned, error);
      if (!y) return Failure{"NaN propagation", "f threw on a NaN input: " + error.detail, {}, i};
      bool any = false;
      for (double v : *y) any = any || std::isnan(v);
      if (!any)
        return Failure{"NaN propagation",
                       "element 0 of input " + std::to_string(i) +
                           " is NaN and the output depends on it, but the output holds no NaN",
                       {},
                       i};
    }
    return std::nullopt;
  }

  /// Forward and backward of the big case on 1 and 2 threads: the same bits.
  std::optional<Failure> check_threads(const Case& c) {
    const int before = num_threads();
    auto run = [&](int threads) {
      set_num_threads(threads);
      std::vector<V> xs = leaves<double>(c);
      V y = f64_(xs);
      std::vector<Array<double>> out{y.value()};
      if (y.requires_grad()) {
        std::vector<V> wrt;
        for (std::size_t i = 0; i < xs.size(); ++i)
          if (specs_[i].requires_grad) wrt.push_back(xs[i]);
        for (const V& g : grad(y, wrt, V(Array<double>(y.shape(), 1.0)))) out.push_back(g.value());
      }
      return out;
    };
    std::vector<Array<double>> one, two;
    try {
      one = run(1);
      two = run(2);
    } catch (const std::exception& e) {
      set_num_threads(before);
      return Failure{"exception", e.what(), {}, 0};
    }
    set_num_threads(before);
    for (std::size_t k = 0; k < one.size(); ++k)
      if (!same_bits(one[k], two[k]))
        return Failure{
            "threads",
            k == 0 ? "the output differs between 1 and 2 threads"
                   : "gradient " + std::to_string(k - 1) + " differs between 1 and 2 threads",
            {},
            0};
    return std::nullopt;
  }

  // ----- shrinking

  /// Simpler cases than c, the most reducing first: fewer axes, smaller extents, axes of 1,
  /// double instead of float, simpler values.
  std::vector<Case> candidates(const Case& c, const std::string& property) const {
    std::vector<Case> out;
    std::vector<std::size_t> drawn;
    std::size_t rank = 0;
    for (std::size_t i = 0; i < c.x.size(); ++i)
      if (!specs_[i].shape) {
        drawn.push_back(i);
        rank = std::max(rank, c.x[i].dimension());
      }
    // The leading axis of the full shape removed, one of its entries kept.
    if (rank > 0) {
      std::size_t extent = 1;
      for (std::size_t i : drawn)
        if (c.x[i].dimension() == rank) extent = std::max(extent, c.x[i].shape()[0]);
      for (std::size_t at = 0; at < extent; ++at) {
        Case s = c;
        for (std::size_t i : drawn)
          if (s.x[i].dimension() == rank)
            s.x[i] = part(s.x[i], 0, std::min(at, s.x[i].shape()[0] - 1), 1, true);
        out.push_back(s);
      }
    }
    // An axis of the full shape made shorter, in every input that has it longer than 1.
    for (std::size_t t = 0; t < rank; ++t) {
      std::size_t extent = 1;
      for (std::size_t i : drawn)
        if (c.x[i].dimension() > t)
          extent = std::max(extent, c.x[i].shape()[c.x[i].dimension() - 1 - t]);
      if (extent <= 1) continue;
      for (const auto& [start, n] : windows(extent)) {
        Case s = c;
        for (std::size_t i : drawn) {
          const std::size_t d = s.x[i].dimension();
          if (d > t && s.x[i].shape()[d - 1 - t] == extent)
            s.x[i] = part(s.x[i], d - 1 - t, start, n, false);
        }
        out.push_back(s);
      }
    }
    // One input's axis made 1 (it then broadcasts), or its leading axis of 1 removed.
    if (o_.broadcast)
      for (std::size_t i : drawn)
        for (std::size_t a = 0; a < c.x[i].dimension(); ++a) {
          if (c.x[i].shape()[a] > 1) {
            for (std::size_t at = 0; at < c.x[i].shape()[a]; ++at) {
              Case s = c;
              s.x[i] = part(c.x[i], a, at, 1, false);
              out.push_back(s);
            }
          } else if (a == 0) {
            Case s = c;
            s.x[i] = part(c.x[i], 0, 0, 1, true);
            out.push_back(s);
          }
        }
    if (c.f32 && property != "float32") {
      Case s = c;
      s.f32 = false;
      out.push_back(s);
    }
    // Simpler values, element by element.
    for (std::size_t i = 0; i < c.x.size(); ++i)
      for (std::size_t e = 0; e < c.x[i].size(); ++e) {
        const double v = c.x[i].data()[e];
        if (std::isnan(v)) continue;
        const int now = digits(v, c.f32);
        for (double w : {0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, std::trunc(v),
                         std::round(v * 10) / 10, std::round(v * 100) / 100}) {
          if (c.f32) w = static_cast<float>(w);
          if (w == v || !valid(specs_[i], w)) continue;
          const int simpler = digits(w, c.f32);
          if (simpler > now || (simpler == now && std::abs(w) >= std::abs(v))) continue;
          Case s = c;
          s.x[i].data()[e] = w;
          out.push_back(s);
        }
      }
    return out;
  }

  void shrink(Case& c, Failure& failure, std::size_t& steps) {
    bool improved = true;
    while (improved && steps < o_.max_shrink_steps) {
      improved = false;
      for (const Case& s : candidates(c, failure.property)) {
        std::optional<Failure> f = check(s, failure.property);
        if (!f || f->property != failure.property) continue;
        c = s;
        failure = *f;
        ++steps;
        improved = true;
        break;
      }
    }
  }

  // ----- the report

  std::string snippet(const Case& c, const Failure& f) const {
    std::ostringstream os;
    const std::string v = c.f32 ? "ad::Variable<float>" : "ad::Variable<double>";
    os << "// check_op: " << f.property << " fails on this case (f is the op checked)\n";
    for (std::size_t i = 0; i < c.x.size(); ++i)
      os << v << " x" << i << "(" << array_literal(c.x[i], c.f32) << ", "
         << (specs_[i].requires_grad ? "true" : "false") << ");\n";
    std::string args, leaves;
    for (std::size_t i = 0; i < c.x.size(); ++i) {
      args += (i ? ", x" : "x") + std::to_string(i);
      if (f.property == "repeated input" && i == f.same.at(1)) continue;
      leaves += (leaves.empty() ? "x" : ", x") + std::to_string(i);
    }
    if (f.property == "exception") {
      os << "f(" << args << ");  // throws: " << f.detail << "\n";
    } else if (f.property == "NaN propagation") {
      os << "x" << f.nan_input << ".mutable_value().data()[0] = NAN;\n"
         << "std::cout << f(" << args << ") << \"\\n\";  // no NaN in the output\n";
    } else if (f.property == "threads") {
      os << "// run at ad::set_num_threads(1) and (2): forward and backward differ\n";
    } else if (f.property == "repeated input") {
      std::string params, call;
      for (std::size_t i = 0; i < c.x.size(); ++i) {
        const std::size_t from = i == f.same[1] ? f.same[0] : i;
        call += (i ? ", x" : "x") + std::to_string(from);
        if (i != f.same[1])
          params += (params.empty() ? "const auto& x" : ", const auto& x") + std::to_string(i);
      }
      os << "std::cout << ad::gradcheck([&](" << params << ") { return f(" << call << "); }, {"
         << leaves << "}) << \"\\n\";\n";
    } else {
      if (o_.second_order) os << "ad::GradcheckOptions o;\no.second_order = true;\n";
      os << "std::cout << ad::gradcheck(f, {" << leaves << "}" << (o_.second_order ? ", o" : "")
         << ") << \"\\n\";\n";
    }
    return os.str();
  }

  void fill(CheckOpReport& r, const Case& c, const Failure& f) const {
    r.passed = false;
    r.property = f.property;
    r.inputs = c.x;
    r.float32 = c.f32;
    r.same = f.same;
    r.nan_input = f.nan_input;
    r.detail = f.detail;
    r.snippet = snippet(c, f);
  }

  const CheckedFunction& f64_;
  const FloatFunction& f32_;
  const std::vector<InputSpec>& specs_;
  const CheckOpOptions& o_;
  std::mt19937_64 rng_;
};

}  // namespace

CheckOpReport run_check_op(const CheckedFunction& f64, const FloatFunction& f32,
                           const std::vector<InputSpec>& specs, const CheckOpOptions& options) {
  return OpChecker(f64, f32, specs, options).run();
}

}  // namespace detail

std::ostream& operator<<(std::ostream& os, const CheckOpReport& r) {
  if (r.passed) {
    os << "check_op PASSED: " << r.cases << " cases\n";
    return os;
  }
  std::size_t now = 0;
  for (const auto& a : r.inputs) now += a.size();
  os << "check_op FAILED: " << r.property << " on case " << r.cases << " (" << r.original_elements
     << " elements), shrunk in " << r.shrink_steps << " steps to " << now << " elements"
     << (r.float32 ? ", in float" : "") << ":\n";
  for (std::size_t i = 0; i < r.inputs.size(); ++i) {
    os << "  input " << i << " " << shape_str(r.inputs[i].shape()) << ":";
    for (std::size_t e = 0; e < std::min<std::size_t>(r.inputs[i].size(), 16); ++e)
      os << " " << std::setprecision(9) << r.inputs[i].data()[e];
    if (r.inputs[i].size() > 16) os << " ...";
    os << "\n";
  }
  os << "reproduce:\n" << r.snippet << "what it said:\n" << r.detail;
  if (!r.detail.empty() && r.detail.back() != '\n') os << "\n";
  return os;
}

std::string CheckOpReport::str() const {
  std::ostringstream os;
  os << *this;
  return os.str();
}

}  // namespace ad
