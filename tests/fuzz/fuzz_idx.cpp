// The IDX reader on raw bytes (a file starting with the gzip magic goes through the decompressor).
// Any input must give an array or ad::Error: no crash, leak, hang or huge allocation.
#include "fuzz_common.hpp"
#include "nn/datasets.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = fuzz::scratch(data, size, ".idx");
  try {
    ad::nn::datasets::read_idx(path);
  } catch (const ad::Error&) {
  }
  return 0;
}
