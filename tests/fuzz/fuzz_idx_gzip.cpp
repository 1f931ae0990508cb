// The IDX reader behind the gzip decompressor: the input is compressed first, so the fuzzer
// explores the IDX parser through the gzip path (mutations of compressed bytes rarely decompress).
#include <boost/iostreams/filter/gzip.hpp>
#include <boost/iostreams/filtering_stream.hpp>

#include "fuzz_common.hpp"
#include "nn/datasets.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = fuzz::scratch(nullptr, 0, ".idx.gz");
  {
    std::ofstream file(path, std::ios::binary | std::ios::trunc);
    boost::iostreams::filtering_ostream out;
    out.push(boost::iostreams::gzip_compressor());
    out.push(file);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  try {
    ad::nn::datasets::read_idx(path);
  } catch (const ad::Error&) {
  }
  return 0;
}
