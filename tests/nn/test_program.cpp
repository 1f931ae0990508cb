// nn::trace: the programs of the layers and models, with their parameters named by module path,
// run again at other batch sizes to the bit of the modules' own forward.
#include <boost/test/unit_test.hpp>

#include "helpers.hpp"
#include "nn/nn.hpp"

namespace {

using ad::Array;
using ad::Shape;
using ad::Variable;
namespace nn = ad::nn;
using F = Variable<float>;

Array<float> input(const Shape& shape, std::uint64_t seed) {
  return ad::test::uniform<float>(shape, -1.0, 1.0, seed);
}

bool same_bits(const Array<float>& a, const Array<float>& b) {
  return ad::test::all_close(a, b, 0.0, 0.0);
}

/// The module's program at batch 2 runs as the module does at batches 2, 3 and 1.
void check_model(nn::Module<float>& model, const std::function<Array<float>(std::size_t)>& make) {
  model.eval();
  ad::Program<float> program = nn::trace(model, F(make(2)));
  BOOST_TEST_MESSAGE(program.str());
  for (std::size_t batch : {2, 3, 1}) {
    const F x(make(batch));
    BOOST_TEST(same_bits(program(x).value(), model(x).value()), "batch " << batch);
  }
  // Every parameter the program reads is the model's, under its name.
  const auto named = model.named_parameters();
  for (const auto& [name, p] : program.parameters) {
    auto it =
        std::find_if(named.begin(), named.end(), [&](const auto& e) { return e.first == name; });
    BOOST_TEST((it != named.end() && it->second.impl_ptr() == p.impl_ptr()), name);
  }
}

BOOST_AUTO_TEST_CASE(mlp_and_cnn) {
  nn::Generator rng(1);
  auto mlp = std::make_shared<nn::Sequential<float>>(
      std::make_shared<nn::Linear<float>>(12, 8, ad::Activation::relu, rng),
      std::make_shared<nn::Linear<float>>(8, 6, rng), std::make_shared<nn::Tanh<float>>(),
      std::make_shared<nn::Dropout<float>>(0.5), std::make_shared<nn::Linear<float>>(6, 3, rng));
  check_model(*mlp, [](std::size_t b) { return input({b, 12}, 10 + b); });
  ad::Program<float> p = nn::trace(*mlp, F(input({2, 12}, 1)));
  // The Linear built with its ReLU is one node, and its parameters keep their module paths.
  BOOST_TEST(p.str().find("%0: f32[B,8] = linear(x, 0.weight, 0.bias) activation=relu") !=
             std::string::npos);

  auto cnn = std::make_shared<nn::Sequential<float>>(
      std::make_shared<nn::Conv2d<float>>(1, 4, 3, rng, 1, 1), std::make_shared<nn::ReLU<float>>(),
      std::make_shared<nn::MaxPool2d<float>>(2), std::make_shared<nn::BatchNorm2d<float>>(4),
      std::make_shared<nn::AvgPool2d<float>>(2), std::make_shared<nn::Flatten<float>>(),
      std::make_shared<nn::Linear<float>>(4 * 2 * 2, 5, rng));
  cnn->train();
  (*cnn)(F(input({4, 1, 8, 8}, 3)));  // running statistics that are not the initial ones
  check_model(*cnn, [](std::size_t b) { return input({b, 1, 8, 8}, 20 + b); });
}

BOOST_AUTO_TEST_CASE(sequence_models) {
  nn::Generator rng(2);
  struct Lstm : nn::Module<float> {
    std::shared_ptr<nn::Embedding<float>> embed;
    std::shared_ptr<nn::LSTM<float>> lstm;
    std::shared_ptr<nn::Linear<float>> head;
    explicit Lstm(nn::Generator& rng)
        : embed(register_module("embed", std::make_shared<nn::Embedding<float>>(7, 4, rng))),
          lstm(register_module("lstm", std::make_shared<nn::LSTM<float>>(4, 5, rng, 2))),
          head(register_module("head", std::make_shared<nn::Linear<float>>(5, 7, rng))) {}
    F forward(const F& x) override {
      F h = (*head)((*lstm)((*embed)(x)));
      return ad::reshape(h, Shape{h.shape()[0] * h.shape()[1], h.shape()[2]});
    }
  } lstm(rng);
  check_model(lstm, [](std::size_t b) { return ad::test::token_ids({b, 6}, 7, 30 + b); });

  auto gru = std::make_shared<nn::GRU<float>>(3, 4, rng);
  check_model(*gru, [](std::size_t b) { return input({b, 5, 3}, 40 + b); });

  struct Block : nn::Module<float> {
    std::shared_ptr<nn::Embedding<float>> embed;
    std::shared_ptr<nn::PositionalEmbedding<float>> position;
    std::shared_ptr<nn::SinusoidalPositionalEncoding<float>> sinusoid =
        std::make_shared<nn::SinusoidalPositionalEncoding<float>>(16, 8);
    std::shared_ptr<nn::LayerNorm<float>> norm;
    std::shared_ptr<nn::MultiheadAttention<float>> attention;
    std::shared_ptr<nn::Linear<float>> up;
    std::shared_ptr<nn::GELU<float>> gelu = std::make_shared<nn::GELU<float>>();
    explicit Block(nn::Generator& rng)
        : embed(register_module("embed", std::make_shared<nn::Embedding<float>>(9, 8, rng))),
          position(register_module("position",
                                   std::make_shared<nn::PositionalEmbedding<float>>(16, 8, rng))),
          norm(register_module("norm", std::make_shared<nn::LayerNorm<float>>(Shape{8}))),
          attention(register_module(
              "attention", std::make_shared<nn::MultiheadAttention<float>>(8, 2, rng, true))),
          up(register_module("up", std::make_shared<nn::Linear<float>>(8, 16, rng))) {}
    F forward(const F& x) override {
      F h = (*sinusoid)((*position)((*embed)(x)));
      h = h + (*attention)((*norm)(h));
      return (*gelu)((*up)(h));
    }
  } block(rng);
  check_model(block, [](std::size_t b) { return ad::test::token_ids({b, 6}, 9, 50 + b); });
  ad::Program<float> p = nn::trace(block, F(ad::test::token_ids({2, 6}, 9, 1)));
  BOOST_TEST(p.str().find("attention.in_proj_weight: f32[24,8]") != std::string::npos);
  BOOST_TEST(p.str().find("= embedding(embed.weight, x)") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(norms_and_convolutions) {
  nn::Generator rng(3);
  auto model = std::make_shared<nn::Sequential<float>>(
      std::make_shared<nn::Conv1d<float>>(2, 4, 3, rng, 1, 1),
      std::make_shared<nn::GroupNorm<float>>(2, 4), std::make_shared<nn::LeakyReLU<float>>(0.1),
      std::make_shared<nn::BatchNorm1d<float>>(4), std::make_shared<nn::Softmax<float>>(1));
  check_model(*model, [](std::size_t b) { return input({b, 2, 7}, 60 + b); });
  auto transposed = std::make_shared<nn::Sequential<float>>(
      std::make_shared<nn::ConvTranspose2d<float>>(2, 3, 3, rng, 2, 1, 1),
      std::make_shared<nn::Sigmoid<float>>());
  check_model(*transposed, [](std::size_t b) { return input({b, 2, 4, 4}, 70 + b); });
}

BOOST_AUTO_TEST_CASE(a_program_trains_the_model_it_came_from) {
  nn::Generator rng(4);
  auto model = std::make_shared<nn::Sequential<float>>(
      std::make_shared<nn::Linear<float>>(3, 4, rng), std::make_shared<nn::Tanh<float>>(),
      std::make_shared<nn::Linear<float>>(4, 1, rng));
  ad::Program<float> program = nn::trace(*model, F(input({2, 3}, 1)));
  const F x(input({5, 3}, 2));
  ad::sum(program(x)).backward();
  std::vector<Array<float>> from_program;
  for (auto& p : model->parameters()) from_program.push_back(p.grad().value());
  model->zero_grad();
  ad::sum((*model)(x)).backward();
  const auto params = model->parameters();
  for (std::size_t i = 0; i < params.size(); ++i)
    BOOST_TEST(same_bits(from_program[i], params[i].grad().value()));
}

}  // namespace
