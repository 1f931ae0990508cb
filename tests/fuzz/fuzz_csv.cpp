// The CSV reader, and a dataset made from the table's first column.
#include "fuzz_common.hpp"
#include "nn/datasets.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = fuzz::scratch(data, size, ".csv");
  try {
    auto table = ad::nn::datasets::read_csv(path);
    ad::nn::datasets::csv_dataset(table, table.columns.at(0));
  } catch (const ad::Error&) {
  }
  return 0;
}
