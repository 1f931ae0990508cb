// Checkpoints: round trip, read by NumPy, atomic saves, and clear errors that leave the model
// alone.
#include <boost/test/unit_test.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "helpers.hpp"
#include "nn/nn.hpp"
#include "nn/npz.hpp"

namespace fs = std::filesystem;
using ad::Array;
namespace nn = ad::nn;
using V = ad::Variable<float>;

namespace {

std::string temp_path(const std::string& name) {
  return std::string(AD_BINARY_DIR) + "/tests/" + name;
}

std::shared_ptr<nn::Sequential<float>> model(std::uint64_t seed) {
  nn::Generator rng(seed);
  return std::make_shared<nn::Sequential<float>>(std::make_shared<nn::Linear<float>>(3, 4, rng),
                                                 std::make_shared<nn::BatchNorm1d<float>>(4),
                                                 std::make_shared<nn::Dropout<float>>(0.2, seed),
                                                 std::make_shared<nn::Linear<float>>(4, 2, rng));
}

/// One SGD step with momentum, so that the optimizer has state to save.
std::unique_ptr<nn::SGD<float>> stepped(nn::Sequential<float>& m) {
  nn::SGDOptions o;
  o.lr = 0.1, o.momentum = 0.9;
  auto opt = std::make_unique<nn::SGD<float>>(m.parameters(), o);
  ad::sum(m(V(ad::test::uniform<float>({5, 3})))).backward();
  opt->step();
  return opt;
}

std::vector<Array<float>> values(const nn::Module<float>& m) {
  std::vector<Array<float>> out;
  for (const auto& p : m.parameters()) out.push_back(p.value());
  for (const auto& [n, b] : m.named_buffers()) out.push_back(*b);
  return out;
}

bool names(const ad::Error& e, std::initializer_list<std::string> parts) {
  std::string m = e.what();
  for (const auto& p : parts)
    if (m.find(p) == std::string::npos) return false;
  return true;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(checkpoint)

BOOST_AUTO_TEST_CASE(round_trip_with_optimizer_and_meta) {
  auto a = model(1);
  auto opt_a = stepped(*a);
  const std::string path = temp_path("ckpt_roundtrip.npz");
  nn::save_checkpoint(path, *a, opt_a.get(), {{"epoch", 7}});
  auto b = model(2);
  nn::SGDOptions o;
  o.lr = 0.1, o.momentum = 0.9;
  nn::SGD<float> opt_b(b->parameters(), o);
  auto meta = nn::load_checkpoint(path, *b, &opt_b);
  BOOST_TEST(meta.at("epoch") == 7.0);
  auto va = values(*a), vb = values(*b);
  for (std::size_t i = 0; i < va.size(); ++i) BOOST_TEST(va[i] == vb[i]);
  BOOST_TEST(opt_b.state()[0].step == 1u);
  BOOST_TEST(opt_b.state()[0].buffers.at("momentum_buffer") ==
             opt_a->state()[0].buffers.at("momentum_buffer"));
  BOOST_TEST((*b->named_states()[0].second)(0) == (*a->named_states()[0].second)(0));
  std::remove(path.c_str());
}

BOOST_AUTO_TEST_CASE(numpy_reads_it) {
  auto a = model(3);
  auto opt = stepped(*a);
  const std::string path = temp_path("ckpt_numpy.npz");
  nn::save_checkpoint(path, *a, opt.get(), {{"epoch", 2}});
  const std::string out = temp_path("ckpt_numpy.txt");
  const std::string cmd =
      "/usr/bin/python3 -c \"import numpy as np; d = np.load('" + path +
      "'); [print(k, d[k].dtype, d[k].shape, repr(float(d[k].ravel()[0])) if d[k].size else '-') "
      "for k in sorted(d.files)]\" > " +
      out;
  BOOST_REQUIRE(std::system(cmd.c_str()) == 0);
  std::ifstream in(out);
  std::map<std::string, std::string> lines;
  std::string line;
  while (std::getline(in, line)) lines[line.substr(0, line.find(' '))] = line;
  BOOST_TEST(lines.at("0.weight").find("float32 (4, 3)") != std::string::npos);
  BOOST_TEST(lines.at("1.running_var").find("float32 (4,)") != std::string::npos);
  BOOST_TEST(lines.at("2.calls").find("uint64 (1,)") != std::string::npos);
  BOOST_TEST(lines.at("meta/epoch").find("float64 () 2.0") != std::string::npos);
  BOOST_TEST(lines.at("optimizer/3.bias/momentum_buffer").find("float32 (2,)") !=
             std::string::npos);
  // The first value, as NumPy prints it, equals ours.
  const float w00 = a->parameters()[0].value()(0, 0);
  const std::string& l = lines.at("0.weight");
  BOOST_TEST(std::stof(l.substr(l.rfind(' ') + 1)) == w00);
  std::remove(path.c_str());
  std::remove(out.c_str());
}

BOOST_AUTO_TEST_CASE(saving_is_atomic) {
  const std::string dir = temp_path("ckpt_atomic");
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string path = dir + "/model.npz";
  auto a = model(4);
  nn::save_checkpoint(path, *a);
  nn::save_checkpoint(path, *a);  // over an existing file
  std::size_t files = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    ++files;
    BOOST_TEST(entry.path().filename() == "model.npz");  // no temporary left behind
  }
  BOOST_TEST(files == 1u);
  // A save that fails (its folder does not exist) throws and leaves nothing.
  BOOST_CHECK_THROW(nn::save_checkpoint(dir + "/missing/model.npz", *a), ad::Error);
  fs::remove_all(dir);
}

BOOST_AUTO_TEST_CASE(bad_files_throw_and_leave_the_model_untouched) {
  auto a = model(5);
  const std::string path = temp_path("ckpt_bad.npz");
  nn::save_checkpoint(path, *a);
  auto target = model(6);
  const auto original = values(*target);
  auto untouched = [&] {
    auto now = values(*target);
    for (std::size_t i = 0; i < now.size(); ++i)
      if (!(now[i] == original[i])) return false;
    return true;
  };

  // Missing file.
  BOOST_CHECK_EXCEPTION(nn::load_checkpoint(temp_path("nope.npz"), *target), ad::Error,
                        [](const ad::Error& e) { return names(e, {"nope.npz"}); });
  // A model with another layout: a missing entry, then a wrong shape.
  nn::Generator rng(1);
  nn::Sequential<float> other(std::make_shared<nn::Linear<float>>(3, 4, rng));
  auto entries = nn::npz::load(path);
  const std::string extra = temp_path("ckpt_extra.npz");
  nn::save_checkpoint(extra, other);
  BOOST_CHECK_EXCEPTION(nn::load_checkpoint(extra, *target), ad::Error, [](const ad::Error& e) {
    return names(e, {"'1.weight'", "missing"});
  });
  BOOST_CHECK_EXCEPTION(nn::load_checkpoint(path, other), ad::Error, [](const ad::Error& e) {
    return names(e, {"unexpected entry", "'1.weight'"});
  });
  for (auto& [name, e] : entries)
    if (name == "3.weight") e = nn::npz::from_array(Array<float>(xt::zeros<float>({2, 5})));
  const std::string shaped = temp_path("ckpt_shape.npz");
  nn::npz::save(shaped, entries);
  BOOST_CHECK_EXCEPTION(nn::load_checkpoint(shaped, *target), ad::Error, [](const ad::Error& e) {
    return names(e, {"'3.weight'", "(2,5)", "(2,4)"});
  });
  // Wrong dtype: float64 values for a float32 model.
  for (auto& [name, e] : entries)
    if (name == "3.weight") e = nn::npz::from_array(Array<double>(xt::zeros<double>({2, 4})));
  nn::npz::save(shaped, entries);
  BOOST_CHECK_EXCEPTION(nn::load_checkpoint(shaped, *target), ad::Error, [](const ad::Error& e) {
    return names(e, {"'3.weight'", "<f8", "<f4"});
  });
  // Truncated and corrupt archives.
  const auto size = fs::file_size(path);
  const std::string cut = temp_path("ckpt_cut.npz");
  fs::copy_file(path, cut, fs::copy_options::overwrite_existing);
  fs::resize_file(cut, size / 2);
  BOOST_CHECK_EXCEPTION(nn::load_checkpoint(cut, *target), ad::Error,
                        [](const ad::Error& e) { return names(e, {"ckpt_cut.npz"}); });
  const std::string flipped = temp_path("ckpt_flipped.npz");
  fs::copy_file(path, flipped, fs::copy_options::overwrite_existing);
  {
    // Flip bytes inside the first entry's data (its local header is 30 bytes + name + npy header).
    std::fstream f(flipped, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(30 + 12 + 128 + 4);
    const char junk[4] = {'\x55', '\x55', '\x55', '\x55'};
    f.write(junk, 4);
  }
  BOOST_CHECK_EXCEPTION(nn::load_checkpoint(flipped, *target), ad::Error,
                        [](const ad::Error& e) { return names(e, {"ckpt_flipped.npz"}); });
  const std::string junk = temp_path("ckpt_junk.npz");
  std::ofstream(junk) << "not a zip archive";
  BOOST_CHECK_EXCEPTION(nn::load_checkpoint(junk, *target), ad::Error,
                        [](const ad::Error& e) { return names(e, {"ckpt_junk.npz"}); });
  BOOST_TEST(untouched());
  for (const auto& p : {path, extra, shaped, cut, flipped, junk}) std::remove(p.c_str());
}

BOOST_AUTO_TEST_SUITE_END()
