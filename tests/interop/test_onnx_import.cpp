// ONNX import: models exported by this library come back as modules that compute the same
// values and gradients, train, gradcheck and checkpoint; malformed models are errors that say
// what is wrong.
#include <boost/test/unit_test.hpp>

#include <onnx/onnx_pb.h>

#include <cstdio>

#include "examples/models.hpp"
#include "helpers.hpp"
#include "interop/onnx.hpp"
#include "nn/gradcheck.hpp"
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

/// The module exported at batch 2 and imported: its outputs at batch 5 against the module's.
template <class M>
std::shared_ptr<ad::onnx::Model<float>> round_trip(
    M& model, const std::function<Array<float>(std::size_t)>& make, double tolerance = 1e-5) {
  model.eval();
  const std::string bytes = ad::onnx::to_model(nn::trace(model, F(make(2))));
  auto imported = ad::onnx::load_bytes<float>(bytes);
  const F x(make(5));
  const Array<float> want = model(x).value();
  const Array<float> got = (*imported)(x).value();
  BOOST_TEST(ad::test::all_close(got, want, tolerance, tolerance));
  return imported;
}

BOOST_AUTO_TEST_CASE(exported_models_come_back) {
  nn::Generator rng(1);
  auto mlp = examples::make_mlp(rng);
  auto m = round_trip(*mlp, [](std::size_t b) { return input({b, 784}, b); });
  // The parameters keep their module paths.
  const auto named = m->named_parameters();
  BOOST_TEST(named.size() == 6u);
  BOOST_TEST(named[0].first == "0.weight");
  BOOST_TEST(named[5].first == "2.bias");
  auto cnn = examples::make_cnn(rng);
  round_trip(*cnn, [](std::size_t b) { return input({b, 1, 28, 28}, b); });
  examples::LstmModel lstm(20, 8, 16, 2, rng);
  round_trip(lstm, [](std::size_t b) { return ad::test::token_ids({b, 6}, 20, b); });
  examples::TransformerModel transformer(20, 16, 4, 2, 8, rng);
  round_trip(transformer, [](std::size_t b) { return ad::test::token_ids({b, 8}, 20, b); });
}

BOOST_AUTO_TEST_CASE(the_ops_of_sequence_models_come_back) {
  // gelu (both forms), layer_norm with and without weights, attention with heads, causal and an
  // additive mask: exported as ONNX composites, imported, the same values at another batch size.
  auto f = [](const F& x) {
    ad::AttentionOptions heads;
    heads.heads = 2;
    heads.causal = true;
    const F mask(ad::test::uniform<float>({6, 6}, -1, 0, 15));
    const F w(ad::test::uniform<float>({4}, 0.5, 1.5, 16));
    return ad::gelu(x) + ad::gelu(x, ad::Gelu::tanh) + ad::layer_norm(x, 1, w, w * 0.5f) +
           ad::layer_norm(x, 2, F(), F(), 0.1) +
           ad::scaled_dot_product_attention(x, x * 0.5f, x, heads) +
           ad::scaled_dot_product_attention(x, x, x, {}, mask);
  };
  const ad::Program<float> program =
      ad::trace<float>(std::function<F(const F&)>(f), F(input({2, 6, 4}, 3)));
  auto imported = ad::onnx::load_bytes<float>(ad::onnx::to_model(program));
  const F x(input({5, 6, 4}, 4));
  BOOST_TEST(ad::test::all_close((*imported)(x).value(), f(x).value(), 1e-5, 1e-5));
}

BOOST_AUTO_TEST_CASE(an_imported_model_differentiates_and_trains) {
  nn::Generator rng(2);
  auto model = std::make_shared<nn::Sequential<double>>(
      std::make_shared<nn::Conv2d<double>>(1, 2, 3, rng, 1, 1),
      std::make_shared<nn::Tanh<double>>(), std::make_shared<nn::AvgPool2d<double>>(2),
      std::make_shared<nn::Flatten<double>>(),
      std::make_shared<nn::Linear<double>>(2 * 2 * 2, 3, rng));
  model->eval();
  const Variable<double> x(ad::test::uniform({2, 1, 4, 4}, -1, 1, 4));
  auto imported = ad::onnx::load_bytes<double>(ad::onnx::to_model(nn::trace(*model, x)));
  // The gradients of every parameter agree with the model's own.
  ad::sum((*model)(x) * (*model)(x)).backward();
  ad::sum((*imported)(x) * (*imported)(x)).backward();
  const auto a = model->named_parameters(), b = imported->named_parameters();
  BOOST_REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    BOOST_TEST(a[i].first == b[i].first);
    BOOST_TEST(
        ad::test::all_close(b[i].second.grad().value(), a[i].second.grad().value(), 1e-12, 1e-12));
  }
  // It gradchecks, with respect to its input and its parameters.
  BOOST_TEST(ad::testing::passed(nn::gradcheck_module(*imported, ad::test::leaf(x.value()))));
  // One SGD step on a regression target lowers the loss.
  imported->zero_grad();
  const Variable<double> target(ad::test::uniform({2, 3}, -1, 1, 5));
  nn::SGDOptions so;
  so.lr = 0.1;
  nn::SGD<double> sgd(imported->parameters(), so);
  auto loss = [&] { return ad::mean(ad::square((*imported)(x)-target)); };
  const double before = loss().item();
  Variable<double> l = loss();
  l.backward();
  sgd.step();
  BOOST_TEST(loss().item() < before);
}

BOOST_AUTO_TEST_CASE(an_imported_model_checkpoints) {
  nn::Generator rng(3);
  auto mlp = examples::make_tiny_mlp(rng);
  const std::string bytes = ad::onnx::to_model(nn::trace(*mlp, F(input({2, 2}))));
  auto a = ad::onnx::load_bytes<float>(bytes);
  auto b = ad::onnx::load_bytes<float>(bytes);
  a->named_parameters()[0].second.mutable_value()(0, 0) = 42.0f;
  const std::string path = std::string(AD_BINARY_DIR) + "/test_onnx_import.npz";
  nn::save_checkpoint(path, *a);
  nn::load_checkpoint(path, *b);
  BOOST_TEST(b->named_parameters()[0].second.value()(0, 0) == 42.0f);
  std::remove(path.c_str());
  BOOST_TEST(a->input_names() == std::vector<std::string>{"x"});
  BOOST_TEST(a->output_names() == std::vector<std::string>{"output"});
  // Inputs by name.
  const F x(input({3, 2}));
  BOOST_TEST(ad::test::all_close(a->run({{"x", x}})[0].value(), (*a)(x).value(), 0, 0));
  BOOST_CHECK_THROW(a->run(std::map<std::string, F>{{"y", x}}), ad::Error);
  BOOST_CHECK_THROW(a->run(std::vector<F>{}), ad::Error);
}

/// A model of one node `op` reading `inputs` (with the given initializers), for malformed cases.
std::string model_of(const std::vector<std::pair<std::string, std::vector<std::string>>>& nodes,
                     const std::vector<std::string>& graph_inputs,
                     const std::vector<onnx::TensorProto>& initializers,
                     const std::string& output) {
  onnx::ModelProto m;
  m.set_ir_version(8);
  m.add_opset_import()->set_version(17);
  auto* g = m.mutable_graph();
  for (const auto& in : graph_inputs) {
    auto* v = g->add_input();
    v->set_name(in);
    v->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::FLOAT);
  }
  for (const auto& t : initializers) *g->add_initializer() = t;
  int k = 0;
  for (const auto& [op, ins] : nodes) {
    auto* n = g->add_node();
    n->set_op_type(op);
    n->set_name("n" + std::to_string(k));
    for (const auto& in : ins) n->add_input(in);
    n->add_output("t" + std::to_string(k++));
  }
  g->add_output()->set_name(output);
  std::string bytes;
  m.SerializeToString(&bytes);
  return bytes;
}

bool says(const ad::Error& e, const std::string& what) {
  const bool found = std::string(e.what()).find(what) != std::string::npos;
  if (!found) BOOST_TEST_MESSAGE("message: " << e.what());
  return found;
}

BOOST_AUTO_TEST_CASE(malformed_models_are_errors) {
  using ad::onnx::load_bytes;
  auto fails = [](const std::string& bytes, const std::string& what) {
    BOOST_CHECK_EXCEPTION(load_bytes<float>(bytes), ad::Error,
                          [&](const ad::Error& e) { return says(e, what); });
  };
  fails("", "is not an ONNX model");
  fails("garbage bytes that are not protobuf", "is not an ONNX model");
  // A missing initializer; a cycle (a node reading what a later node makes).
  fails(model_of({{"Relu", {"w"}}}, {"x"}, {}, "t0"), "reads 'w', which no input, initializer");
  fails(model_of({{"Relu", {"t1"}}, {"Relu", {"t0"}}}, {"x"}, {}, "t1"), "reads 't1'");
  // An output nothing computes.
  fails(model_of({{"Relu", {"x"}}}, {"x"}, {}, "y"), "output 'y' is not computed");
  // Initializers whose data does not match their shape, or whose shape overflows.
  onnx::TensorProto t;
  t.set_name("w");
  t.set_data_type(onnx::TensorProto::FLOAT);
  t.add_dims(4);
  t.set_raw_data(std::string(12, '\0'));
  fails(model_of({{"Add", {"x", "w"}}}, {"x"}, {t}, "t0"), "holds 12 bytes of data");
  t.clear_dims();
  t.add_dims(1LL << 40);
  t.add_dims(1LL << 40);
  fails(model_of({{"Add", {"x", "w"}}}, {"x"}, {t}, "t0"), "size overflows");
  t.clear_dims();  // empty, but the other extents multiply into xtensor's signed strides
  t.add_dims(0);
  t.add_dims(1LL << 40);
  t.add_dims(1LL << 40);
  t.clear_raw_data();
  fails(model_of({{"Add", {"x", "w"}}}, {"x"}, {t}, "t0"), "size overflows");
  t.clear_dims();
  t.add_dims(-3);
  fails(model_of({{"Add", {"x", "w"}}}, {"x"}, {t}, "t0"), "negative extent");
  // A truncated model.
  nn::Generator rng(1);
  auto mlp = examples::make_tiny_mlp(rng);
  const std::string good = ad::onnx::to_model(nn::trace(*mlp, F(input({2, 2}))));
  fails(good.substr(0, good.size() / 2), "is not an ONNX model");
  // An op the library does not run: listed first, an error naming it when the model runs.
  auto m = load_bytes<float>(model_of({{"Hardmax", {"x"}}}, {"x"}, {}, "t0"));
  BOOST_TEST(m->unsupported_ops() == std::vector<std::string>{"Hardmax"});
  BOOST_CHECK_EXCEPTION((*m)(F(input({2, 2}))), ad::Error, [](const ad::Error& e) {
    return says(e, "node 0 ('n0') is Hardmax, an op this library does not run");
  });
  // Shapes that do not fit: the node and the shapes are named.
  auto add = load_bytes<float>(model_of({{"MatMul", {"x", "x"}}}, {"x"}, {}, "t0"));
  BOOST_CHECK_EXCEPTION((*add)(F(input({2, 3}))), ad::Error, [](const ad::Error& e) {
    return says(e, "onnx: node 0 ('n0', MatMul): matmul: inner dimensions differ");
  });
  BOOST_CHECK_THROW(ad::onnx::load<float>("/nonexistent/model.onnx"), ad::Error);
}

}  // namespace
