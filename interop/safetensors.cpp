#include "interop/safetensors.hpp"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <limits>

#include "interop/half.hpp"
#include "nn/atomic_write.hpp"

namespace ad::interop {

namespace {

static_assert(sizeof(float) == 4 && sizeof(double) == 8, "IEEE float and double are assumed");

/// The bytes of one element of `dtype`, or 0 for an unknown dtype.
std::size_t dtype_size(const std::string& dtype) {
  static const std::map<std::string, std::size_t> sizes = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1},
      {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},
      {"U32", 4},  {"F32", 4}, {"I64", 8}, {"U64", 8},     {"F64", 8}};
  auto it = sizes.find(dtype);
  return it == sizes.end() ? 0 : it->second;
}

/// The place of `dtype` in the reference implementation's list of dtypes (its write order).
int dtype_rank(const std::string& dtype) {
  static const char* order[] = {"BOOL", "U8",  "I8",  "F8_E5M2", "F8_E4M3", "I16", "U16", "F16",
                                "BF16", "I32", "U32", "F32",     "F64",     "I64", "U64"};
  for (int i = 0; i < int(std::size(order)); ++i)
    if (dtype == order[i]) return i;
  return -1;
}

/// A strict reader of the JSON of a safetensors header: objects, strings, arrays of
/// non-negative integers, nothing else.
class HeaderParser {
 public:
  HeaderParser(const std::string& text, const std::string& path) : s_(text), path_(path) {}

  /// The header's entries: tensors with their byte ranges (relative to the data), and metadata.
  struct Entry {
    SafeTensor tensor;
    std::uint64_t begin = 0, end = 0;
  };

  void parse(std::map<std::string, Entry>& entries, std::map<std::string, std::string>& metadata) {
    space();
    bool seen_metadata = false;
    object([&](const std::string& name, std::size_t at) {
      if (name == "__metadata__") {
        if (seen_metadata) error(at, "\"__metadata__\" appears twice");
        seen_metadata = true;
        parse_metadata(metadata);
      } else {
        if (entries.count(name)) error(at, "tensor '" + name + "' appears twice");
        entries[name] = parse_tensor(name);
      }
    });
    space();
    if (i_ != s_.size()) error(i_, "unexpected bytes after the header's object");
  }

 private:
  [[noreturn]] void error(std::size_t at, const std::string& what) const {
    fail("safetensors: '", path_, "': header byte ", at, ": ", what);
  }
  char peek() const {
    if (i_ >= s_.size()) error(i_, "the header ends too early");
    return s_[i_];
  }
  void expect(char c) {
    if (peek() != c) error(i_, std::string("expected '") + c + "'");
    ++i_;
  }
  void space() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r'))
      ++i_;
  }

  unsigned hex4() {
    unsigned v = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = peek();
      ++i_;
      v <<= 4;
      if (c >= '0' && c <= '9')
        v |= unsigned(c - '0');
      else if (c >= 'a' && c <= 'f')
        v |= unsigned(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F')
        v |= unsigned(c - 'A' + 10);
      else
        error(i_ - 1, "a \\u escape needs four hex digits");
    }
    return v;
  }

  static void utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += char(cp);
    } else if (cp < 0x800) {
      out += char(0xC0 | (cp >> 6));
      out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += char(0xE0 | (cp >> 12));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    } else {
      out += char(0xF0 | (cp >> 18));
      out += char(0x80 | ((cp >> 12) & 0x3F));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    }
  }

  std::string string() {
    expect('"');
    std::string out;
    for (;;) {
      const char c = peek();
      ++i_;
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) error(i_ - 1, "a control character in a string");
      if (c != '\\') {
        out += c;
        continue;
      }
      const char e = peek();
      ++i_;
      switch (e) {
        case '"':
          out += '"';
          break;
        case '\\':
          out += '\\';
          break;
        case '/':
          out += '/';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00) {  // a surrogate pair
            if (peek() != '\\') error(i_, "a lone surrogate in a \\u escape");
            ++i_;
            expect('u');
            const unsigned low = hex4();
            if (low < 0xDC00 || low >= 0xE000) error(i_, "a lone surrogate in a \\u escape");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          } else if (cp >= 0xDC00 && cp < 0xE000) {
            error(i_, "a lone surrogate in a \\u escape");
          }
          utf8(out, cp);
          break;
        }
        default:
          error(i_ - 1, std::string("unknown escape '\\") + e + "'");
      }
    }
  }

  std::uint64_t integer() {
    const std::size_t at = i_;
    if (peek() < '0' || peek() > '9') error(at, "expected a non-negative integer");
    if (peek() == '0' && i_ + 1 < s_.size() && s_[i_ + 1] >= '0' && s_[i_ + 1] <= '9')
      error(at, "an integer with a leading zero");
    std::uint64_t v = 0;
    while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') {
      if (v > (std::numeric_limits<std::uint64_t>::max() - std::uint64_t(s_[i_] - '0')) / 10)
        error(at, "an integer too large");
      v = v * 10 + std::uint64_t(s_[i_] - '0');
      ++i_;
    }
    if (i_ < s_.size() && (s_[i_] == '.' || s_[i_] == 'e' || s_[i_] == 'E'))
      error(at, "expected an integer");
    return v;
  }

  std::vector<std::uint64_t> integers() {
    expect('[');
    space();
    std::vector<std::uint64_t> out;
    while (peek() != ']') {
      if (!out.empty()) {
        expect(',');
        space();
      }
      if (out.size() >= 64) error(i_, "more than 64 entries in a list");
      out.push_back(integer());
      space();
    }
    expect(']');
    return out;
  }

  /// An object: `member(key, where it starts)` parses each member's value.
  template <class F>
  void object(F&& member) {
    expect('{');
    space();
    bool first = true;
    while (peek() != '}') {
      if (!first) {
        expect(',');
        space();
      }
      first = false;
      const std::size_t at = i_;
      const std::string key = string();
      space();
      expect(':');
      space();
      member(key, at);
      space();
    }
    expect('}');
  }

  void parse_metadata(std::map<std::string, std::string>& metadata) {
    object([&](const std::string& key, std::size_t at) {
      if (peek() != '"') error(i_, "a metadata value must be a string");
      if (metadata.count(key)) error(at, "metadata key '" + key + "' appears twice");
      metadata[key] = string();
    });
  }

  Entry parse_tensor(const std::string& name) {
    const std::size_t start = i_;
    Entry e;
    bool has_dtype = false, has_shape = false, has_offsets = false;
    object([&](const std::string& key, std::size_t at) {
      bool* seen = key == "dtype"          ? &has_dtype
                   : key == "shape"        ? &has_shape
                   : key == "data_offsets" ? &has_offsets
                                           : nullptr;
      if (!seen) error(at, "tensor '" + name + "': unknown key '" + key + "'");
      if (*seen) error(at, "tensor '" + name + "': key '" + key + "' appears twice");
      *seen = true;
      if (key == "dtype") {
        e.tensor.dtype = string();
        if (!dtype_size(e.tensor.dtype))
          error(at, "tensor '" + name + "': unknown dtype '" + e.tensor.dtype + "'");
      } else if (key == "shape") {
        for (std::uint64_t d : integers()) {
          if (d > std::numeric_limits<std::size_t>::max() / 2)
            error(at, "tensor '" + name + "': an extent too large");
          e.tensor.shape.push_back(std::size_t(d));
        }
      } else {
        const std::vector<std::uint64_t> o = integers();
        if (o.size() != 2) error(at, "tensor '" + name + "': data_offsets needs two numbers");
        e.begin = o[0], e.end = o[1];
      }
    });
    if (!has_dtype || !has_shape || !has_offsets)
      error(start, "tensor '" + name + "' needs dtype, shape and data_offsets");
    return e;
  }

  const std::string& s_;
  const std::string& path_;
  std::size_t i_ = 0;
};

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += char(c);
    } else if (c < 0x20) {
      char buffer[8];
      std::snprintf(buffer, sizeof buffer, "\\u%04x", c);
      out += buffer;
    } else {
      out += char(c);
    }
  }
  return out + "\"";
}

/// The tensor's values converted to T (F64, F32, F16 and BF16).
template <class T>
Array<T> to_array(const SafeTensor& t, const std::string& name, const std::string& path) {
  Array<T> out = Array<T>::from_shape(t.shape);
  const char* p = t.bytes.data();
  T* o = out.data();
  const std::size_t n = out.size();
  if (t.dtype == "F64") {
    for (std::size_t i = 0; i < n; ++i) {
      double v;
      std::memcpy(&v, p + 8 * i, 8);
      o[i] = static_cast<T>(v);
    }
  } else if (t.dtype == "F32") {
    for (std::size_t i = 0; i < n; ++i) {
      float v;
      std::memcpy(&v, p + 4 * i, 4);
      o[i] = static_cast<T>(v);
    }
  } else if (t.dtype == "F16" || t.dtype == "BF16") {
    for (std::size_t i = 0; i < n; ++i) {
      std::uint16_t h;
      std::memcpy(&h, p + 2 * i, 2);
      o[i] = static_cast<T>(t.dtype == "F16" ? half_to_float(h) : bfloat16_to_float(h));
    }
  } else {
    fail("safetensors: '", path, "': tensor '", name, "' is ", t.dtype,
         ", not a floating-point dtype (F64, F32, F16, BF16)");
  }
  return out;
}

}  // namespace

SafetensorsFile read_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("safetensors: cannot open '", path, "'");
  in.seekg(0, std::ios::end);
  const std::streamoff end = in.tellg();
  in.seekg(0);
  if (end < 8) fail("safetensors: '", path, "' is ", end, " bytes, too short for a header length");
  const std::uint64_t size = std::uint64_t(end);
  unsigned char length_bytes[8];
  in.read(reinterpret_cast<char*>(length_bytes), 8);
  std::uint64_t header_size = 0;
  for (int k = 7; k >= 0; --k) header_size = (header_size << 8) | length_bytes[k];
  if (header_size > max_safetensors_header)
    fail("safetensors: '", path, "': a header of ", header_size, " bytes is larger than the ",
         max_safetensors_header, " accepted");
  if (header_size > size - 8)
    fail("safetensors: '", path, "': a header of ", header_size, " bytes, but the file holds ",
         size - 8, " after the length");
  if (header_size < 2) fail("safetensors: '", path, "': the header is empty");
  std::string header(header_size, '\0');
  in.read(header.data(), std::streamsize(header_size));
  if (!in) fail("safetensors: '", path, "': cannot read the header");

  std::map<std::string, HeaderParser::Entry> entries;
  SafetensorsFile file;
  HeaderParser(header, path).parse(entries, file.metadata);

  // Every range inside the data, matching its dtype and shape; the ranges in order of their
  // offsets cover the data without overlap or hole.
  const std::uint64_t data_size = size - 8 - header_size;
  std::vector<std::pair<std::uint64_t, const std::string*>> order;
  for (const auto& [name, e] : entries) {
    // The size, and with a zero extent the product of the others too (xtensor multiplies them
    // into signed strides).
    const std::optional<std::size_t> count = checked_shape_size(e.tensor.shape);
    std::uint64_t bytes = 0;
    if (!count || __builtin_mul_overflow(std::uint64_t(*count),
                                         std::uint64_t(dtype_size(e.tensor.dtype)), &bytes))
      fail("safetensors: '", path, "': tensor '", name, "' of shape ", shape_str(e.tensor.shape),
           " is too large");
    if (e.begin > e.end || e.end > data_size)
      fail("safetensors: '", path, "': tensor '", name, "' has data_offsets [", e.begin, ", ",
           e.end, "] outside the ", data_size, " bytes of data");
    if (e.end - e.begin != bytes)
      fail("safetensors: '", path, "': tensor '", name, "' is ", e.tensor.dtype, " of shape ",
           shape_str(e.tensor.shape), " (", bytes, " bytes) but its data_offsets [", e.begin, ", ",
           e.end, "] hold ", e.end - e.begin);
    order.emplace_back(e.begin, &name);
  }
  std::sort(order.begin(), order.end(), [&](const auto& a, const auto& b) {
    return a.first != b.first ? a.first < b.first
                              : entries.at(*a.second).end < entries.at(*b.second).end;
  });
  std::uint64_t covered = 0;
  for (const auto& [begin, name] : order) {
    if (begin != covered)
      fail("safetensors: '", path, "': tensor '", *name, "' starts at byte ", begin, " of the data",
           begin < covered ? ", inside the tensor before it" : ", leaving a hole before it");
    covered = entries.at(*name).end;
  }
  if (covered != data_size)
    fail("safetensors: '", path, "': the tensors cover ", covered, " of the ", data_size,
         " bytes of data");
  for (const auto& [begin, name] : order) {
    auto& e = entries.at(*name);
    e.tensor.bytes.resize(std::size_t(e.end - e.begin));
    in.read(e.tensor.bytes.data(), std::streamsize(e.tensor.bytes.size()));
    if (!in) fail("safetensors: '", path, "': cannot read tensor '", *name, "'");
    file.tensors.emplace(*name, std::move(e.tensor));
  }
  return file;
}

void write_safetensors(const std::string& path, const SafetensorsFile& file) {
  std::string header = "{";
  if (!file.metadata.empty()) {
    header += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [k, v] : file.metadata) {
      header += (first ? "" : ",") + json_string(k) + ":" + json_string(v);
      first = false;
    }
    header += "}";
  }
  // The reference implementation's order: by dtype, the widest first (in its order of dtypes),
  // then by name; the same tensors give the same bytes.
  std::vector<const std::pair<const std::string, SafeTensor>*> order;
  for (const auto& entry : file.tensors) order.push_back(&entry);
  std::stable_sort(order.begin(), order.end(), [](const auto* a, const auto* b) {
    return dtype_rank(a->second.dtype) > dtype_rank(b->second.dtype);
  });
  std::uint64_t offset = 0;
  for (const auto* entry : order) {
    const auto& [name, t] = *entry;
    if (name == "__metadata__") fail("safetensors: a tensor cannot be named \"__metadata__\"");
    const std::size_t element = dtype_size(t.dtype);
    if (!element) fail("safetensors: tensor '", name, "' has the unknown dtype '", t.dtype, "'");
    if (t.bytes.size() != element * shape_size(t.shape))
      fail("safetensors: tensor '", name, "' holds ", t.bytes.size(),
           " bytes, its dtype and shape ", shape_str(t.shape), " need ",
           element * shape_size(t.shape));
    if (header.size() > 1) header += ",";
    header += json_string(name) + ":{\"dtype\":\"" + t.dtype + "\",\"shape\":[";
    for (std::size_t d = 0; d < t.shape.size(); ++d)
      header += (d ? "," : "") + std::to_string(t.shape[d]);
    header += "],\"data_offsets\":[" + std::to_string(offset) + "," +
              std::to_string(offset + t.bytes.size()) + "]}";
    offset += t.bytes.size();
  }
  header += "}";
  header.resize((header.size() + 7) / 8 * 8, ' ');
  nn::write_atomically(
      path,
      [&](const std::string& temporary) {
        std::ofstream out(temporary, std::ios::binary);
        unsigned char length[8];
        for (int k = 0; k < 8; ++k)
          length[k] = static_cast<unsigned char>(header.size() >> (8 * k));
        out.write(reinterpret_cast<const char*>(length), 8);
        out.write(header.data(), std::streamsize(header.size()));
        for (const auto* entry : order)
          out.write(entry->second.bytes.data(), std::streamsize(entry->second.bytes.size()));
        out.flush();
        if (!out) fail("cannot write '", temporary, "'");
      },
      "safetensors file");
}

namespace {

/// One of a module's tensors: its name in the file, and the parameter (a handle) or the buffer.
template <class T>
struct Target {
  std::string name;
  Variable<T> parameter;
  Array<T>* buffer = nullptr;
  const Array<T>& value() const { return buffer ? *buffer : parameter.value(); }
};

/// The module's tensors: parameters, then buffers.
template <class T>
std::vector<Target<T>> module_tensors(const nn::Module<T>& module,
                                      const SafetensorsOptions& options) {
  std::vector<Target<T>> out;
  auto file_name = [&](const std::string& n) { return options.rename ? options.rename(n) : n; };
  for (auto& [name, p] : module.named_parameters()) out.push_back({file_name(name), p, nullptr});
  if (options.buffers)
    for (auto& [name, b] : module.named_buffers()) out.push_back({file_name(name), {}, b});
  std::map<std::string, int> seen;
  for (const auto& t : out)
    if (seen[t.name]++)
      fail("safetensors: two of the module's tensors are named '", t.name, "' in the file");
  return out;
}

}  // namespace

template <class T>
void save_safetensors(const nn::Module<T>& module, const std::string& path,
                      const SafetensorsOptions& options) {
  SafetensorsFile file;
  file.metadata = options.metadata;
  for (const Target<T>& target : module_tensors(module, options)) {
    const Array<T>& a = target.value();
    SafeTensor t;
    t.dtype = std::is_same_v<T, float> ? "F32" : "F64";
    t.shape = Shape(a.shape().begin(), a.shape().end());
    t.bytes.assign(reinterpret_cast<const char*>(a.data()), a.size() * sizeof(T));
    file.tensors.emplace(target.name, std::move(t));
  }
  write_safetensors(path, file);
}

template <class T>
void load_safetensors(nn::Module<T>& module, const std::string& path,
                      const SafetensorsOptions& options) {
  const SafetensorsFile file = read_safetensors(path);
  std::vector<Target<T>> targets = module_tensors(module, options);
  std::string missing, extra;
  std::map<std::string, bool> used;
  std::vector<std::pair<Target<T>*, Array<T>>> loaded;
  for (Target<T>& target : targets) {
    auto it = file.tensors.find(target.name);
    if (it == file.tensors.end()) {
      missing += (missing.empty() ? "" : ", ") + target.name;
      continue;
    }
    used[target.name] = true;
    const auto& shape = target.value().shape();
    if (!std::equal(shape.begin(), shape.end(), it->second.shape.begin(), it->second.shape.end()))
      fail("safetensors: '", path, "': tensor '", target.name, "' has shape ",
           shape_str(it->second.shape), ", the module's is ", shape_str(shape));
    loaded.emplace_back(&target, to_array<T>(it->second, target.name, path));
  }
  for (const auto& [name, t] : file.tensors)
    if (!used.count(name)) extra += (extra.empty() ? "" : ", ") + name;
  if (options.strict && (!missing.empty() || !extra.empty()))
    fail("safetensors: '", path,
         "' does not match the module:", missing.empty() ? "" : " missing " + missing + ";",
         extra.empty() ? "" : " not in the module: " + extra + ";",
         " (SafetensorsOptions::strict = false loads what matches)");
  // Every tensor converted: now the module changes (in place: a parameter may be a view of a
  // flat buffer).
  for (auto& [target, value] : loaded) {
    Array<T>& into = target->buffer ? *target->buffer : target->parameter.mutable_value();
    std::copy(value.data(), value.data() + value.size(), into.data());
  }
}

#define AD_INSTANTIATE(T)                                                     \
  template void save_safetensors<T>(const nn::Module<T>&, const std::string&, \
                                    const SafetensorsOptions&);               \
  template void load_safetensors<T>(nn::Module<T>&, const std::string&, const SafetensorsOptions&);
AD_INSTANTIATE(float)
AD_INSTANTIATE(double)
#undef AD_INSTANTIATE

}  // namespace ad::interop
