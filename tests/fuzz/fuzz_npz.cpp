// The .npz loader on raw bytes: a zip archive of .npy files, or anything else.
#include "fuzz_common.hpp"
#include "nn/npz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = fuzz::scratch(data, size, ".npz");
  try {
    for (const auto& [name, entry] : ad::nn::npz::load(path))
      if (entry.dtype == "<f4") ad::nn::npz::to_array<ad::Array<float>>(entry, name, path);
  } catch (const ad::Error&) {
  }
  return 0;
}
