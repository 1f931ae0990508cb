// The .npy parser inside a well-formed archive: the input is one entry's bytes (magic, header,
// data), stored in a valid zip (right sizes and CRC), so every mutation reaches the .npy header
// parser and the size checks behind it.
#include <zip.h>

#include "fuzz_common.hpp"
#include "nn/npz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = fuzz::scratch(nullptr, 0, ".npz");
  int code = 0;
  zip_t* z = zip_open(path.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &code);
  if (!z) return 0;
  zip_source_t* src = zip_source_buffer(z, data, size, 0);
  const zip_int64_t index = src ? zip_file_add(z, "w.npy", src, 0) : -1;
  if (index < 0) {
    if (src) zip_source_free(src);
    zip_discard(z);
    return 0;
  }
  zip_set_file_compression(z, static_cast<zip_uint64_t>(index), ZIP_CM_STORE, 0);
  if (zip_close(z) != 0) {
    zip_discard(z);
    return 0;
  }
  try {
    for (const auto& [name, entry] : ad::nn::npz::load(path))
      if (entry.dtype == "<f8") ad::nn::npz::to_array<ad::Array<double>>(entry, name, path);
  } catch (const ad::Error&) {
  }
  return 0;
}
