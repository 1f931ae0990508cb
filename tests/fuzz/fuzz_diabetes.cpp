// The diabetes reader (two files of whitespace-separated numbers, gzip or plain): after a 2-byte
// big-endian length, that many bytes are the data file, the rest the target file.
#include <algorithm>
#include <filesystem>

#include "fuzz_common.hpp"
#include "nn/datasets.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::size_t first = std::min<std::size_t>(std::size_t{data[0]} << 8 | data[1], size - 2);
  const std::string raw = fuzz::scratch(data + 2, first, "_raw");
  const std::string target = fuzz::scratch(data + 2 + first, size - 2 - first, "_target");
  // The reader takes a folder with the two names: links in a folder of this process.
  const std::filesystem::path dir = raw + "_dir";
  std::filesystem::create_directories(dir);
  for (const auto& [name, file] :
       {std::pair{"diabetes_data_raw.csv.gz", raw}, std::pair{"diabetes_target.csv.gz", target}}) {
    std::filesystem::remove(dir / name);
    std::filesystem::create_symlink(file, dir / name);
  }
  try {
    ad::nn::datasets::load_diabetes(dir.string());
  } catch (const ad::Error&) {
  }
  return 0;
}
