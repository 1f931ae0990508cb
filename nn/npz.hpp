// NumPy's .npz format: a zip archive of .npy files (written and read with libzip), so that
// checkpoints open in NumPy without this library: numpy.load("model.npz")["0.weight"].
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "autodiff/variable.hpp"

namespace ad::nn::npz {

/// One array of an archive: its NumPy dtype ("<f4", "<f8", "|u1", "<u8"), shape and raw
/// little-endian, row-major bytes.
struct Entry {
  /// NumPy's dtype string.
  std::string dtype;
  /// The array's shape.
  Shape shape;
  /// Its bytes, little-endian and row-major.
  std::vector<char> data;
};

/// The NumPy dtype string of T (float, double, uint8_t, uint64_t).
template <class T>
std::string dtype_of();

/// An entry holding a copy of `a`.
template <class A>
Entry from_array(const A& a) {
  using T = typename A::value_type;
  Entry e{dtype_of<T>(), Shape(a.shape().begin(), a.shape().end()), {}};
  e.data.resize(a.size() * sizeof(T));
  std::copy(reinterpret_cast<const char*>(a.data()),
            reinterpret_cast<const char*>(a.data() + a.size()), e.data.data());
  return e;
}

/// The array in `e`; throws naming the entry and the file when its dtype is not T's.
template <class A>
A to_array(const Entry& e, const std::string& name, const std::string& file) {
  using T = typename A::value_type;
  if (e.dtype != dtype_of<T>())
    fail("'", file, "': entry '", name, "' has dtype ", e.dtype, ", expected ", dtype_of<T>());
  const std::optional<std::size_t> count = checked_shape_size(e.shape);
  if (!count) fail("'", file, "': entry '", name, "' has a shape whose size overflows");
  if (*count > e.data.size() / sizeof(T) || *count * sizeof(T) != e.data.size())
    fail("'", file, "': entry '", name, "' holds ", e.data.size(), " bytes for shape ",
         shape_str(e.shape));
  A a = A::from_shape(e.shape);
  std::copy(e.data.begin(), e.data.end(), reinterpret_cast<char*>(a.data()));
  return a;
}

/// Writes the entries (name without ".npy") atomically (nn/atomic_write.hpp): a failure or a kill
/// leaves any earlier file at `path` as it was.
void save(const std::string& path, const std::vector<std::pair<std::string, Entry>>& entries);

/// Reads every entry; throws ad::Error naming the file (and the entry) when it is missing, a
/// directory, not a zip archive, truncated, corrupt, or holds something that is not a valid .npy
/// array. Sizes claimed by the zip directory and the .npy headers are checked against the file
/// (with checked arithmetic) before anything is allocated for them.
std::vector<std::pair<std::string, Entry>> load(const std::string& path);

/// Reads a single .npy file (NumPy's numpy.save), with the same checks as load().
Entry load_npy(const std::string& path);

}  // namespace ad::nn::npz
