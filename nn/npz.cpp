#include "nn/npz.hpp"

#include <zip.h>

#include <unistd.h>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>

namespace ad::nn::npz {

template <>
std::string dtype_of<float>() {
  return "<f4";
}
template <>
std::string dtype_of<double>() {
  return "<f8";
}
template <>
std::string dtype_of<std::uint8_t>() {
  return "|u1";
}
template <>
std::string dtype_of<std::uint64_t>() {
  return "<u8";
}

namespace {

std::size_t item_size(const std::string& dtype) {
  if (dtype == "<f4") return 4;
  if (dtype == "<f8" || dtype == "<u8" || dtype == "<i8") return 8;
  if (dtype == "|u1" || dtype == "|i1" || dtype == "|b1") return 1;
  return 0;
}

/// The .npy bytes of an entry: magic, version 1.0, a header padded to 64 bytes, the data.
std::vector<char> to_npy(const Entry& e) {
  // NumPy's tuple syntax: "()", "(3,)", "(3, 4)".
  std::string shape = "(";
  for (std::size_t i = 0; i < e.shape.size(); ++i)
    shape += std::to_string(e.shape[i]) + (e.shape.size() == 1      ? ","
                                           : i + 1 < e.shape.size() ? ", "
                                                                    : "");
  shape += ")";
  std::string dict = "{'descr': '" + e.dtype + "', 'fortran_order': False, 'shape': " + shape;
  dict += ", }";
  const std::size_t prefix = 10;  // magic (6) + version (2) + header length (2)
  std::size_t total = prefix + dict.size() + 1;
  dict.append((64 - total % 64) % 64, ' ');
  dict += '\n';
  std::vector<char> out;
  const char magic[] = "\x93NUMPY\x01\x00";
  out.insert(out.end(), magic, magic + 8);
  out.push_back(static_cast<char>(dict.size() & 0xff));
  out.push_back(static_cast<char>(dict.size() >> 8));
  out.insert(out.end(), dict.begin(), dict.end());
  out.insert(out.end(), e.data.begin(), e.data.end());
  return out;
}

[[noreturn]] void bad_entry(const std::string& file, const std::string& name,
                            const std::string& why) {
  fail("'", file, "': entry '", name, "' is not a valid .npy array: ", why);
}

/// Parses .npy bytes (versions 1 to 3, C order).
Entry from_npy(const std::vector<char>& bytes, const std::string& file, const std::string& name) {
  if (bytes.size() < 10 || std::memcmp(bytes.data(), "\x93NUMPY", 6) != 0)
    bad_entry(file, name, "no .npy magic");
  const int major = static_cast<unsigned char>(bytes[6]);
  std::size_t header_len, offset;
  if (major == 1) {
    header_len = static_cast<unsigned char>(bytes[8]) | static_cast<unsigned char>(bytes[9]) << 8;
    offset = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) bad_entry(file, name, "truncated header");
    header_len = 0;
    for (int i = 3; i >= 0; --i)
      header_len = header_len << 8 | static_cast<unsigned char>(bytes[8 + i]);
    offset = 12;
  } else {
    bad_entry(file, name, "unknown .npy version " + std::to_string(major));
  }
  if (bytes.size() < offset + header_len) bad_entry(file, name, "truncated header");
  const std::string dict(bytes.data() + offset, header_len);
  auto value_after = [&](const std::string& key) {
    auto at = dict.find("'" + key + "'");
    if (at == std::string::npos) bad_entry(file, name, "the header has no '" + key + "'");
    at = dict.find(':', at);
    if (at == std::string::npos) bad_entry(file, name, "malformed header");
    return dict.find_first_not_of(' ', at + 1);
  };
  Entry e;
  std::size_t at = value_after("descr");
  const char quote = dict[at];
  const std::size_t close = dict.find(quote, at + 1);
  if ((quote != '\'' && quote != '"') || close == std::string::npos)
    bad_entry(file, name, "malformed descr");
  e.dtype = dict.substr(at + 1, close - at - 1);
  if (dict.compare(value_after("fortran_order"), 5, "False") != 0)
    bad_entry(file, name, "stored in Fortran order, which is not supported");
  at = value_after("shape");
  const std::size_t end = dict.find(')', at);
  if (dict[at] != '(' || end == std::string::npos) bad_entry(file, name, "malformed shape");
  std::string dims = dict.substr(at + 1, end - at - 1);
  std::size_t pos = 0;
  while (pos < dims.size()) {
    std::size_t comma = dims.find(',', pos);
    std::string tok =
        dims.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    tok.erase(0, tok.find_first_not_of(' '));
    tok.erase(tok.find_last_not_of(' ') + 1);
    if (!tok.empty()) {
      if (tok.find_first_not_of("0123456789") != std::string::npos)
        bad_entry(file, name, "malformed shape (" + dims + ")");
      e.shape.push_back(std::stoull(tok));
    }
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  const std::size_t item = item_size(e.dtype);
  if (item == 0) bad_entry(file, name, "unsupported dtype " + e.dtype);
  const std::size_t want = shape_size(e.shape) * item;
  if (bytes.size() - offset - header_len != want)
    bad_entry(file, name,
              "shape " + shape_str(e.shape) + " needs " + std::to_string(want) +
                  " bytes of data, found " + std::to_string(bytes.size() - offset - header_len));
  e.data.assign(bytes.begin() + static_cast<std::ptrdiff_t>(offset + header_len), bytes.end());
  return e;
}

std::string zip_message(int code) {
  zip_error_t error;
  zip_error_init_with_code(&error, code);
  std::string message = zip_error_strerror(&error);
  zip_error_fini(&error);
  return message;
}

}  // namespace

void save(const std::string& path, const std::vector<std::pair<std::string, Entry>>& entries) {
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  int code = 0;
  zip_t* z = zip_open(tmp.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &code);
  if (!z) fail("checkpoint: cannot create '", tmp, "': ", zip_message(code));
  // The buffers must live until zip_close, which writes the archive.
  std::vector<std::vector<char>> files;
  files.reserve(entries.size());
  auto abandon = [&](const std::string& why) {
    zip_discard(z);
    std::remove(tmp.c_str());
    fail("checkpoint: cannot write '", path, "': ", why);
  };
  for (const auto& [name, entry] : entries) {
    if (item_size(entry.dtype) * shape_size(entry.shape) != entry.data.size())
      abandon("entry '" + name + "' has " + std::to_string(entry.data.size()) +
              " bytes for shape " + shape_str(entry.shape));
    files.push_back(to_npy(entry));
    zip_source_t* src = zip_source_buffer(z, files.back().data(), files.back().size(), 0);
    if (!src) abandon(zip_strerror(z));
    const zip_int64_t index = zip_file_add(z, (name + ".npy").c_str(), src, ZIP_FL_ENC_UTF_8);
    if (index < 0) {
      zip_source_free(src);
      abandon("entry '" + name + "': " + zip_strerror(z));
    }
    zip_set_file_compression(z, static_cast<zip_uint64_t>(index), ZIP_CM_STORE, 0);
  }
  if (zip_close(z) != 0) abandon(zip_strerror(z));
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    fail("checkpoint: cannot rename '", tmp, "' to '", path, "': ", std::strerror(errno));
  }
}

std::vector<std::pair<std::string, Entry>> load(const std::string& path) {
  int code = 0;
  zip_t* z = zip_open(path.c_str(), ZIP_RDONLY | ZIP_CHECKCONS, &code);
  if (!z) fail("checkpoint: cannot read '", path, "': ", zip_message(code));
  std::unique_ptr<zip_t, void (*)(zip_t*)> guard(z, zip_discard);
  std::vector<std::pair<std::string, Entry>> out;
  const zip_int64_t count = zip_get_num_entries(z, 0);
  for (zip_int64_t i = 0; i < count; ++i) {
    zip_stat_t st;
    if (zip_stat_index(z, static_cast<zip_uint64_t>(i), 0, &st) != 0)
      fail("checkpoint: '", path, "': cannot read entry ", i, ": ", zip_strerror(z));
    std::string name = st.name;
    if (name.size() < 4 || name.compare(name.size() - 4, 4, ".npy") != 0)
      fail("checkpoint: '", path, "': entry '", name, "' is not a .npy file");
    name.resize(name.size() - 4);
    zip_file_t* f = zip_fopen_index(z, static_cast<zip_uint64_t>(i), 0);
    if (!f) fail("checkpoint: '", path, "': cannot open entry '", name, "': ", zip_strerror(z));
    // Read until zip_fread reports the end: libzip checks the CRC only there.
    std::vector<char> bytes(st.size + 1);
    zip_uint64_t got = 0;
    zip_int64_t n = 0;
    while ((n = zip_fread(f, bytes.data() + got, bytes.size() - got)) > 0) {
      got += static_cast<zip_uint64_t>(n);
      if (got == bytes.size()) break;
    }
    std::string err = n < 0 ? zip_file_strerror(f) : "";
    zip_fclose(f);
    bytes.resize(st.size);
    if (n < 0 || got != st.size)
      fail("checkpoint: '", path, "': entry '", name, "' is corrupt or truncated",
           err.empty() ? "" : ": ", err);
    out.emplace_back(name, from_npy(bytes, path, name));
  }
  return out;
}

}  // namespace ad::nn::npz
