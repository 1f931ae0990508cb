// IDX (raw and gzip) and CSV readers, with small files made here, and their error messages.
#include <boost/iostreams/filter/gzip.hpp>
#include <boost/iostreams/filtering_stream.hpp>
#include <boost/test/unit_test.hpp>

#include <filesystem>
#include <fstream>

#include "helpers.hpp"
#include "nn/datasets.hpp"

namespace fs = std::filesystem;
namespace io = boost::iostreams;
namespace ds = ad::nn::datasets;

namespace {

std::string dir() {
  const std::string d = std::string(AD_BINARY_DIR) + "/tests/datasets_files";
  fs::create_directories(d);
  return d;
}

/// IDX bytes: magic 0 0 8 ndim, big-endian dims, then the data (count bytes, value i % 251).
std::string idx_bytes(std::vector<std::uint32_t> dims, std::size_t count, std::uint8_t type = 8) {
  std::string s{'\0', '\0', static_cast<char>(type), static_cast<char>(dims.size())};
  for (auto d : dims)
    for (int b = 3; b >= 0; --b) s.push_back(static_cast<char>((d >> (8 * b)) & 0xff));
  for (std::size_t i = 0; i < count; ++i) s.push_back(static_cast<char>(i % 251));
  return s;
}

void write(const std::string& path, const std::string& bytes, bool gzip = false) {
  std::ofstream file(path, std::ios::binary);
  if (!gzip) {
    file << bytes;
    return;
  }
  io::filtering_ostream out;
  out.push(io::gzip_compressor());
  out.push(file);
  out << bytes;
}

bool says(const ad::Error& e, std::initializer_list<std::string> parts) {
  std::string m = e.what();
  for (const auto& p : parts)
    if (m.find(p) == std::string::npos) return false;
  return true;
}

/// A folder with a small MNIST-format split: n images of 28×28 and m labels.
std::string mnist_folder(const std::string& name, std::uint32_t n, std::uint32_t m, bool gzip) {
  const std::string d = dir() + "/" + name;
  fs::remove_all(d);
  fs::create_directories(d);
  const std::string ext = gzip ? ".gz" : "";
  write(d + "/train-images-idx3-ubyte" + ext, idx_bytes({n, 28, 28}, n * 784), gzip);
  write(d + "/train-labels-idx1-ubyte" + ext, idx_bytes({m}, m), gzip);
  return d;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(datasets)

BOOST_AUTO_TEST_CASE(idx_raw_and_gzip) {
  for (bool gzip : {false, true}) {
    const std::string path = dir() + (gzip ? "/a.idx.gz" : "/a.idx");
    write(path, idx_bytes({3, 4, 5}, 60), gzip);
    ad::Array<std::uint8_t> a = ds::read_idx(path);
    BOOST_TEST(a.shape() == ad::Shape({3, 4, 5}));
    BOOST_TEST(int(a(2, 3, 4)) == 59);
  }
}

BOOST_AUTO_TEST_CASE(idx_errors_name_the_file) {
  const std::string path = dir() + "/bad.idx";
  write(path, "\x01\x02\x08\x01");
  BOOST_CHECK_EXCEPTION(ds::read_idx(path), ad::Error, [&](const ad::Error& e) {
    return says(e, {path, "magic"});
  });
  write(path, idx_bytes({10}, 10, 0x0d));
  BOOST_CHECK_EXCEPTION(ds::read_idx(path), ad::Error, [&](const ad::Error& e) {
    return says(e, {path, "unsigned bytes"});
  });
  write(path, idx_bytes({4, 28, 28}, 3000));
  BOOST_CHECK_EXCEPTION(ds::read_idx(path), ad::Error, [&](const ad::Error& e) {
    return says(e, {path, "(4,28,28)", "3136 bytes", "only 3000", "truncated"});
  });
  write(path, idx_bytes({2}, 5));
  BOOST_CHECK_EXCEPTION(ds::read_idx(path), ad::Error, [&](const ad::Error& e) {
    return says(e, {path, "(2)", "more"});
  });
  // A gzip stream cut in half.
  const std::string gz = dir() + "/cut.idx.gz";
  write(gz, idx_bytes({50, 28, 28}, 50 * 784), true);
  fs::resize_file(gz, fs::file_size(gz) / 2);
  BOOST_CHECK_EXCEPTION(ds::read_idx(gz), ad::Error,
                        [&](const ad::Error& e) { return says(e, {gz}); });
  BOOST_CHECK_EXCEPTION(ds::read_idx(dir() + "/missing.idx"), ad::Error, [](const ad::Error& e) {
    return says(e, {"missing.idx", "cannot open"});
  });
}

BOOST_AUTO_TEST_CASE(mnist_split_and_dataset) {
  const std::string d = mnist_folder("mnist_ok", 6, 6, true);
  auto split = ds::load_mnist(d, true);
  BOOST_TEST(split.images.shape() == ad::Shape({6, 28, 28}));
  BOOST_TEST(split.labels(5) == 5.0f);
  auto flat = ds::mnist_dataset(split, false, 4);
  BOOST_TEST(flat->size() == 4u);
  BOOST_TEST(flat->sample_shape() == ad::Shape({784}));
  auto images = ds::mnist_dataset(split, true);
  BOOST_TEST(images->sample_shape() == ad::Shape({1, 28, 28}));
  BOOST_TEST(images->scale() == 1.0 / 255);
  const std::string raw = mnist_folder("mnist_raw", 2, 2, false);  // uncompressed also works
  BOOST_TEST(ds::load_mnist(raw, true).images.shape()[0] == 2u);
}

BOOST_AUTO_TEST_CASE(mnist_errors) {
  const std::string d = mnist_folder("mnist_counts", 5, 4, false);
  BOOST_CHECK_EXCEPTION(ds::load_mnist(d, true), ad::Error, [](const ad::Error& e) {
    return says(e, {"5 images", "4 labels"});
  });
  BOOST_CHECK_EXCEPTION(ds::load_mnist(d, false), ad::Error, [&](const ad::Error& e) {
    return says(e, {"missing", "t10k-images-idx3-ubyte", "--data-dir"});
  });
  // Labels stored as images: the dimensions are checked.
  write(d + "/train-labels-idx1-ubyte", idx_bytes({5, 2}, 10));
  BOOST_CHECK_EXCEPTION(ds::load_mnist(d, true), ad::Error,
                        [](const ad::Error& e) { return says(e, {"1 dimension"}); });
  // Images of another size (once: a shape error of the first linear layer) name the file.
  write(d + "/train-images-idx3-ubyte", idx_bytes({5, 14, 14}, 5 * 196));
  write(d + "/train-labels-idx1-ubyte", idx_bytes({5}, 5));
  BOOST_CHECK_EXCEPTION(ds::load_mnist(d, true), ad::Error, [&](const ad::Error& e) {
    return says(e, {d + "/train-images-idx3-ubyte", "expected 28x28 images", "found 14x14"});
  });
}

BOOST_AUTO_TEST_CASE(the_default_folder_hint) {
  // When the default folder lacks the files the message says how to install them; when it has
  // them (the test machine installs the package), they load.
  if (!fs::exists(std::string(ds::fashion_mnist_dir) + "/t10k-images-idx3-ubyte.gz")) {
    BOOST_CHECK_EXCEPTION(
        ds::load_mnist(ds::fashion_mnist_dir, false), ad::Error,
        [](const ad::Error& e) { return says(e, {"apt-get install dataset-fashion-mnist"}); });
  } else {
    auto test = ds::load_mnist(ds::fashion_mnist_dir, false);
    BOOST_TEST(test.images.shape() == ad::Shape({10000, 28, 28}));
  }
}

BOOST_AUTO_TEST_CASE(csv_tables) {
  const std::string path = dir() + "/ok.csv";
  write(path, "x1, x2,y\n1,2,3\n4,5.5,-6e-1\n\n7,8,9\n");
  auto t = ds::read_csv(path);
  BOOST_TEST(t.columns == (std::vector<std::string>{"x1", "x2", "y"}));
  BOOST_TEST(t.values.shape() == ad::Shape({3, 3}));
  BOOST_TEST(t.values(1, 2) == -0.6);
  auto data = ds::csv_dataset(t, "x2");
  BOOST_TEST(data->inputs().shape() == ad::Shape({3, 2}));
  BOOST_TEST(data->inputs()(1, 1) == -0.6f);
  BOOST_TEST(data->targets()(1, 0) == 5.5f);
  BOOST_CHECK_EXCEPTION(ds::csv_dataset(t, "z"), ad::Error, [](const ad::Error& e) {
    return says(e, {"no column 'z'", "x1, x2, y"});
  });
}

BOOST_AUTO_TEST_CASE(csv_errors_name_the_line) {
  const std::string path = dir() + "/bad.csv";
  write(path, "a,b\n1,2\n3\n");
  BOOST_CHECK_EXCEPTION(ds::read_csv(path), ad::Error, [&](const ad::Error& e) {
    return says(e, {path, "line 3", "1 fields", "header has 2"});
  });
  write(path, "a,b\n1,2\n3,four\n");
  BOOST_CHECK_EXCEPTION(ds::read_csv(path), ad::Error, [&](const ad::Error& e) {
    return says(e, {path, "line 3", "column 2 ('b')", "'four' is not a number"});
  });
  write(path, "a,b\n1,2,\n");
  BOOST_CHECK_EXCEPTION(ds::read_csv(path), ad::Error, [&](const ad::Error& e) {
    return says(e, {"line 2", "3 fields"});
  });
  write(path, "");
  BOOST_CHECK_EXCEPTION(ds::read_csv(path), ad::Error,
                        [&](const ad::Error& e) { return says(e, {"empty"}); });
  write(path, "a,b\n");
  BOOST_CHECK_EXCEPTION(ds::read_csv(path), ad::Error,
                        [&](const ad::Error& e) { return says(e, {"no rows"}); });
  BOOST_CHECK_EXCEPTION(ds::read_csv(dir() + "/nope.csv"), ad::Error,
                        [](const ad::Error& e) { return says(e, {"nope.csv"}); });
}

BOOST_AUTO_TEST_CASE(idx_dimensions_are_checked_against_the_file_before_allocating) {
  const std::string path = dir() + "/huge.idx";
  // (4, 2^31, 2^31) overflows to 0 bytes: once accepted with no data (UB in the strides).
  write(path, idx_bytes({4, 2147483648u, 2147483648u}, 0));
  BOOST_CHECK_EXCEPTION(ds::read_idx(path), ad::Error, [&](const ad::Error& e) {
    return says(e, {path, "(4,2147483648,2147483648)", "more bytes than can be counted"});
  });
  // Large but countable dimensions with a few bytes: refused before allocating (once only
  // std::bad_alloc, or gigabytes allocated), raw and gzip.
  for (bool gzip : {false, true}) {
    write(path, idx_bytes({60000, 28, 2800}, 100), gzip);
    BOOST_CHECK_EXCEPTION(ds::read_idx(path), ad::Error, [&](const ad::Error& e) {
      return says(e, {path, "(60000,28,2800)", "4704000000 bytes"});
    });
  }
  // An empty array whose other extents overflow xtensor's signed strides (a fuzzer's find).
  write(path, idx_bytes({0, 196608, 198665, 168496141, 235868177}, 0));
  BOOST_CHECK_EXCEPTION(ds::read_idx(path), ad::Error, [&](const ad::Error& e) {
    return says(e, {path, "more bytes than can be counted"});
  });
  write(path, idx_bytes({}, 0));
  BOOST_CHECK_EXCEPTION(ds::read_idx(path), ad::Error, [&](const ad::Error& e) {
    return says(e, {path, "0 dimensions"});
  });
  BOOST_CHECK_EXCEPTION(ds::read_idx(dir()), ad::Error,
                        [&](const ad::Error& e) { return says(e, {"is a directory"}); });
}

BOOST_AUTO_TEST_CASE(csv_cells_must_be_finite_numbers) {
  const std::string path = dir() + "/cells.csv";
  const std::vector<std::pair<std::string, std::string>> cells = {
      {"1e400", "out of the range"},
      {"nan", "not a finite number"},
      {"-inf", "not a finite number"},
      {"inf", "not a finite number"},
      {"0x10", "not a decimal number"},
      {"1e", "not a number"},
      {".", "not a number"},
      {"0x1p3", "not a decimal number"}};
  for (const auto& [cell, why] : cells) {
    write(path, "a,b\n1,2\n3," + cell + "\n");
    BOOST_CHECK_EXCEPTION(ds::read_csv(path), ad::Error, [&](const ad::Error& e) {
      return says(e, {path, "line 3", "column 2 ('b')", "'" + cell + "'", why});
    });
  }
  // Decimal forms are taken.
  write(path, "a,b\n-1.5,+2e3\n.5,3.\n");
  auto decimals = ds::read_csv(path);
  BOOST_TEST(decimals.values(0, 1) == 2000.0);
  BOOST_TEST(decimals.values(1, 0) == 0.5);
  // A repeated column name is refused, naming both.
  write(path, "a,b,a\n1,2,3\n");
  BOOST_CHECK_EXCEPTION(ds::read_csv(path), ad::Error, [&](const ad::Error& e) {
    return says(e, {path, "line 1", "column 3 ('a') has the name of column 1"});
  });
  // A UTF-8 byte-order mark (spreadsheet programs write one) is not part of the first name.
  write(path, "\xEF\xBB\xBFy,a\n1,2\n");
  auto t = ds::read_csv(path);
  BOOST_TEST(t.columns[0] == "y");
  BOOST_CHECK_NO_THROW(ds::csv_dataset(t, "y"));
  BOOST_CHECK_EXCEPTION(ds::read_csv(dir()), ad::Error,
                        [&](const ad::Error& e) { return says(e, {"is a directory"}); });
}

BOOST_AUTO_TEST_CASE(diabetes) {
  // The package's files when they are there (the test machine installs python3-sklearn).
  if (fs::exists(std::string(ds::sklearn_data_dir) + "/diabetes_target.csv.gz")) {
    auto t = ds::load_diabetes();
    BOOST_TEST(t.values.shape() == ad::Shape({442, 11}));
    BOOST_TEST(t.columns[2] == "bmi");
    // The first patient as the raw file and the article list them.
    const double first[] = {59, 2, 32.1, 101, 157, 93.2, 38, 4, 4.8598, 87, 151};
    for (std::size_t c = 0; c < 11; ++c) BOOST_TEST(t.values(0, c) == first[c]);
  } else {
    BOOST_CHECK_EXCEPTION(ds::load_diabetes(), ad::Error, [](const ad::Error& e) {
      return says(e, {"apt-get install python3-sklearn"});
    });
  }
  // Files written here, compressed or not: good ones, then each kind of bad line.
  const std::string d = dir() + "/diabetes";
  fs::remove_all(d);
  fs::create_directories(d);
  auto files = [&](const std::string& data, const std::string& target, bool gzip) {
    write(d + "/diabetes_data_raw.csv.gz", data, gzip);
    write(d + "/diabetes_target.csv.gz", target, gzip);
  };
  const std::string row = "1 2 3 4 5 6 7 8 9 10\n";
  files(row + "\n" + row, "1.5e+02\n7.5e+01\n", true);
  auto t = ds::load_diabetes(d);
  BOOST_TEST(t.values.shape() == ad::Shape({2, 11}));
  BOOST_TEST(t.values(1, 10) == 75.0);
  auto refused = [&](std::initializer_list<std::string> parts) {
    BOOST_CHECK_EXCEPTION(ds::load_diabetes(d), ad::Error,
                          [&](const ad::Error& e) { return says(e, parts); });
  };
  files(row + "1 2 3\n", "1\n2\n", false);
  refused({"diabetes_data_raw.csv.gz' line 2: 3 numbers, expected 10"});
  files(row + row + "11\n", "1\n2\n", false);
  refused({"line 3: 1 numbers, expected 10"});
  files(row + "1 2 3 4 5 6 7 8 9 10 11\n", "1\n2\n", false);
  refused({"line 2: more than 10 numbers"});
  files(row + "1 2 x 4 5 6 7 8 9 10\n", "1\n2\n", false);
  refused({"line 2, field 3: 'x' is not a finite number"});
  files(row + "1 2 nan 4 5 6 7 8 9 10\n", "1\n2\n", false);
  refused({"'nan' is not a finite number"});
  files(row, "1\n2\n", false);
  refused({"has 1 rows", "diabetes_target.csv.gz' 2"});
  files("", "", false);
  refused({"has no rows"});
  files(row, "1\n", true);
  fs::resize_file(d + "/diabetes_target.csv.gz", fs::file_size(d + "/diabetes_target.csv.gz") / 2);
  refused({"corrupt or truncated gzip"});
  fs::remove(d + "/diabetes_target.csv.gz");
  refused({"diabetes_target.csv.gz' not found"});
}

BOOST_AUTO_TEST_SUITE_END()
