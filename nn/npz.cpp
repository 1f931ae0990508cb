#include "nn/npz.hpp"

#include <zip.h>

#include <cctype>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <optional>
#include <set>
#include <tuple>

#include "nn/atomic_write.hpp"

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

/// The header dictionary of a .npy file, a Python literal such as
/// {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }, parsed strictly: anything else
/// throws naming the entry, the file and the position.
class HeaderParser {
 public:
  HeaderParser(const std::string& text, const std::string& file, const std::string& name)
      : s_(text), file_(file), name_(name) {}

  /// The dtype and shape; the array must be in C order.
  std::pair<std::string, Shape> parse() {
    bool have_descr = false, have_order = false, have_shape = false;
    std::string descr;
    Shape shape;
    expect('{');
    while (true) {
      skip_space();
      if (peek() == '}') break;
      const std::string key = quoted();
      expect(':');
      bool* seen = key == "descr"           ? &have_descr
                   : key == "fortran_order" ? &have_order
                   : key == "shape"         ? &have_shape
                                            : nullptr;
      if (!seen) error("unknown key '" + key + "'");
      if (*seen) error("'" + key + "' appears twice");
      *seen = true;
      if (key == "descr") {
        descr = quoted();
      } else if (key == "fortran_order") {
        const std::string order = word();
        if (order == "True") error("stored in Fortran order, which is not supported");
        if (order != "False") error("True or False expected");
      } else {
        shape = tuple();
      }
      skip_space();
      if (peek() == ',') {
        ++at_;
        continue;
      }
      if (peek() != '}') error("',' or '}' expected");
    }
    ++at_;
    skip_space();
    if (at_ != s_.size()) error("text after the closing '}'");
    if (!have_descr) error("the header has no 'descr'");
    if (!have_order) error("the header has no 'fortran_order'");
    if (!have_shape) error("the header has no 'shape'");
    return {descr, shape};
  }

 private:
  [[noreturn]] void error(const std::string& why) const {
    bad_entry(file_, name_,
              "malformed header (" + why + " at character " + std::to_string(at_) + ")");
  }
  char peek() const { return at_ < s_.size() ? s_[at_] : '\0'; }
  void skip_space() {
    while (at_ < s_.size() && (s_[at_] == ' ' || s_[at_] == '\n' || s_[at_] == '\t')) ++at_;
  }
  void expect(char c) {
    skip_space();
    if (peek() != c) error(std::string("'") + c + "' expected");
    ++at_;
  }
  std::string quoted() {
    skip_space();
    const char q = peek();
    if (q != '\'' && q != '"') error("a quoted string expected");
    const std::size_t close = s_.find(q, at_ + 1);
    if (close == std::string::npos) error("unterminated string");
    std::string out = s_.substr(at_ + 1, close - at_ - 1);
    at_ = close + 1;
    return out;
  }
  std::string word() {
    skip_space();
    const std::size_t begin = at_;
    while (at_ < s_.size() && std::isalpha(static_cast<unsigned char>(s_[at_]))) ++at_;
    return s_.substr(begin, at_ - begin);
  }
  /// (), (3,), (3, 4) ...: each dimension a decimal number that fits in 64 bits.
  Shape tuple() {
    expect('(');
    Shape shape;
    while (true) {
      skip_space();
      if (peek() == ')') break;
      if (!std::isdigit(static_cast<unsigned char>(peek()))) error("a dimension expected");
      std::uint64_t d = 0;
      while (std::isdigit(static_cast<unsigned char>(peek()))) {
        const std::uint64_t digit = static_cast<std::uint64_t>(s_[at_++] - '0');
        if (d > (std::numeric_limits<std::uint64_t>::max() - digit) / 10)
          error("dimension too large");
        d = d * 10 + digit;
      }
      if (shape.size() == 32) error("more than 32 dimensions");
      shape.push_back(static_cast<std::size_t>(d));
      skip_space();
      if (peek() == ',') {
        ++at_;
        continue;
      }
      if (peek() != ')') error("',' or ')' expected in the shape");
    }
    ++at_;
    return shape;
  }

  const std::string& s_;
  const std::string& file_;
  const std::string& name_;
  std::size_t at_ = 0;
};

/// a·b, or nullopt when it overflows.
std::optional<std::size_t> checked_mul(std::size_t a, std::size_t b) {
  if (b != 0 && a > std::numeric_limits<std::size_t>::max() / b) return std::nullopt;
  return a * b;
}

/// The bytes of data a shape of a dtype holds; throws when the count overflows.
std::size_t data_bytes(const Shape& shape, std::size_t item, const std::string& file,
                       const std::string& name) {
  std::optional<std::size_t> n = checked_shape_size(shape);
  if (n) n = checked_mul(*n, item);
  if (!n)
    bad_entry(file, name, "shape " + shape_str(shape) + " holds more bytes than can be counted");
  return *n;
}

/// The fixed part of a .npy file: magic, version, header length.
struct Preamble {
  std::size_t size = 0;        // 10 (version 1) or 12 (versions 2 and 3)
  std::size_t header_len = 0;  // the length of the header dictionary that follows
};

/// Parses the preamble from the first bytes of an entry (at least 12 of them, or all there are).
Preamble parse_preamble(const char* bytes, std::size_t n, const std::string& file,
                        const std::string& name) {
  if (n < 10 || std::memcmp(bytes, "\x93NUMPY", 6) != 0) bad_entry(file, name, "no .npy magic");
  const int major = static_cast<unsigned char>(bytes[6]);
  Preamble p;
  if (major == 1) {
    p.header_len = static_cast<unsigned char>(bytes[8]) |
                   static_cast<std::size_t>(static_cast<unsigned char>(bytes[9])) << 8;
    p.size = 10;
  } else if (major == 2 || major == 3) {
    if (n < 12) bad_entry(file, name, "truncated header");
    for (int i = 3; i >= 0; --i)
      p.header_len = p.header_len << 8 | static_cast<unsigned char>(bytes[8 + i]);
    p.size = 12;
  } else {
    bad_entry(file, name, "unknown .npy version " + std::to_string(major));
  }
  return p;
}

/// The header that follows the preamble: dtype, shape, and the bytes of data they need.
Entry parse_header(const std::string& dict, const std::string& file, const std::string& name,
                   std::size_t& data_size) {
  Entry e;
  std::tie(e.dtype, e.shape) = HeaderParser(dict, file, name).parse();
  const std::size_t item = item_size(e.dtype);
  if (item == 0) bad_entry(file, name, "unsupported dtype '" + e.dtype + "'");
  data_size = data_bytes(e.shape, item, file, name);
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
  for (const auto& [name, entry] : entries) {
    std::optional<std::size_t> bytes = checked_shape_size(entry.shape);
    if (bytes) bytes = checked_mul(*bytes, item_size(entry.dtype));
    if (item_size(entry.dtype) == 0 || bytes != entry.data.size())
      fail("checkpoint: cannot write '", path, "': entry '", name, "' has ", entry.data.size(),
           " bytes for shape ", shape_str(entry.shape), " of dtype ", entry.dtype);
  }
  write_atomically(
      path,
      [&](const std::string& tmp) {
        int code = 0;
        zip_t* z = zip_open(tmp.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &code);
        if (!z) fail("checkpoint: cannot create '", tmp, "': ", zip_message(code));
        // The buffers must live until zip_close, which writes the archive.
        std::vector<std::vector<char>> files;
        files.reserve(entries.size());
        auto abandon = [&](const std::string& why) {
          zip_discard(z);
          fail("checkpoint: cannot write '", path, "': ", why);
        };
        for (const auto& [name, entry] : entries) {
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
      },
      "checkpoint");
}

namespace {

/// An open entry of an archive, read in bounded pieces.
class EntryReader {
 public:
  EntryReader(zip_t* z, zip_uint64_t index, const std::string& file, const std::string& name)
      : f_(zip_fopen_index(z, index, 0)), file_(file), name_(name) {
    if (!f_) fail("checkpoint: '", file, "': cannot open entry '", name, "': ", zip_strerror(z));
  }
  ~EntryReader() {
    if (f_) zip_fclose(f_);
  }
  EntryReader(const EntryReader&) = delete;
  EntryReader& operator=(const EntryReader&) = delete;

  /// Reads up to n bytes; returns how many came (fewer only at the end of the entry).
  std::size_t read(char* to, std::size_t n) {
    std::size_t got = 0;
    while (got < n) {
      const zip_int64_t r = zip_fread(f_, to + got, n - got);
      if (r < 0) corrupt(zip_file_strerror(f_));
      if (r == 0) break;
      got += static_cast<std::size_t>(r);
    }
    return got;
  }
  /// Reads exactly n bytes, or throws that the entry is truncated.
  void read_exactly(char* to, std::size_t n) {
    if (read(to, n) != n) corrupt("");
  }
  /// Checks that the entry ends here (libzip checks its CRC at the end).
  void expect_end() {
    char extra;
    if (read(&extra, 1) != 0) corrupt("more data than its header says");
  }

 private:
  [[noreturn]] void corrupt(const std::string& why) {
    fail("checkpoint: '", file_, "': entry '", name_, "' is corrupt or truncated",
         why.empty() ? "" : ": ", why);
  }
  zip_file_t* f_;
  const std::string& file_;
  const std::string& name_;
};

/// Reads one .npy entry. Its claimed size is checked against the archive before anything is
/// read, and its header's shape against that size before the data is allocated: a crafted
/// directory or header never makes the reader allocate more than the file can hold.
Entry read_entry(zip_t* z, zip_uint64_t index, const zip_stat_t& st, std::uintmax_t archive_size,
                 const std::string& file, const std::string& name) {
  const zip_uint64_t need = ZIP_STAT_SIZE | ZIP_STAT_COMP_SIZE | ZIP_STAT_COMP_METHOD;
  if ((st.valid & need) != need) fail("checkpoint: '", file, "': entry '", name, "' has no sizes");
  if (st.comp_size > archive_size)
    fail("checkpoint: '", file, "': entry '", name, "' claims ", st.comp_size,
         " compressed bytes but the archive has only ", archive_size);
  // Deflate expands at most 1032:1; a stored entry is its own size.
  const bool stored = st.comp_method == ZIP_CM_STORE;
  if ((stored && st.size != st.comp_size) || (!stored && st.size / 1032 > st.comp_size + 1))
    fail("checkpoint: '", file, "': entry '", name, "' claims ", st.size, " bytes from ",
         st.comp_size, " compressed ones, which is impossible");
  EntryReader in(z, index, file, name);
  char head[12];
  const std::size_t got = in.read(head, sizeof head);
  const Preamble pre = parse_preamble(head, got, file, name);
  if (pre.header_len > (1u << 20)) bad_entry(file, name, "a header of more than 1 MiB");
  if (st.size < pre.size + pre.header_len) bad_entry(file, name, "truncated header");
  std::string dict(pre.header_len, '\0');
  const std::size_t in_head = got - pre.size;  // header bytes already read with the preamble
  std::copy(head + pre.size, head + got, dict.begin());
  in.read_exactly(dict.data() + in_head, pre.header_len - in_head);
  std::size_t data_size = 0;
  Entry e = parse_header(dict, file, name, data_size);
  if (st.size - pre.size - pre.header_len != data_size)
    bad_entry(file, name,
              "shape " + shape_str(e.shape) + " of " + e.dtype + " needs " +
                  std::to_string(data_size) + " bytes of data, the entry has " +
                  std::to_string(st.size - pre.size - pre.header_len));
  e.data.resize(data_size);
  in.read_exactly(e.data.data(), data_size);
  in.expect_end();
  return e;
}

}  // namespace

Entry load_npy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("'", path, "': cannot open the .npy file");
  in.seekg(0, std::ios::end);
  const std::streamoff end = in.tellg();
  in.seekg(0);
  if (end < 0) fail("'", path, "': cannot read the .npy file");
  const std::size_t size = static_cast<std::size_t>(end);
  char head[12] = {};
  in.read(head, std::streamsize(std::min<std::size_t>(size, sizeof head)));
  const std::string name = "array";
  const Preamble pre = parse_preamble(head, std::min<std::size_t>(size, sizeof head), path, name);
  if (pre.header_len > (1u << 20)) bad_entry(path, name, "a header of more than 1 MiB");
  if (size < pre.size + pre.header_len) bad_entry(path, name, "truncated header");
  std::string dict(pre.header_len, '\0');
  in.seekg(std::streamoff(pre.size));
  in.read(dict.data(), std::streamsize(dict.size()));
  std::size_t data_size = 0;
  Entry e = parse_header(dict, path, name, data_size);
  if (size - pre.size - pre.header_len != data_size)
    bad_entry(path, name,
              "shape " + shape_str(e.shape) + " of " + e.dtype + " needs " +
                  std::to_string(data_size) + " bytes of data, the file has " +
                  std::to_string(size - pre.size - pre.header_len));
  e.data.resize(data_size);
  in.read(e.data.data(), std::streamsize(data_size));
  if (!in) fail("'", path, "': cannot read the .npy file");
  return e;
}

std::vector<std::pair<std::string, Entry>> load(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    fail("checkpoint: cannot read '", path, "': it is a directory");
  int code = 0;
  zip_t* z = zip_open(path.c_str(), ZIP_RDONLY | ZIP_CHECKCONS, &code);
  // libzip refuses an archive whose directory names an entry twice with "File already exists".
  if (!z && code == ZIP_ER_EXISTS)
    fail("checkpoint: cannot read '", path,
         "': two of its entries have the same name (an archive written by something else than "
         "this library, or damaged)");
  if (!z) fail("checkpoint: cannot read '", path, "': ", zip_message(code));
  std::unique_ptr<zip_t, void (*)(zip_t*)> guard(z, zip_discard);
  const std::uintmax_t archive_size = std::filesystem::file_size(path, ec);
  if (ec) fail("checkpoint: cannot read '", path, "': ", ec.message());
  std::vector<std::pair<std::string, Entry>> out;
  std::set<std::string> names;
  const zip_int64_t count = zip_get_num_entries(z, 0);
  for (zip_int64_t i = 0; i < count; ++i) {
    zip_stat_t st;
    if (zip_stat_index(z, static_cast<zip_uint64_t>(i), 0, &st) != 0 || !st.name)
      fail("checkpoint: '", path, "': cannot read entry ", i, ": ", zip_strerror(z));
    std::string name = st.name;
    if (name.size() < 4 || name.compare(name.size() - 4, 4, ".npy") != 0)
      fail("checkpoint: '", path, "': entry '", name, "' is not a .npy file");
    name.resize(name.size() - 4);
    if (!names.insert(name).second)
      fail("checkpoint: '", path, "': entry '", name, "' appears twice");
    out.emplace_back(name,
                     read_entry(z, static_cast<zip_uint64_t>(i), st, archive_size, path, name));
  }
  return out;
}

}  // namespace ad::nn::npz
