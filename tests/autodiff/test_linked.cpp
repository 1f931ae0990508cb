// Every public op is compiled into the library for float and double: this program takes the
// address of each, so an op left out of its file's instantiation list fails to link here
// instead of in a user's program.
#include <boost/test/unit_test.hpp>

#include <regex>
#include <string>

#include "helpers.hpp"

namespace {

using Fn = void (*)();

template <class F>
Fn address(F f) {
  return reinterpret_cast<Fn>(f);
}

template <class T>
std::vector<Fn> ops() {
  using V = ad::Variable<T>;
  using std::size_t;
  using Unary = V (*)(const V&);
  using Binary = V (*)(const V&, const V&);
  using Axes = V (*)(const V&, const std::vector<long>&, bool);
  return {
      address<Binary>(&ad::add<T>),
      address<Binary>(&ad::sub<T>),
      address<Binary>(&ad::mul<T>),
      address<Binary>(&ad::div<T>),
      address<Unary>(&ad::neg<T>),
      address<V (*)(const V&, double, double)>(&ad::affine<T>),
      address<Binary>(&ad::pow<T>),
      address<V (*)(const V&, double)>(&ad::pow<T>),
      address<V (*)(const ad::Mask&, const V&, const V&)>(&ad::where<T>),
      address<Binary>(&ad::maximum<T>),
      address<Binary>(&ad::minimum<T>),
      address<Unary>(&ad::exp<T>),
      address<Unary>(&ad::log<T>),
      address<Unary>(&ad::sqrt<T>),
      address<Unary>(&ad::abs<T>),
      address<Unary>(&ad::tanh<T>),
      address<Unary>(&ad::sigmoid<T>),
      address<Unary>(&ad::relu<T>),
      address<V (*)(const V&, double)>(&ad::leaky_relu<T>),
      address<Unary>(&ad::softplus<T>),
      address<V (*)(const V&, double, double)>(&ad::clamp<T>),
      address<Unary>(&ad::erf<T>),
      address<Unary>(&ad::square<T>),
      address<V (*)(const V&, const V&, bool, bool)>(&ad::matmul<T>),
      address<V (*)(const V&, const V&, const V&)>(&ad::linear<T>),
      address<V (*)(const V&, const V&, size_t, size_t)>(&ad::conv2d<T>),
      address<V (*)(const V&, const V&, const V&, size_t, size_t)>(&ad::conv2d<T>),
      address<V (*)(const V&, const V&, const ad::Shape&, size_t, size_t)>(
          &ad::conv2d_input_grad<T>),
      address<V (*)(const V&, const V&, const ad::Shape&, size_t, size_t)>(
          &ad::conv2d_weight_grad<T>),
      address<V (*)(const V&, size_t, size_t, size_t)>(&ad::max_pool2d<T>),
      address<V (*)(const V&, size_t, size_t, size_t)>(&ad::avg_pool2d<T>),
      address<V (*)(const V&, const ad::Shape&, size_t, size_t, size_t)>(&ad::avg_pool2d_grad<T>),
      address<V (*)(const V&, const ad::Shape&)>(&ad::reshape<T>),
      address<V (*)(const V&, long, long)>(&ad::flatten<T>),
      address<V (*)(const V&, const std::vector<size_t>&)>(&ad::permute<T>),
      address<V (*)(const V&, long, long)>(&ad::transpose<T>),
      address<V (*)(const V&, long, size_t, size_t, size_t)>(&ad::slice<T>),
      address<V (*)(const V&, const ad::Shape&, long, size_t, size_t)>(&ad::unslice<T>),
      address<V (*)(const V&, long, const ad::Index&)>(&ad::index_select<T>),
      address<V (*)(const V&, const ad::Shape&, long, const ad::Index&)>(&ad::index_add<T>),
      address<V (*)(const V&, long, const ad::Index&)>(&ad::gather<T>),
      address<V (*)(const V&, const ad::Shape&, long, const ad::Index&)>(&ad::scatter_add<T>),
      address<V (*)(const std::vector<V>&, long)>(&ad::concatenate<T>),
      address<V (*)(const std::vector<V>&, long)>(&ad::stack<T>),
      address<V (*)(const V&, const ad::Shape&)>(&ad::broadcast_to<T>),
      address<V (*)(const V&, const ad::Shape&)>(&ad::sum_to<T>),
      address<Binary>(&ad::embedding<T>),
      address<V (*)(const ad::Shape&, T)>(&ad::full<T>),
      address<Unary>(&ad::sum<T>),
      address<Axes>(&ad::sum<T>),
      address<Unary>(&ad::mean<T>),
      address<Axes>(&ad::mean<T>),
      address<Unary>(&ad::max<T>),
      address<Axes>(&ad::max<T>),
      address<Unary>(&ad::min<T>),
      address<Axes>(&ad::min<T>),
      address<Axes>(&ad::log_sum_exp<T>),
      address<V (*)(const V&, long)>(&ad::log_softmax<T>),
      address<V (*)(const V&, long)>(&ad::softmax<T>),
      address<V (*)(const V&, const V&, double)>(&ad::squared_distance<T>),
      address<V (*)(const V&, const ad::Index&, double)>(&ad::softmax_cross_entropy<T>),
      address<V (*)(const V&, ad::Gelu)>(&ad::gelu<T>),
      address<V (*)(const V&, size_t, const V&, const V&, double)>(&ad::layer_norm<T>),
      address<V (*)(const V&, const V&, const V&, const ad::AttentionOptions&, const V&)>(
          &ad::scaled_dot_product_attention<T>),
      address<V (*)(const V&, const V&, const ad::AttentionOptions&, const V&)>(
          &ad::attention_weights<T>),
      address<V (*)(const V&, const V&, const V&, const V&, const V&, const V&, const V&)>(
          &ad::lstm<T>),
      address<Unary>(&ad::sin<T>),
      address<Unary>(&ad::cos<T>),
      address<V (*)(const V&, double)>(&ad::elu<T>),
      address<V (*)(const V&, double, double)>(&ad::hardtanh<T>),
      address<Unary>(&ad::silu<T>),
      address<Unary>(&ad::mish<T>),
      address<Unary>(&ad::logsigmoid<T>),
      address<V (*)(const V&, const V&, const V&)>(&ad::lstm_cell<T>),
      address<V (*)(const V&, const std::vector<long>&, double, bool)>(&ad::var<T>),
      address<V (*)(const V&, const std::vector<long>&, double, bool)>(&ad::std<T>),
      address<V (*)(const V&, double, const std::vector<long>&, bool)>(&ad::norm<T>),
      address<V (*)(const V&, long, bool)>(&ad::cumsum<T>),
      address<ad::Index (*)(const V&, long, bool)>(&ad::argmax<T>),
      address<ad::Index (*)(const V&, long, bool)>(&ad::argmin<T>),
      address<V (*)(const V&, long, size_t)>(&ad::select<T>),
  };
}

}  // namespace

BOOST_AUTO_TEST_SUITE(linked)

BOOST_AUTO_TEST_CASE(every_public_op_for_float_and_double) {
  auto f = ops<float>(), d = ops<double>();
  BOOST_TEST(f.size() == d.size());
  for (std::size_t i = 0; i < f.size(); ++i) {
    BOOST_TEST(f[i] != nullptr);
    BOOST_TEST(d[i] != nullptr);
  }
}

BOOST_AUTO_TEST_CASE(every_op_declared_in_the_op_headers_is_listed_here) {
  // An op added to a header but not to ops() above fails here: the list cannot go stale.
  const std::string here = ad::test::source("tests/autodiff/test_linked.cpp");
  const std::regex declaration(R"(\n(?:Variable<T>|Index) ([a-z_0-9]+)\()");
  std::size_t declared = 0;
  for (const char* header : {"arithmetic", "attention", "conv", "elementwise", "linalg",
                             "recurrent", "reduce", "shape"}) {
    const std::string text = ad::test::source(std::string("autodiff/") + header + ".hpp");
    BOOST_REQUIRE(!text.empty());
    for (std::sregex_iterator it(text.begin(), text.end(), declaration), end; it != end; ++it) {
      ++declared;
      const std::string name = (*it)[1];
      BOOST_TEST(here.find("&ad::" + name + "<T>") != std::string::npos,
                 "ad::" << name << " (autodiff/" << header << ".hpp) is not in ops()");
    }
  }
  BOOST_TEST(declared > 80u);
}

BOOST_AUTO_TEST_SUITE_END()
