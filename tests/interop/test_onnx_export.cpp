// ONNX export: the example models and a model of every exportable op pass ONNX's checker with
// strict shape inference, their batch axis symbolic; what has no ONNX equivalent is an error
// naming the node.
#include <boost/test/unit_test.hpp>

#include <cstdio>
#include <fstream>
#include <iterator>

#include "examples/models.hpp"
#include "helpers.hpp"
#include "interop/onnx.hpp"
#include "nn/nn.hpp"

namespace {

using ad::Array;
using ad::Shape;
using ad::Variable;
namespace nn = ad::nn;
using F = Variable<float>;

Array<float> input(const Shape& shape, std::uint64_t seed = 1) {
  return ad::test::uniform<float>(shape, -1.0, 1.0, seed);
}

/// The module's model, checked; returns the inferred shapes of its outputs.
std::vector<std::string> exported(nn::Module<float>& model, const Array<float>& x) {
  model.eval();
  const ad::Program<float> program = nn::trace(model, F(x));
  return ad::onnx::check(ad::onnx::to_model(program));
}

BOOST_AUTO_TEST_CASE(the_example_models_pass_the_checker) {
  nn::Generator rng(1);
  auto mlp = examples::make_mlp(rng);
  BOOST_TEST(exported(*mlp, input({2, 784})) == std::vector<std::string>{"batch,10"});
  auto cnn = examples::make_cnn(rng);
  BOOST_TEST(exported(*cnn, input({2, 1, 28, 28})) == std::vector<std::string>{"batch,10"});
  examples::LstmModel lstm(20, 8, 16, 2, rng);
  const auto lstm_shapes = exported(lstm, ad::test::token_ids({2, 5}, 20));
  BOOST_TEST(lstm_shapes.size() == 1u);
  BOOST_TEST(lstm_shapes[0].substr(lstm_shapes[0].find(',')) == ",20");
  examples::TransformerModel transformer(20, 16, 4, 2, 8, rng);
  BOOST_TEST(exported(transformer, ad::test::token_ids({2, 8}, 20)).size() == 1u);
}

BOOST_AUTO_TEST_CASE(every_exportable_op_passes_the_checker) {
  using namespace ad;
  const F p(test::uniform<float>({4, 3}, -1, 1, 11), true);
  const F w(test::uniform<float>({5, 3}, -1, 1, 12), true);
  const F w4(test::uniform<float>({3, 2, 3, 3}, -1, 1, 14), true);
  Mask mask = Mask::from_shape({4, 3});
  for (std::size_t i = 0; i < mask.size(); ++i) mask.data()[i] = i % 3 == 0;
  ConvOptions o;
  o.stride_h = 2, o.padding_w = 1, o.dilation_w = 2;
  const std::vector<std::pair<Shape, std::function<F(const F&)>>> cases = {
      {{4, 3},
       [=](const F& x) {
         F y = exp(x) + log(abs(x) + 1.0) + sqrt(abs(x)) + tanh(x) + sigmoid(x) + relu(x) +
               leaky_relu(x, 0.2) + softplus(x) + clamp(x, -0.5, 0.5) + erf(x) + sin(x) + cos(x) +
               elu(x, 0.7) + pow(x, 3.0) + pow(abs(x) + 1.0, p) + where(mask, x, p) +
               maximum(x, p) - minimum(x, p) / (p + 2.0) - x;
         return y * 2.0;
       }},
      {{4, 3},
       [=](const F& x) {
         return sum(x, {1}, true) + mean(x, {2}, true) + max(x, {1, 2}, true) + min(x, {-1}, true) +
                log_sum_exp(x, {2}, true) + var(x, {2}, 1.0, true) + ad::std(x, {1}, 0.0, true) +
                norm(x, 2.0, {2}, true) + norm(x, 1.0, {2}, true) + norm(x, 3.0, {2}, true) +
                log_softmax(x, 1) + softmax(x, -1) + cumsum(x, 2, true) +
                squared_distance(x, x * x, 0.5) + sum(x);
       }},
      {{8}, [](const F& x) { return lstm_cell(x, x * 0.5, slice(x, 1, 0, 2)); }},
      {{4, 3},
       [=](const F& x) {
         const std::size_t b = x.shape()[0];
         F y = matmul(x, w, false, true) + linear(x, w, F(), Activation::tanh);
         F z = reshape(permute(y, {0, 2, 1}), Shape{b, 20});
         return concatenate<float>({flatten(y, 1), z, slice(z, 1, 2, 9, 3)}, 1) +
                sum(select(y, 1, 2)) + sum(index_select(y, 2, Index({4, 0, 0})));
       }},
      {{1, 3},
       [](const F& x) {
         const std::size_t b = x.shape()[0];
         return sum_to(broadcast_to(x, Shape{b, 4, 3}) * 2.0, Shape{b, 1, 3}) +
                sum_to(x, Shape{3}) + full<float>(Shape{b, 1, 3}, 0.5f);
       }},
      {{2, 6, 5},
       [=](const F& x) {
         const std::size_t b = x.shape()[0];
         F y = conv2d(x, w4, F(), o);
         return sum(conv2d_input_grad(y, w4, Shape{b, 2, 6, 5}, o), {1}, true) +
                avg_pool2d(sum(x, {1}, true), 3, 1, 1) + max_pool2d(sum(x, {1}, true), 3, 1, 1);
       }},
      {{4},
       [](const F& x) {
         return unslice(x, Shape{x.shape()[0], 9}, 1, 2) + 0.0f;
       }},
      {{6, 4},
       [=](const F& x) {
         AttentionOptions heads;
         heads.heads = 2;
         heads.causal = true;
         const F mask(test::uniform<float>({6, 6}, -1, 0, 15));
         return gelu(x) + gelu(x, Gelu::tanh) +
                layer_norm(x, 1, reshape(slice(p, 1, 0, 1), Shape{4})) +
                layer_norm(x, 2, F(), F(), 0.1) +
                scaled_dot_product_attention(x, x * 0.5, x, heads) +
                scaled_dot_product_attention(x, x, x, {}, mask);
       }},
  };
  for (std::size_t i = 0; i < cases.size(); ++i) {
    BOOST_TEST_CONTEXT("case " << i) {
      Shape shape{2};
      for (std::size_t d : cases[i].first) shape.push_back(d);
      const Program<float> program = trace<float>(cases[i].second, F(input(shape, 5 + i)));
      const std::string model = onnx::to_model(program);
      std::vector<std::string> shapes;
      BOOST_CHECK_NO_THROW(shapes = onnx::check(model));
      BOOST_TEST(shapes.size() == 1u);
      BOOST_TEST((shapes.size() == 1 && shapes[0].rfind("batch", 0) == 0), shapes.at(0));
    }
  }
}

BOOST_AUTO_TEST_CASE(what_has_no_onnx_equivalent_is_an_error) {
  const F x(input({3, 5}));
  const ad::Program<float> program =
      ad::trace<float>(std::function<F(const F&)>([](const F& z) {
                         return ad::softmax_cross_entropy(ad::tanh(z), ad::Index({0, 4, 2}));
                       }),
                       x, [] {
                         ad::TraceOptions<float> o;
                         o.dynamic_batch = false;
                         return o;
                       }());
  BOOST_CHECK_EXCEPTION(ad::onnx::to_model(program), ad::Error, [](const ad::Error& e) {
    return std::string(e.what()).find("onnx: node 1 (softmax_cross_entropy) cannot be exported") ==
           0;
  });
  BOOST_CHECK_THROW(ad::onnx::check("not a model"), ad::Error);
}

BOOST_AUTO_TEST_CASE(save_writes_the_module_in_eval_mode_and_restores_it) {
  nn::Generator rng(2);
  auto model = std::make_shared<nn::Sequential<float>>(
      std::make_shared<nn::Linear<float>>(3, 4, rng), std::make_shared<nn::Dropout<float>>(0.5),
      std::make_shared<nn::Linear<float>>(4, 2, rng));
  model->train();
  const std::string path = std::string(AD_BINARY_DIR) + "/test_onnx_export.onnx";
  ad::onnx::save(*model, F(input({2, 3})), path);
  BOOST_TEST(model->is_training());
  std::ifstream in(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  BOOST_TEST(ad::onnx::check(bytes) == std::vector<std::string>{"batch,2"});
  // The parameters are initializers under their module paths.
  BOOST_TEST(bytes.find("0.weight") != std::string::npos);
  BOOST_TEST(bytes.find("2.bias") != std::string::npos);
  std::remove(path.c_str());
}

}  // namespace
