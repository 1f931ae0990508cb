// safetensors: a module's tensors round trip (float and double, buffers, renamed), the file is the
// reference layout byte for byte, and every malformed file is an error that says what is wrong.
#include <boost/test/unit_test.hpp>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>

#include "helpers.hpp"
#include "interop/safetensors.hpp"
#include "nn/nn.hpp"

namespace {

using ad::Array;
using ad::Shape;
namespace nn = ad::nn;
namespace io = ad::interop;

std::string scratch(const std::string& name) {
  return std::string(AD_BINARY_DIR) + "/test_safetensors_" + name;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), bytes.size());
}

/// A file of the header `json` (length prefix added) and `data` bytes.
std::string file_of(const std::string& json, const std::string& data) {
  std::string out(8, '\0');
  for (int k = 0; k < 8; ++k) out[k] = char((json.size() >> (8 * k)) & 0xFF);
  return out + json + data;
}

template <class T>
std::shared_ptr<nn::Sequential<T>> model(std::uint64_t seed) {
  nn::Generator rng(seed);
  return std::make_shared<nn::Sequential<T>>(std::make_shared<nn::Linear<T>>(3, 4, rng),
                                             std::make_shared<nn::BatchNorm1d<T>>(4),
                                             std::make_shared<nn::Linear<T>>(4, 2, rng, false));
}

template <class T>
bool same_state(const nn::Module<T>& a, const nn::Module<T>& b) {
  auto pa = a.named_parameters(), pb = b.named_parameters();
  for (std::size_t i = 0; i < pa.size(); ++i)
    if (!ad::test::all_close(pa[i].second.value(), pb[i].second.value(), 0, 0)) return false;
  auto ba = a.named_buffers(), bb = b.named_buffers();
  for (std::size_t i = 0; i < ba.size(); ++i)
    if (!ad::test::all_close(*ba[i].second, *bb[i].second, 0, 0)) return false;
  return true;
}

BOOST_AUTO_TEST_CASE(a_module_round_trips) {
  auto a = model<float>(1), b = model<float>(2);
  (*a->named_buffers()[0].second)(1) = 0.25f;  // a running mean that is not the initial one
  io::SafetensorsOptions options;
  options.metadata = {{"format", "pt"}};
  const std::string path = scratch("round_trip.safetensors");
  io::save_safetensors(*a, path, options);
  BOOST_TEST(!same_state(*a, *b));
  io::load_safetensors(*b, path);
  BOOST_TEST(same_state(*a, *b));
  const io::SafetensorsFile file = io::read_safetensors(path);
  BOOST_TEST(file.metadata.at("format") == "pt");
  // 0.weight, 0.bias, 1.weight, 1.bias (BatchNorm's), 2.weight, 1.running_mean, 1.running_var
  BOOST_TEST(file.tensors.size() == 7u);
  BOOST_TEST(file.tensors.at("0.weight").dtype == "F32");
  BOOST_TEST(file.tensors.at("0.weight").shape == (Shape{4, 3}));
  // Doubles, and a double file into a float module.
  auto d = model<double>(3), e = model<double>(4);
  io::save_safetensors(*d, path);
  io::load_safetensors(*e, path);
  BOOST_TEST(same_state(*d, *e));
  BOOST_TEST(io::read_safetensors(path).tensors.at("2.weight").dtype == "F64");
  io::load_safetensors(*b, path);
  BOOST_TEST(b->named_parameters()[0].second.value()(0, 0) ==
             static_cast<float>(d->named_parameters()[0].second.value()(0, 0)));
  std::remove(path.c_str());
}

BOOST_AUTO_TEST_CASE(names_map_and_strictness) {
  auto a = model<float>(1), b = model<float>(2);
  io::SafetensorsOptions renamed;
  renamed.rename = [](const std::string& n) { return "model." + n; };
  renamed.buffers = false;
  const std::string path = scratch("renamed.safetensors");
  io::save_safetensors(*a, path, renamed);
  BOOST_TEST(io::read_safetensors(path).tensors.count("model.0.weight") == 1u);
  // Without the mapping nothing matches; strict names what is missing and what is extra.
  BOOST_CHECK_EXCEPTION(io::load_safetensors(*b, path), ad::Error, [](const ad::Error& e) {
    const std::string m = e.what();
    return m.find("missing 0.weight") != std::string::npos &&
           m.find("not in the module: model.0.bias") != std::string::npos;
  });
  BOOST_TEST(!same_state(*a, *b));  // nothing changed
  // The buffers are missing from the file: strict refuses, lenient loads the parameters.
  renamed.buffers = true;
  BOOST_CHECK_THROW(io::load_safetensors(*b, path, renamed), ad::Error);
  renamed.strict = false;
  io::load_safetensors(*b, path, renamed);
  BOOST_TEST(ad::test::all_close(a->named_parameters()[0].second.value(),
                                 b->named_parameters()[0].second.value(), 0, 0));
  // A shape that differs is an error naming the tensor.
  nn::Generator rng(5);
  nn::Linear<float> wide(3, 5, rng);
  io::SafetensorsOptions lenient;
  lenient.strict = false;
  lenient.rename = [](const std::string& n) { return "model.0." + n; };
  BOOST_CHECK_EXCEPTION(io::load_safetensors(wide, path, lenient), ad::Error,
                        [](const ad::Error& e) {
                          return std::string(e.what()).find(
                                     "tensor 'model.0.weight' has shape "
                                     "(4,3), the module's is (5,3)") != std::string::npos;
                        });
  std::remove(path.c_str());
}

BOOST_AUTO_TEST_CASE(the_layout_is_the_reference_one) {
  // A file as the safetensors package writes it: the header padded with spaces to 8 bytes.
  io::SafetensorsFile f;
  io::SafeTensor t{"F32", Shape{2}, std::string("\x00\x00\x80\x3f\x00\x00\x00\x40", 8)};
  f.tensors.emplace("a", t);
  f.metadata["k"] = "v\"";
  const std::string path = scratch("layout.safetensors");
  io::write_safetensors(path, f);
  const std::string json =
      "{\"__metadata__\":{\"k\":\"v\\\"\"},\"a\":{\"dtype\":\"F32\",\"shape\":[2],"
      "\"data_offsets\":[0,8]}}";
  std::string padded = json;
  padded.resize((json.size() + 7) / 8 * 8, ' ');
  BOOST_TEST(read_bytes(path) == file_of(padded, t.bytes));
  // F16 and BF16 convert exactly: 1.0 and -2.0, and 0.5 (a subnormal-free value) as BF16.
  write_bytes(path, file_of("{\"w\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}",
                            std::string("\x00\x3c\x00\xc0", 4)));
  nn::Generator rng(1);
  nn::Linear<float> l(2, 1, rng, false);
  io::SafetensorsOptions o;
  o.rename = [](const std::string&) { return std::string("w"); };
  // (1, 2) weight against a (2) tensor: a shape error.
  BOOST_CHECK_THROW(io::load_safetensors(l, path, o), ad::Error);
  write_bytes(path, file_of("{\"w\":{\"dtype\":\"BF16\",\"shape\":[1,2],\"data_offsets\":[0,4]}}",
                            std::string("\x00\x3f\x00\xc0", 4)));
  io::load_safetensors(l, path, o);
  BOOST_TEST(l.weight().value()(0, 0) == 0.5f);
  BOOST_TEST(l.weight().value()(0, 1) == -2.0f);
  write_bytes(path, file_of("{\"w\":{\"dtype\":\"F16\",\"shape\":[1,2],\"data_offsets\":[0,4]}}",
                            std::string("\x00\x3c\x01\x00", 4)));
  io::load_safetensors(l, path, o);
  BOOST_TEST(l.weight().value()(0, 0) == 1.0f);
  BOOST_TEST(l.weight().value()(0, 1) == std::ldexp(1.0f, -24));  // the smallest subnormal
  std::remove(path.c_str());
}

BOOST_AUTO_TEST_CASE(malformed_files_are_errors_that_say_why) {
  const std::string path = scratch("bad.safetensors");
  const std::string ok = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
  const std::string eight(8, '\0');
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"short", "too short for a header length"},
      {file_of(ok, eight).substr(0, 20), "but the file holds"},
      {std::string("\xff\xff\xff\xff\xff\xff\xff\x7f", 8) + "{}", "larger than the"},
      {file_of(ok, std::string(4, '\0')), "outside the 4 bytes of data"},
      {file_of(ok, std::string(12, '\0')), "cover 8 of the 12 bytes"},
      {file_of("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", eight),
       "(12 bytes) but its data_offsets [0, 8] hold 8"},
      {file_of("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[2,6]}}",
               eight),
       "inside the tensor before it"},
      {file_of("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", eight),
       "leaving a hole before it"},
      {file_of("{\"a\":{\"dtype\":\"X9\",\"shape\":[2],\"data_offsets\":[0,8]}}", eight),
       "unknown dtype 'X9'"},
      {file_of("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"a\":{}}", eight),
       "tensor 'a' appears twice"},
      {file_of("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", eight), "needs dtype, shape"},
      {file_of("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", eight),
       "expected a non-negative integer"},
      {file_of("{\"a\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", eight),
       "expected an integer"},
      {file_of("{\"a\":{\"dtype\":\"F32\",\"shape\":[18446744073709551615,2],"
               "\"data_offsets\":[0,8]}}",
               eight),
       "an extent too large"},
      {file_of("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
               "\"data_offsets\":[0,8]}}",
               eight),
       "is too large"},
      {file_of("{\"a\":{\"dtype\":\"F32\",\"shape\":[0,4294967296,4294967296],"
               "\"data_offsets\":[0,0]}}",
               ""),
       "is too large"},
      {file_of("{\"a\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],"
               "\"data_offsets\":[0,8]}}",
               eight),
       "an integer too large"},
      {file_of("{\"__metadata__\":{\"k\":1}}", ""), "a metadata value must be a string"},
      {file_of("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}} x", eight),
       "unexpected bytes after"},
      {file_of("{\"a\\u12\":{}}", ""), "four hex digits"},
      {file_of("{\"a\\ud800\":{}}", ""), "lone surrogate"},
      {file_of("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]", eight),
       "the header ends too early"},
      {file_of("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,9]}}", eight),
       "data_offsets needs two numbers"},
      {file_of("[]", ""), "expected '{'"},
  };
  for (const auto& [bytes, message] : cases) {
    write_bytes(path, bytes);
    BOOST_CHECK_EXCEPTION(io::read_safetensors(path), ad::Error, [&](const ad::Error& e) {
      const bool found = std::string(e.what()).find(message) != std::string::npos;
      if (!found) BOOST_TEST_MESSAGE("got: " << e.what() << " wanted: " << message);
      return found && std::string(e.what()).find(path) != std::string::npos;
    });
  }
  BOOST_CHECK_THROW(io::read_safetensors(scratch("missing.safetensors")), ad::Error);
  // The empty file of the reference implementation (no tensors) is valid.
  write_bytes(path, file_of("{}      ", ""));
  BOOST_TEST(io::read_safetensors(path).tensors.empty());
  std::remove(path.c_str());
}

BOOST_AUTO_TEST_CASE(a_file_of_the_reference_implementation) {
  // data/reference.safetensors was written by the safetensors package (scripts/check_interop.py
  // makes it again): read, its values are the ones written, and written again it is the same
  // bytes.
  const std::string reference =
      std::string(AD_SOURCE_DIR) + "/tests/interop/data/reference.safetensors";
  const io::SafetensorsFile f = io::read_safetensors(reference);
  BOOST_TEST(f.metadata.at("format") == "np");
  BOOST_TEST(f.tensors.size() == 4u);
  const io::SafeTensor& a = f.tensors.at("a");
  BOOST_TEST(a.dtype == "F32");
  BOOST_TEST(a.shape == (Shape{2, 3}));
  for (int i = 0; i < 6; ++i) {
    float v;
    std::memcpy(&v, a.bytes.data() + 4 * i, 4);
    BOOST_TEST(v == (float(i) - 2.5f) / 7.0f);
  }
  BOOST_TEST(f.tensors.at("ids").dtype == "I64");
  BOOST_TEST(f.tensors.at("half").shape == (Shape{3}));
  const std::string path = scratch("again.safetensors");
  io::write_safetensors(path, f);
  BOOST_TEST((read_bytes(path) == read_bytes(reference)));
  std::remove(path.c_str());
}

}  // namespace
