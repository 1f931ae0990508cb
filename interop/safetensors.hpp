// safetensors (Hugging Face's format for tensors): an 8-byte little-endian header length, a JSON
// header naming each tensor's dtype, shape and byte range, then the raw little-endian data. The
// reader is strict: the header length is bounded and within the file, every range lies inside
// the data, ranges neither overlap nor leave holes, and each size matches its dtype and shape.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "nn/module.hpp"

namespace ad::interop {

/// One tensor of a safetensors file: its dtype ("F32", "F64", "F16", "BF16", "I64", "I32",
/// "I16", "I8", "U8", "BOOL", ...), its shape and its raw little-endian bytes.
struct SafeTensor {
  std::string dtype;  ///< "F32", ...
  Shape shape;        ///< its extents
  std::string bytes;  ///< its data, little-endian, row-major
};

/// The contents of a safetensors file.
struct SafetensorsFile {
  /// The header's "__metadata__" (string to string), if any.
  std::map<std::string, std::string> metadata;
  /// The tensors by name.
  std::map<std::string, SafeTensor> tensors;
};

/// The most header bytes read_safetensors accepts (the reference implementation's limit).
inline constexpr std::uint64_t max_safetensors_header = 100'000'000;

/// Reads a safetensors file. Any malformed content is an ad::Error naming the file and what is
/// wrong (the tensor, the offset); nothing is allocated for a size the file does not hold.
SafetensorsFile read_safetensors(const std::string& path);

/// Writes a safetensors file atomically (a temporary file, fsync, rename); the header is padded
/// with spaces to a multiple of 8 bytes, as the reference implementation does.
void write_safetensors(const std::string& path, const SafetensorsFile& file);

/// How a module's tensors are named in a file, and how strictly a file must match.
struct SafetensorsOptions {
  /// The name in the file of each of the module's tensors (by module path, "fc1.weight"); the
  /// identity when empty. PyTorch's state_dict names are the module paths of the same model
  /// built with torch.nn, so for most models none is needed.
  std::function<std::string(const std::string&)> rename;
  /// Also the buffers (BatchNorm's running statistics).
  bool buffers = true;
  /// Loading: every tensor of the module must be in the file, and every tensor of the file
  /// must be used (else an error listing them); when false, missing ones are left as they are
  /// and extra ones ignored (PyTorch's num_batches_tracked, for instance).
  bool strict = true;
  /// Saving: the "__metadata__" of the file.
  std::map<std::string, std::string> metadata;
};

/// Writes the module's parameters (and buffers) as F32 (float) or F64 (double) tensors.
template <class T>
void save_safetensors(const nn::Module<T>& module, const std::string& path,
                      const SafetensorsOptions& options = {});

/// Loads the module's parameters (and buffers) from a safetensors file: F64, F32, F16 and BF16
/// tensors are converted to T; shapes must match. Nothing is changed unless every tensor loads.
template <class T>
void load_safetensors(nn::Module<T>& module, const std::string& path,
                      const SafetensorsOptions& options = {});

}  // namespace ad::interop
