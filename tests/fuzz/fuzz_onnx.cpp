// The ONNX model reader: the ModelProto, its initializers (sizes against the data they hold), its
// nodes' references (missing values, cycles) and attributes. (Running a loaded graph is not
// fuzzed: a model may ask for tensors as large as it likes.)
#include <string>

#include "interop/onnx.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    auto model =
        ad::onnx::load_bytes<float>(std::string(reinterpret_cast<const char*>(data), size));
    model->unsupported_ops();
    model->named_parameters();
  } catch (const ad::Error&) {
  }
  return 0;
}
