// The safetensors reader: the header length, the JSON header, and the tensors' byte ranges.
#include "fuzz_common.hpp"
#include "interop/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = fuzz::scratch(data, size, ".safetensors");
  try {
    ad::interop::read_safetensors(path);
  } catch (const ad::Error&) {
  }
  return 0;
}
