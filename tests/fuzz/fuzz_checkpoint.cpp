// load_checkpoint into a small model with an optimizer: a crafted file must give ad::Error and
// leave the model untouched (checked here), or load.
#include <cstdlib>

#include "fuzz_common.hpp"
#include "nn/nn.hpp"

namespace {

struct Model {
  ad::nn::Generator rng{1};
  ad::nn::Sequential<float> net{std::make_shared<ad::nn::Linear<float>>(3, 4, rng),
                                std::make_shared<ad::nn::BatchNorm1d<float>>(4),
                                std::make_shared<ad::nn::Dropout<float>>(0.2, 1),
                                std::make_shared<ad::nn::Linear<float>>(4, 2, rng)};
  ad::nn::SGD<float> opt{net.parameters(), ad::nn::SGDOptions{0.1, 0.9}};
};

std::vector<ad::Array<float>> values(const ad::nn::Module<float>& m) {
  std::vector<ad::Array<float>> out;
  for (const auto& p : m.parameters()) out.push_back(p.value());
  for (const auto& [name, b] : m.named_buffers()) out.push_back(*b);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = fuzz::scratch(data, size, ".npz");
  Model m;
  const auto before = values(m.net);
  try {
    ad::nn::load_checkpoint(path, m.net, &m.opt);
  } catch (const ad::Error&) {
    if (values(m.net) != before) std::abort();  // a failed load must leave the model alone
  }
  return 0;
}
