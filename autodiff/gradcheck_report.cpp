// The printed form of a GradcheckReport.
#include <iomanip>
#include <ostream>
#include <sstream>

#include "autodiff/gradcheck.hpp"

namespace ad {

namespace {

std::string index_str(const Shape& idx) {
  std::string s = "[";
  for (std::size_t i = 0; i < idx.size(); ++i) s += (i ? "," : "") + std::to_string(idx[i]);
  return s + "]";
}

/// "d out[i] / d in[j]", or the projected or directional forms.
std::string entry_str(const GradcheckReport& r, const Shape& out, const Shape& in) {
  if (r.options.fast) return "along a random direction";
  if (r.projected) return "d (projected output) / d in" + index_str(in);
  return "d out" + index_str(out) + " / d in" + index_str(in);
}

void print_float(std::ostream& os, const GradcheckReport& r, const InputCheck& c,
                 const std::string& indent) {
  const FloatCheck& f = c.float32;
  if (!f.checked) return;
  os << indent << "    float32 path: " << (f.passed ? "passed" : "FAILED") << ", " << f.compared
     << " entries compared";
  if (f.failures) os << ", " << f.failures << " out of tolerance";
  os << std::setprecision(3) << ", max |float32 - float64 analytic| " << f.max_error_vs_analytic
     << ", max |float32 - float64 numeric| " << f.max_error_vs_numeric << "\n";
  if (f.has_worst && !f.passed)
    os << indent << "      worst: " << entry_str(r, f.worst_output, f.worst_input)
       << std::setprecision(10) << ": float32 " << f.value << ", float64 analytic " << f.analytic
       << ", float64 numeric " << f.numeric << std::setprecision(3) << ", tolerance " << f.tolerance
       << "\n";
}

/// The program's lines from `first` to `last` (numbers of ops), the failing one marked.
void print_program_lines(std::ostream& os, const Localisation& l, std::size_t first,
                         std::size_t last, const std::string& indent) {
  std::istringstream lines(l.program);
  std::string line;
  for (std::size_t n = 0; std::getline(lines, line) && n <= last; ++n)
    if (n >= first) os << indent << (n == l.failure.node ? "  > " : "    ") << line << "\n";
}

void print_localisation(std::ostream& os, const Localisation& l, const std::string& indent) {
  if (!l.ran) return;
  os << indent << "  localisation: " << l.checked << " of " << l.nodes
     << " ops checked: " << l.sampling << "\n";
  if (l.kinks)
    os << indent << "    " << l.kinks
       << " op inputs not judged: at a kink along both directions tried\n";
  if (l.unchecked_inputs)
    os << indent << "    " << l.unchecked_inputs
       << " op inputs not checked: leaves made inside the function, which a run cannot probe\n";
  if (l.found) {
    const NodeFailure& f = l.failure;
    os << indent << "    op %" << f.node << " `" << f.op << "`";
    if (!f.attributes.empty()) os << " (" << f.attributes << ")";
    if (!f.module.empty()) os << " in `" << f.module << "`";
    os << ", inputs ";
    for (std::size_t i = 0; i < f.input_shapes.size(); ++i)
      os << (i ? " x " : "") << shape_str(f.input_shapes[i]);
    const bool output = f.float32 && f.input == f.input_shapes.size();
    if (!output) os << ": input " << f.input;
    for (std::size_t i : f.same_as) os << " (and input " << i << ", the same Variable)";
    os << std::setprecision(10);
    if (output)
      os << ": its output: float32 " << f.analytic << ", float64 " << f.numeric;
    else if (f.float32)
      os << ": float32 rule " << f.analytic << ", float64 rule " << f.numeric;
    else
      os << ": analytic " << f.analytic << ", numeric " << f.numeric;
    os << std::setprecision(3) << ", |difference| " << f.max_abs_error << ", tolerance "
       << f.tolerance << "\n";
    if (!l.program.empty()) {
      os << indent << "    where it is in the program (Localisation::program):\n";
      print_program_lines(os, l, f.node >= 3 ? f.node - 3 : 0, f.node, indent + "    ");
    }
  }
  os << indent << "    " << l.verdict << "\n";
}

void print(std::ostream& os, const GradcheckReport& r, const std::string& indent) {
  const auto& o = r.options;
  std::size_t checked = 0, compared = 0;
  for (const auto& c : r.inputs) {
    checked += c.checked;
    compared += c.compared;
  }
  os << indent << "gradcheck " << (r.passed ? "PASSED" : "FAILED") << ": " << checked << " of "
     << r.inputs.size() << " inputs checked, " << compared
     << " entries compared in float64 against central differences (eps " << o.eps
     << ", pass when |analytic - numeric| <= " << o.atol << " + " << o.rtol << " * |numeric|)\n";
  if (r.float32_checked)
    os << indent << "  float32 inputs: float64 is the reference; the function run in float32 is "
       << "compared with it (pass when |float32 - float64| <= " << o.float_atol << " * scale + "
       << o.float_rtol << " * |float64|); output: max error " << std::setprecision(3)
       << r.float32_output_error << " (tolerance " << r.float32_output_tolerance << " + rtol)\n";
  if (!r.mode.empty()) os << indent << "  mode: " << r.mode << "\n";
  for (const auto& c : r.inputs) {
    os << indent << "  input " << c.input << (c.name.empty() ? "" : " '" + c.name + "'") << " "
       << shape_str(c.shape) << ": ";
    if (!c.checked) {
      os << "not checked (does not require grad)\n";
      continue;
    }
    os << (c.passed ? "passed" : "FAILED") << ", " << c.compared << " entries compared";
    if (c.failures) os << ", " << c.failures << " out of tolerance";
    os << std::setprecision(3) << ", max abs error " << c.max_abs_error << ", max rel error "
       << c.max_rel_error << "\n";
    if (c.has_worst) {
      os << indent << "    worst: " << entry_str(r, c.worst_output, c.worst_input)
         << std::setprecision(10) << ": analytic " << c.analytic << ", numeric " << c.numeric
         << std::setprecision(3) << ", |difference| " << std::abs(c.analytic - c.numeric)
         << ", tolerance " << c.tolerance << "\n";
      if (c.worst_at_kink)
        os << indent << std::setprecision(10)
           << "    it is at a kink, and the analytic value is not between the one-sided slopes "
           << c.left_slope << " (left) and " << c.right_slope << " (right)\n";
    }
    if (c.kinks)
      os << indent << "    " << c.kinks << " entries skipped at kinks, first at in"
         << index_str(c.first_kink) << "\n";
    print_float(os, r, c, indent);
  }
  if (r.backward_checked)
    os << indent << std::setprecision(3) << "  backward accumulates into .grad: max |g2 - 2 g1| "
       << r.accumulation_error << "; two runs agree: max |g1 - g1'| " << r.repeat_error << "\n";
  for (const auto& n : r.notes) os << indent << "  note: " << n << "\n";
  for (const auto& p : r.problems) os << indent << "  problem: " << p << "\n";
  print_localisation(os, r.localisation, indent);
  if (r.second_order) {
    os << indent << "  second order (the gradient of the gradient, in float64):\n";
    print(os, *r.second_order, indent + "    ");
  }
}

}  // namespace

std::ostream& operator<<(std::ostream& os, const GradcheckReport& report) {
  print(os, report, "");
  return os;
}

std::string GradcheckReport::str() const {
  std::ostringstream os;
  os << *this;
  return os.str();
}

}  // namespace ad
