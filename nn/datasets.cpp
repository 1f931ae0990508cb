#include "nn/datasets.hpp"

#include <boost/iostreams/filter/gzip.hpp>
#include <boost/iostreams/filtering_streambuf.hpp>

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

namespace ad::nn::datasets {

namespace {

/// Whether `text` is a decimal number as a CSV holds it: an optional sign, digits with an
/// optional point, an optional exponent. (strtod also takes hexadecimal "0x10", "inf" and
/// "nan", which a data file does not mean.)
bool decimal(const std::string& text) {
  std::size_t i = 0, digits = 0;
  if (i < text.size() && (text[i] == '+' || text[i] == '-')) ++i;
  for (; i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])); ++i) ++digits;
  if (i < text.size() && text[i] == '.')
    for (++i; i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])); ++i) ++digits;
  if (digits == 0) return false;
  if (i < text.size() && (text[i] == 'e' || text[i] == 'E')) {
    ++i;
    if (i < text.size() && (text[i] == '+' || text[i] == '-')) ++i;
    std::size_t exponent = 0;
    for (; i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])); ++i) ++exponent;
    if (exponent == 0) return false;
  }
  return i == text.size();
}

namespace io = boost::iostreams;

std::uint32_t big_endian(const char* p) {
  auto b = reinterpret_cast<const unsigned char*>(p);
  return std::uint32_t(b[0]) << 24 | std::uint32_t(b[1]) << 16 | std::uint32_t(b[2]) << 8 | b[3];
}

/// Reads up to n bytes; returns how many came.
std::size_t read_some(std::istream& in, char* to, std::size_t n) {
  in.read(to, static_cast<std::streamsize>(n));
  return static_cast<std::size_t>(in.gcount());
}

/// A file opened for reading, decompressed on the fly when it starts with the gzip magic
/// (1f 8b). A folder or a file that cannot be opened throws, naming the path. Reads throw
/// std::ios::failure on corrupt gzip data.
struct Input {
  std::ifstream file;
  io::filtering_istreambuf buffer;
  std::istream in{nullptr};
  bool gzip = false;
  explicit Input(const std::string& path) {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec))
      fail("cannot read '", path, "': it is a directory");
    file.open(path, std::ios::binary);
    if (!file) fail("cannot open '", path, "': ", std::strerror(errno));
    const int b0 = file.get(), b1 = file.get();
    file.clear();
    file.seekg(0);
    gzip = b0 == 0x1f && b1 == 0x8b;
    if (gzip) buffer.push(io::gzip_decompressor());
    buffer.push(file);
    in.rdbuf(&buffer);
    in.exceptions(std::ios::badbit);
  }
};

}  // namespace

Array<std::uint8_t> read_idx(const std::string& path) {
  Input input(path);
  std::istream& in = input.in;
  const bool gzip = input.gzip;
  std::error_code ec;
  const std::uintmax_t file_size = std::filesystem::file_size(path, ec);
  if (ec) fail("cannot read '", path, "': ", ec.message());
  try {
    char head[4];
    if (read_some(in, head, 4) < 4 || head[0] != 0 || head[1] != 0)
      fail("'", path, "' is not an IDX file: wrong magic number");
    if (static_cast<unsigned char>(head[2]) != 0x08)
      fail("'", path, "': IDX element type 0x", std::hex, int(static_cast<unsigned char>(head[2])),
           std::dec, " is not unsigned bytes (0x08)");
    const std::size_t ndim = static_cast<unsigned char>(head[3]);
    if (ndim == 0 || ndim > 8) fail("'", path, "': IDX header with ", ndim, " dimensions (1 to 8)");
    std::vector<char> dims(4 * ndim);
    if (read_some(in, dims.data(), dims.size()) < dims.size())
      fail("'", path, "': IDX header truncated (", ndim, " dimensions)");
    Shape shape;
    for (std::size_t d = 0; d < ndim; ++d) shape.push_back(big_endian(dims.data() + 4 * d));
    const std::optional<std::size_t> count = checked_shape_size(shape);
    const bool overflow = !count;
    const std::size_t want = count.value_or(0);
    // The data the header claims, against the bytes really there, before allocating it: exactly
    // the rest of a raw file; for gzip at most what deflate can expand the file to (1032:1).
    const std::uintmax_t header = 4 + 4 * ndim;
    const std::string need = "dimensions " + shape_str(shape) + " need " +
                             (overflow ? std::string("more bytes than can be counted")
                                       : std::to_string(want) + " bytes") +
                             " of data";
    if (gzip && (overflow || want > file_size * 1032))
      fail("'", path, "': ", need, ", more than the ", file_size, "-byte gzip file can hold");
    if (!gzip && (overflow || want != file_size - std::min(file_size, header)))
      fail("'", path, "': ", need, ", the file has ",
           overflow || want > file_size - std::min(file_size, header)
               ? "only " + std::to_string(file_size - std::min(file_size, header)) + " (truncated)"
               : "more");
    Array<std::uint8_t> out = Array<std::uint8_t>::from_shape(shape);
    const std::size_t got = read_some(in, reinterpret_cast<char*>(out.data()), want);
    char extra[1];
    const bool more = got == want && read_some(in, extra, 1) > 0;
    if (got < want || more)
      fail("'", path, "': dimensions ", shape_str(shape), " need ", want,
           " bytes of data, the file has ",
           got < want ? "only " + std::to_string(got) + " (truncated)" : "more");
    return out;
  } catch (const std::ios::failure& e) {  // boost's gzip_error is one
    fail("'", path, "': corrupt or truncated gzip data (", e.what(), ")");
  }
}

ImageSplit load_mnist(const std::string& dir, bool train) {
  namespace fs = std::filesystem;
  auto find = [&](const std::string& stem) {
    for (const std::string& name : {stem + ".gz", stem})
      if (fs::exists(fs::path(dir) / name)) return (fs::path(dir) / name).string();
    std::string hint = dir == fashion_mnist_dir
                           ? " (install it with: sudo apt-get install dataset-fashion-mnist)"
                           : " (or point --data-dir at a folder holding the MNIST-format files)";
    fail("missing '", (fs::path(dir) / (stem + ".gz")).string(), "'", hint);
  };
  const std::string prefix = train ? "train" : "t10k";
  const std::string images_path = find(prefix + "-images-idx3-ubyte");
  const std::string labels_path = find(prefix + "-labels-idx1-ubyte");
  Array<std::uint8_t> images = read_idx(images_path);
  Array<std::uint8_t> labels = read_idx(labels_path);
  if (images.dimension() != 3)
    fail("'", images_path, "': images must have 3 dimensions, found ", shape_str(images.shape()));
  if (images.shape()[1] != 28 || images.shape()[2] != 28)
    fail("'", images_path, "': expected 28x28 images (MNIST's format), found ", images.shape()[1],
         "x", images.shape()[2]);
  if (labels.dimension() != 1)
    fail("'", labels_path, "': labels must have 1 dimension, found ", shape_str(labels.shape()));
  if (images.shape()[0] != labels.shape()[0])
    fail("'", images_path, "' holds ", images.shape()[0], " images but '", labels_path, "' holds ",
         labels.shape()[0], " labels");
  ImageSplit split{std::move(images), Array<float>::from_shape({labels.size()})};
  std::copy(labels.begin(), labels.end(), split.labels.begin());
  return split;
}

std::shared_ptr<Dataset<std::uint8_t>> mnist_dataset(const ImageSplit& split, bool as_images,
                                                     std::size_t limit) {
  const Shape& s = split.images.shape();
  const std::size_t n = limit ? std::min(limit, s[0]) : s[0];
  Shape shape = as_images ? Shape{n, 1, s[1], s[2]} : Shape{n, s[1] * s[2]};
  Array<std::uint8_t> images = Array<std::uint8_t>::from_shape(shape);
  std::copy(split.images.data(), split.images.data() + images.size(), images.data());
  Array<float> labels = Array<float>::from_shape({n});
  std::copy(split.labels.data(), split.labels.data() + n, labels.data());
  return std::make_shared<Dataset<std::uint8_t>>(std::move(images), std::move(labels), 1.0 / 255);
}

CsvTable read_csv(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) fail("cannot read '", path, "': it is a directory");
  std::ifstream file(path);
  if (!file) fail("cannot open '", path, "': ", std::strerror(errno));
  auto split = [](const std::string& line) {
    std::vector<std::string> fields;
    std::string field;
    std::istringstream in(line);
    while (std::getline(in, field, ',')) {
      field.erase(0, field.find_first_not_of(" \t\r"));
      field.erase(field.find_last_not_of(" \t\r") + 1);
      fields.push_back(field);
    }
    if (!line.empty() && line.back() == ',') fields.emplace_back();
    return fields;
  };
  CsvTable table;
  std::string line;
  std::size_t line_no = 0;
  while (std::getline(file, line)) {
    ++line_no;
    // A UTF-8 byte-order mark (as spreadsheet programs write) is not part of the first name.
    if (line_no == 1 && line.compare(0, 3, "\xEF\xBB\xBF") == 0) line.erase(0, 3);
    if (line.find_first_not_of(" \t\r") != std::string::npos) break;
  }
  table.columns = split(line);
  if (table.columns.empty() || line.find_first_not_of(" \t\r") == std::string::npos)
    fail("'", path, "' is empty: a header row is needed");
  for (std::size_t c = 0; c < table.columns.size(); ++c)
    for (std::size_t d = 0; d < c; ++d)
      if (table.columns[c] == table.columns[d])
        fail("'", path, "' line ", line_no, ": column ", c + 1, " ('", table.columns[c],
             "') has the name of column ", d + 1);
  std::vector<double> values;
  std::size_t rows = 0;
  while (std::getline(file, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto fields = split(line);
    if (fields.size() != table.columns.size())
      fail("'", path, "' line ", line_no, ": ", fields.size(), " fields, the header has ",
           table.columns.size());
    for (std::size_t c = 0; c < fields.size(); ++c) {
      auto where = [&]() {
        std::ostringstream os;
        os << "'" << path << "' line " << line_no << ", column " << c + 1 << " ('"
           << table.columns[c] << "'): '" << fields[c] << "'";
        return os.str();
      };
      char* end = nullptr;
      errno = 0;
      const double v = std::strtod(fields[c].c_str(), &end);
      if (fields[c].empty() || *end != '\0') fail(where(), " is not a number");
      if (!std::isfinite(v))
        fail(where(), errno == ERANGE ? " is out of the range of a double"
                                      : " is not a finite number (NaN and infinity are refused)");
      if (!decimal(fields[c]))
        fail(where(), " is not a decimal number (hexadecimal and other forms are refused)");
      values.push_back(v);
    }
    ++rows;
  }
  if (rows == 0) fail("'", path, "' has a header but no rows");
  table.values = Array<double>::from_shape({rows, table.columns.size()});
  std::copy(values.begin(), values.end(), table.values.begin());
  return table;
}

std::shared_ptr<Dataset<float>> csv_dataset(const CsvTable& table, const std::string& target) {
  auto it = std::find(table.columns.begin(), table.columns.end(), target);
  if (it == table.columns.end()) {
    std::string names;
    for (const auto& c : table.columns) names += (names.empty() ? "" : ", ") + c;
    fail("CSV: no column '", target, "' (columns: ", names, ")");
  }
  if (table.columns.size() < 2) fail("CSV: the table needs a column besides the target");
  const std::size_t t = static_cast<std::size_t>(it - table.columns.begin());
  const std::size_t rows = table.values.shape()[0], cols = table.columns.size();
  Array<float> x = Array<float>::from_shape({rows, cols - 1});
  Array<float> y = Array<float>::from_shape({rows, 1});
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c = 0, k = 0; c < cols; ++c) {
      if (c == t)
        y(r, 0) = static_cast<float>(table.values(r, c));
      else
        x(r, k++) = static_cast<float>(table.values(r, c));
    }
  return std::make_shared<Dataset<float>>(std::move(x), std::move(y));
}

namespace {

/// The rows of a file of whitespace-separated numbers (gzip-compressed when it starts with the
/// gzip magic), each of `columns` finite numbers.
std::vector<double> read_number_rows(const std::string& path, std::size_t columns,
                                     std::size_t& rows) {
  Input input(path);
  std::istream& in = input.in;
  std::vector<double> values;
  rows = 0;
  try {
    std::string line;
    for (std::size_t line_no = 1; std::getline(in, line); ++line_no) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      std::istringstream fields(line);
      std::string field;
      std::size_t count = 0;
      while (fields >> field) {
        if (++count > columns) break;
        char* end = nullptr;
        const double v = std::strtod(field.c_str(), &end);
        if (*end != '\0' || !std::isfinite(v))
          fail("'", path, "' line ", line_no, ", field ", count, ": '", field,
               "' is not a finite number");
        if (!decimal(field))
          fail("'", path, "' line ", line_no, ", field ", count, ": '", field,
               "' is not a decimal number (hexadecimal and other forms are refused)");
        values.push_back(v);
      }
      if (count != columns)
        fail("'", path, "' line ", line_no, ": ", count > columns ? "more than " : "",
             count > columns ? columns : count, " numbers, expected ", columns);
      ++rows;
    }
  } catch (const std::ios::failure& e) {
    fail("'", path, "': corrupt or truncated gzip data (", e.what(), ")");
  }
  if (rows == 0) fail("'", path, "' has no rows");
  return values;
}

}  // namespace

CsvTable load_diabetes(const std::string& dir) {
  namespace fs = std::filesystem;
  auto path = [&](const char* name) {
    const std::string p = (fs::path(dir) / name).string();
    if (!fs::exists(p))
      fail("'", p, "' not found",
           dir == sklearn_data_dir ? " (sudo apt-get install python3-sklearn provides it)" : "");
    return p;
  };
  const std::string data_path = path("diabetes_data_raw.csv.gz");
  const std::string target_path = path("diabetes_target.csv.gz");
  std::size_t rows = 0, targets = 0;
  const std::vector<double> data = read_number_rows(data_path, 10, rows);
  const std::vector<double> target = read_number_rows(target_path, 1, targets);
  if (rows != targets) fail("'", data_path, "' has ", rows, " rows, '", target_path, "' ", targets);
  CsvTable table;
  table.columns = {"age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6", "target"};
  table.values = Array<double>::from_shape({rows, 11});
  for (std::size_t r = 0; r < rows; ++r) {
    for (std::size_t c = 0; c < 10; ++c) table.values(r, c) = data[r * 10 + c];
    table.values(r, 10) = target[r];
  }
  return table;
}

}  // namespace ad::nn::datasets
