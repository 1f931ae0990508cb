// ONNX's backend test suite (Debian's libonnx-testdata) run on ad::onnx::load: every test whose
// model, ops and types this library supports runs on its inputs, and its outputs are compared
// with the expected ones (ONNX's tolerances: rtol 1e-3, atol 1e-7). A test is "unsupported" when
// the model uses an op, an attribute value or a type this library does not run, which it says
// with an error; it is a failure when it runs and gives other numbers, or fails otherwise.
// Usage: onnx_conformance [DATA_DIR] [--markdown FILE] [--min-node N] [--min-pytorch N] [-v]
// Exits 1 on any failure, or when fewer tests pass than the minimums.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include <onnx/onnx_pb.h>

#include "interop/onnx.hpp"

namespace fs = std::filesystem;

namespace {

struct Result {
  std::string suite, test, status, detail;
  std::set<std::string> ops;
};

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

bool real_type(int t) {
  return t == onnx::TensorProto::FLOAT || t == onnx::TensorProto::DOUBLE;
}

/// Whether an element type can go through the library: float and double as Variables; integer
/// and bool types as whole numbers of T, exactly (int64 only within 2^53 for double).
bool supported_type(int t) {
  using P = onnx::TensorProto;
  return real_type(t) || t == P::INT64 || t == P::INT32 || t == P::INT16 || t == P::INT8 ||
         t == P::UINT8 || t == P::UINT16 || t == P::UINT32 || t == P::BOOL;
}

template <class T>
std::string compare(const ad::Array<T>& got, const ad::Array<T>& want, int type) {
  if (!std::equal(got.shape().begin(), got.shape().end(), want.shape().begin(), want.shape().end()))
    return "shape " + ad::shape_str(got.shape()) + " instead of " + ad::shape_str(want.shape());
  const bool exact = !real_type(type);
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double g = got.data()[i], w = want.data()[i];
    if (std::isnan(w) && std::isnan(g)) continue;
    if (exact ? g != w : !(std::abs(g - w) <= 1e-7 + 1e-3 * std::abs(w)) && !(g == w)) {
      std::ostringstream os;
      os << "entry " << i << " is " << g << ", expected " << w;
      return os.str();
    }
  }
  return "";
}

template <class T>
Result run_test(const fs::path& dir, const std::vector<std::string>& output_names) {
  Result r;
  auto model = ad::onnx::load<T>((dir / "model.onnx").string());
  if (!model->unsupported_ops().empty()) {
    r.status = "unsupported";
    for (const auto& op : model->unsupported_ops())
      r.detail += (r.detail.empty() ? "op " : ", ") + op;
    return r;
  }
  // The graph's real inputs are the first ones (the rest may be initializers in old models).
  const auto names = model->input_names();
  std::size_t sets = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (!entry.is_directory() || entry.path().filename().string().rfind("test_data_set_", 0) != 0)
      continue;
    ++sets;
    std::vector<ad::Variable<T>> inputs;
    for (std::size_t k = 0; k < names.size(); ++k) {
      const fs::path file = entry.path() / ("input_" + std::to_string(k) + ".pb");
      if (!fs::exists(file)) {
        r.status = "unsupported";
        r.detail = "optional inputs left out";
        return r;
      }
      inputs.emplace_back(ad::onnx::read_tensor<T>(file.string()).first);
    }
    std::vector<std::pair<std::string, std::pair<ad::Array<T>, int>>> expected;
    for (std::size_t k = 0; k < output_names.size(); ++k) {
      const fs::path file = entry.path() / ("output_" + std::to_string(k) + ".pb");
      if (!fs::exists(file)) continue;
      expected.emplace_back(output_names[k], ad::onnx::read_tensor<T>(file.string()));
    }
    std::vector<std::string> wanted;
    for (const auto& e : expected) wanted.push_back(e.first);
    std::map<std::string, ad::Variable<T>> got;
    got = model->run_all(inputs, wanted);
    for (const auto& [name, want] : expected) {
      const std::string why = compare(got.at(name).value(), want.first, want.second);
      if (!why.empty()) {
        r.status = "fail";
        r.detail = "output '" + name + "': " + why;
        return r;
      }
    }
  }
  r.status = sets ? "pass" : "unsupported";
  if (!sets) r.detail = "no test data";
  return r;
}

Result run_one(const fs::path& dir) {
  Result r;
  onnx::ModelProto proto;
  const std::string bytes = read_file(dir / "model.onnx");
  if (!proto.ParseFromString(bytes)) {
    r.status = "fail";
    r.detail = "the model could not be parsed";
    return r;
  }
  for (const auto& n : proto.graph().node()) r.ops.insert(n.op_type());
  std::vector<std::string> outputs;
  bool use_double = false;
  std::set<std::string> initializers;
  for (const auto& i : proto.graph().initializer()) initializers.insert(i.name());
  auto check_type = [&](const onnx::ValueInfoProto& v) {
    if (!v.type().has_tensor_type()) return std::string("a non-tensor input or output");
    const int t = v.type().tensor_type().elem_type();
    if (!supported_type(t))
      return "element type " +
             onnx::TensorProto::DataType_Name(static_cast<onnx::TensorProto::DataType>(t));
    if (t == onnx::TensorProto::DOUBLE) use_double = true;
    return std::string();
  };
  for (const auto& v : proto.graph().input()) {
    if (initializers.count(v.name())) continue;
    const std::string why = check_type(v);
    if (!why.empty()) return {"", "", "unsupported", why, r.ops};
  }
  for (const auto& v : proto.graph().output()) {
    const std::string why = check_type(v);
    if (!why.empty()) return {"", "", "unsupported", why, r.ops};
    outputs.push_back(v.name());
  }
  try {
    Result got = use_double ? run_test<double>(dir, outputs) : run_test<float>(dir, outputs);
    got.ops = r.ops;
    return got;
  } catch (const ad::Error& e) {
    const std::string what = e.what();
    const bool unsupported = what.find("not supported") != std::string::npos ||
                             what.find("does not read") != std::string::npos ||
                             what.find("does not run") != std::string::npos;
    return {"", "", unsupported ? "unsupported" : "fail", what, r.ops};
  } catch (const std::exception& e) {
    return {"", "", "fail", std::string("std::exception: ") + e.what(), r.ops};
  }
}

}  // namespace

int main(int argc, char** argv) {
  fs::path data = "/usr/share/libonnx-testdata/data";
  std::string markdown;
  int min_node = 0, min_pytorch = 0;
  bool verbose = false;
  for (int k = 1; k < argc; ++k) {
    const std::string a = argv[k];
    if (a == "--markdown" && k + 1 < argc) {
      markdown = argv[++k];
    } else if (a == "--min-node" && k + 1 < argc) {
      min_node = std::stoi(argv[++k]);
    } else if (a == "--min-pytorch" && k + 1 < argc) {
      min_pytorch = std::stoi(argv[++k]);
    } else if (a == "-v") {
      verbose = true;
    } else if (!a.empty() && a[0] != '-') {
      data = a;
    } else {
      std::cerr << "usage: onnx_conformance [DATA_DIR] [--markdown FILE] [--min-node N] "
                   "[--min-pytorch N] [-v]\n";
      return 2;
    }
  }
  if (!fs::is_directory(data)) {
    std::cerr << "onnx_conformance: no test data at " << data << " (Debian's libonnx-testdata)\n";
    return 1;
  }
  std::vector<Result> results;
  for (const char* suite : {"node", "pytorch-converted", "pytorch-operator", "simple"}) {
    if (!fs::is_directory(data / suite)) continue;
    std::vector<fs::path> dirs;
    for (const auto& e : fs::directory_iterator(data / suite))
      if (fs::exists(e.path() / "model.onnx")) dirs.push_back(e.path());
    std::sort(dirs.begin(), dirs.end());
    for (const auto& d : dirs) {
      Result r = run_one(d);
      r.suite = suite;
      r.test = d.filename().string();
      if (verbose || r.status == "fail")
        std::cout << r.status << "  " << suite << "/" << r.test << (r.detail.empty() ? "" : ": ")
                  << r.detail << "\n";
      results.push_back(std::move(r));
    }
  }
  std::map<std::string, std::map<std::string, int>> by_suite;
  std::map<std::string, std::map<std::string, int>> by_op;
  for (const auto& r : results) {
    ++by_suite[r.suite][r.status];
    if (r.suite == "node")
      for (const auto& op : r.ops) ++by_op[op][r.status];
  }
  int failures = 0;
  std::cout << "suite              pass  fail  unsupported\n";
  for (const auto& [suite, counts] : by_suite) {
    std::cout << suite << std::string(19 - std::min<std::size_t>(18, suite.size()), ' ')
              << (counts.count("pass") ? counts.at("pass") : 0) << "  "
              << (counts.count("fail") ? counts.at("fail") : 0) << "  "
              << (counts.count("unsupported") ? counts.at("unsupported") : 0) << "\n";
    failures += counts.count("fail") ? counts.at("fail") : 0;
  }
  auto passed = [&](const std::string& suite) {
    return by_suite.count(suite) && by_suite.at(suite).count("pass") ? by_suite.at(suite).at("pass")
                                                                     : 0;
  };
  if (!markdown.empty()) {
    std::ofstream md(markdown);
    md << "# ONNX conformance\n\n"
          "ONNX's backend test suite (Debian's `libonnx-testdata`, ONNX 1.12) run on "
          "`ad::onnx::load`, made by `scripts/onnx_conformance` (`tests/interop/"
          "onnx_conformance.cpp`). A test passes when every output matches the expected one "
          "(rtol 1e-3, atol 1e-7; integer outputs exactly); it is unsupported when the model "
          "uses an op, an attribute value or an element type that the library does not run, "
          "which it reports as an error naming it.\n\n"
          "| suite | pass | fail | unsupported |\n|---|---|---|---|\n";
    for (const auto& [suite, counts] : by_suite)
      md << "| " << suite << " | " << (counts.count("pass") ? counts.at("pass") : 0) << " | "
         << (counts.count("fail") ? counts.at("fail") : 0) << " | "
         << (counts.count("unsupported") ? counts.at("unsupported") : 0) << " |\n";
    md << "\n## Node tests by op\n\nA test counts for every op its model uses.\n\n"
          "| op | pass | fail | unsupported |\n|---|---|---|---|\n";
    for (const auto& [op, counts] : by_op)
      md << "| " << op << " | " << (counts.count("pass") ? counts.at("pass") : 0) << " | "
         << (counts.count("fail") ? counts.at("fail") : 0) << " | "
         << (counts.count("unsupported") ? counts.at("unsupported") : 0) << " |\n";
    md << "\n## Every test\n\n| test | result | why |\n|---|---|---|\n";
    for (const auto& r : results) {
      std::string detail = r.detail;
      std::replace(detail.begin(), detail.end(), '|', '/');
      std::replace(detail.begin(), detail.end(), '\n', ' ');
      if (detail.size() > 160) detail = detail.substr(0, 157) + "...";
      md << "| " << r.suite << "/" << r.test << " | " << r.status << " | " << detail << " |\n";
    }
  }
  if (failures) std::cout << failures << " failures\n";
  if (passed("node") < min_node || passed("pytorch-converted") < min_pytorch) {
    std::cout << "fewer tests pass than the minimums (node " << passed("node") << " < " << min_node
              << " or pytorch-converted " << passed("pytorch-converted") << " < " << min_pytorch
              << ")\n";
    return 1;
  }
  return failures ? 1 : 0;
}
