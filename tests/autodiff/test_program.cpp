// ad::trace and ad::Program: every op traced with its attributes runs again from them (the same
// bits, at the traced batch size and at others), programs print and draw, gradients flow through
// them, and what cannot be a program is an error that says why.
#include <boost/test/unit_test.hpp>

#include "helpers.hpp"

namespace {

using ad::Array;
using ad::Shape;
using ad::Variable;
using V = Variable<double>;
using Fn = std::function<V(const V&)>;

/// An input of shape (batch, rest...) with values kept away from 0.
Array<double> example(std::size_t batch, const Shape& rest, std::uint64_t seed = 7) {
  Shape shape{batch};
  for (std::size_t d : rest) shape.push_back(d);
  return ad::test::away_from_zero(shape, 0.2, 1.0, seed);
}

bool same_bits(const Array<double>& a, const Array<double>& b) {
  return ad::test::all_close(a, b, 0.0, 0.0);
}

/// One op case: a function of x (B, rest...), traced at batch 3 and run again at 3 and at 5.
struct Case {
  std::string name;
  Shape rest;
  Fn f;
  bool dynamic = true;
  double lo = 0.2;  ///< inputs' magnitudes
};

std::vector<Case> cases() {
  using namespace ad;
  const V p(test::uniform({4, 3}, -1, 1, 11), true);
  const V w(test::uniform({5, 3}, -1, 1, 12), true);
  const V bias(test::uniform({5}, -1, 1, 13), true);
  const V w4(test::uniform({3, 2, 3, 3}, -1, 1, 14), true);
  const V b4(test::uniform({3}, -1, 1, 15), true);
  Mask mask = Mask::from_shape({4, 3});
  for (std::size_t i = 0; i < mask.size(); ++i) mask.data()[i] = i % 3 == 0;
  ConvOptions o;
  o.stride_h = 2, o.padding_w = 1, o.dilation_h = 1, o.dilation_w = 2;
  ConvOptions grouped;
  grouped.groups = 2, grouped.padding_h = grouped.padding_w = 1;
  const V wg(test::uniform({4, 1, 3, 3}, -1, 1, 16), true);
  const Shape s43{4, 3};
  return {
      {"add", s43, [=](const V& x) { return x + p; }},
      {"sub", s43, [=](const V& x) { return p - x; }},
      {"mul", s43, [=](const V& x) { return x * p; }},
      {"div", s43, [=](const V& x) { return p / x; }},
      {"neg", s43, [](const V& x) { return -x; }},
      {"affine", s43, [](const V& x) { return 2.0 * x + 1.0; }},
      {"pow", s43, [](const V& x) { return pow(x, 3.0); }},
      {"pow2", s43, [=](const V& x) { return pow(abs(x) + 1.0, p); }},
      {"where", s43, [=](const V& x) { return where(mask, x, p); }},
      {"maximum", s43, [=](const V& x) { return maximum(x, p); }},
      {"minimum", s43, [=](const V& x) { return minimum(p, x); }},
      {"unary", s43,
       [](const V& x) {
         return exp(x) + log(abs(x)) + sqrt(abs(x)) + tanh(x) + sigmoid(x) + relu(x) +
                leaky_relu(x, 0.2) + softplus(x) + clamp(x, -0.5, 0.5) + erf(x) + sin(x) + cos(x) +
                elu(x, 0.7) + square(x) + silu(x) + mish(x) + logsigmoid(x) +
                hardtanh(x, -0.3, 0.4);
       }},
      {"lstm_cell", {8}, [](const V& x) { return lstm_cell(x, x * 0.5, slice(x, 1, 0, 2)); }},
      {"matmul", s43,
       [=](const V& x) { return matmul(x, w, false, true) + sum(matmul(p, x, true, false)); }},
      {"matmul_batched", s43, [=](const V& x) { return matmul(x, x, false, true); }},
      {"linear", s43,
       [=](const V& x) {
         return linear(x, w, bias) + linear(x, w, bias, Activation::relu) +
                linear(x, w, V(), Activation::tanh) + linear(x, w, bias, Activation::sigmoid);
       }},
      {"reductions", s43,
       [](const V& x) {
         return sum(x) + mean(x) + max(x) + min(x) + sum(x, {1}, true) + mean(x, {0, 2}, true) +
                max(x, {-1}, true) + min(x, {1}, true) + log_sum_exp(x, {2}, true) +
                var(x, {1}, 1.0, true) + ad::std(x, {}, 0.0, false) + norm(x, 2.0, {2}, true) +
                norm(x, 3.0, {1}, true) + norm(x);
       }},
      {"softmax", s43,
       [](const V& x) { return log_softmax(x, 1) + softmax(x, -1) + cumsum(x, 2, true); }},
      {"squared_distance", s43, [](const V& x) { return squared_distance(x, x * x, 0.5); }},
      {"shapes", s43,
       [](const V& x) {
         const std::size_t b = x.shape()[0];
         V y = reshape(x, Shape{b, 12}) + flatten(x, 1);
         V z = permute(x, {2, 0, 1});
         return sum(y) + sum(z * z) + sum(transpose(x)) + sum(slice(x, 1, 1, 4, 2)) +
                sum(select(x, 2, 1)) + sum(unslice(x, Shape{b, 9, 3}, 1, 1, 2));
       }},
      {"indexing", s43,
       [](const V& x) {
         const std::size_t b = x.shape()[0];
         V a = index_select(x, 1, Index({3, 0, 0}));
         V c = index_add(x, Shape{b, 2, 3}, 1, Index({1, 0, 1, 1}));
         return sum(a * a) + sum(c * c);
       }},
      {"gather", s43,
       [](const V& x) {
         Index idx = test::index_of({0, 1, 2, 0, 2, 1, 1, 1, 0}, {3, 1, 3});
         return gather(x, 1, idx) +
                scatter_add(x, Shape{3, 5, 3}, 1,
                            test::index_of(std::vector<std::size_t>(36, 4), {3, 4, 3}));
       },
       false},
      {"concatenate", s43,
       [=](const V& x) {
         return concatenate<double>({x, x * 2.0, x}, 1) + sum(stack<double>({x, -x}, 1));
       }},
      {"broadcast",
       {1, 3},
       [](const V& x) {
         const std::size_t b = x.shape()[0];
         return sum_to(broadcast_to(x, Shape{b, 4, 3}) * 2.0, Shape{b, 1, 3});
       }},
      {"full", s43, [](const V& x) { return x + full<double>(x.shape(), 1.5); }},
      {"conv2d",
       {2, 6, 5},
       [=](const V& x) {
         return sum(conv2d(x, w4, b4, o), {1, 2, 3}) + sum(conv2d(x, w4, 1, 1), {1, 2, 3}) +
                sum(conv2d(x, wg, V(), grouped), {1, 2, 3});
       }},
      {"pooling",
       {2, 6, 6},
       [](const V& x) {
         const std::size_t b = x.shape()[0];
         V a = avg_pool2d(x, 2, 2);
         return max_pool2d(x, 3, 2, 1) + avg_pool2d(x, 3, 2, 1) +
                sum(avg_pool2d_grad(a, Shape{b, 2, 6, 6}, 2, 2, 0));
       }},
      {"conv_grads",
       {2, 6, 5},
       [=](const V& x) {
         const std::size_t b = x.shape()[0];
         V g = conv2d(x, w4, b4, o);
         return sum(conv2d_input_grad(g, w4, Shape{b, 2, 6, 5}, o)) +
                sum(conv2d_weight_grad(x, g, w4.shape(), o));
       }},
      {"cross_entropy",
       {5},
       [](const V& x) {
         return softmax_cross_entropy(x, Index({0, 4, 2}), 0.1);
       },
       false},
  };
}

BOOST_AUTO_TEST_CASE(every_op_runs_again_from_its_attributes) {
  for (const Case& c : cases()) {
    BOOST_TEST_CONTEXT("case " << c.name) {
      ad::TraceOptions<double> options;
      options.dynamic_batch = c.dynamic;
      const V x3(example(3, c.rest, 1));
      ad::Program<double> program = ad::trace<double>(c.f, x3, options);
      BOOST_TEST(!program.nodes.empty());
      BOOST_TEST(same_bits(program(x3).value(), c.f(x3).value()));
      if (c.dynamic) {
        BOOST_TEST(program.batch == 3);
        const V x5(example(5, c.rest, 2));
        BOOST_TEST(same_bits(program(x5).value(), c.f(x5).value()));
        const V x1(example(1, c.rest, 3));
        BOOST_TEST(same_bits(program(x1).value(), c.f(x1).value()));
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(a_program_is_differentiable_and_gradchecks) {
  const V w(ad::test::uniform({5, 3}, -1, 1, 4), true);
  const V b(ad::test::uniform({5}, -1, 1, 5), true);
  Fn g = [&](const V& x) {
    return ad::sum(ad::tanh(ad::linear(x, w, b)) * ad::sigmoid(ad::sum(x)));
  };
  ad::Program<double> program = ad::trace<double>(g, V(example(2, {3}, 8)));
  const V x = ad::test::leaf(example(4, {3}, 9));
  BOOST_TEST(ad::testing::passed(
      ad::gradcheck([&](const V& in, const V&, const V&) { return program(in); }, {x, w, b},
                    ad::test::second_order())));
  // The parameters are the model's own: their gradients match the function's.
  V direct = g(x);
  auto expected = ad::grad(direct, {w, b});
  auto got = ad::grad(program(x), {w, b});
  for (std::size_t i = 0; i < 2; ++i) BOOST_TEST(same_bits(got[i].value(), expected[i].value()));
}

BOOST_AUTO_TEST_CASE(a_program_prints_and_draws) {
  const V w(ad::test::uniform({5, 3}, -1, 1, 4), true);
  ad::TraceOptions<double> options;
  options.parameters = {{"fc.weight", w}};
  ad::Program<double> program = ad::trace<double>(
      Fn([&](const V& x) {
        return ad::relu(ad::reshape(ad::matmul(x, w, false, true), Shape{x.shape()[0] * 5}));
      }),
      V(example(2, {3})), options);
  const std::string text = program.str();
  BOOST_TEST_MESSAGE(text);
  BOOST_TEST(text.find("program(x: f64[B,3]; fc.weight: f64[5,3]) {") == 0);
  BOOST_TEST(text.find("%0: f64[B,5] = matmul(x, fc.weight) trans_a=false trans_b=true") !=
             std::string::npos);
  BOOST_TEST(text.find("%1: f64[5B] = reshape(%0) shape=[5B]") != std::string::npos);
  BOOST_TEST(text.find("%2: f64[5B] = relu(%1)") != std::string::npos);
  BOOST_TEST(text.find("return %2") != std::string::npos);
  BOOST_TEST(program.nodes[1].batch_entries.size() == 1);
  BOOST_TEST(program.nodes[1].batch_entries[0].dim.scale == 5);
  const std::string dot = program.dot();
  BOOST_TEST(dot.find("digraph program {") == 0);
  BOOST_TEST(dot.find("fc.weight") != std::string::npos);
  BOOST_TEST(dot.find("-> out0") != std::string::npos);
  // reshape's shape follows the batch size.
  const V x7(example(7, {3}));
  BOOST_TEST(program(x7).shape() == Shape{35});
}

BOOST_AUTO_TEST_CASE(what_cannot_be_a_program_is_an_error) {
  // A mask made from the data outside an op: a constant that differs between batch sizes.
  Fn masked = [](const V& x) {
    ad::Mask m = ad::Mask::from_shape(x.shape());
    for (std::size_t i = 0; i < m.size(); ++i) m.data()[i] = x.value().data()[i] > 0;
    return ad::where(m, x, -x);
  };
  BOOST_CHECK_EXCEPTION(ad::trace<double>(masked, V(example(2, {3}))), ad::Error,
                        [](const ad::Error& e) {
                          return std::string(e.what()).find("attribute 'mask' of node 1 (where)") !=
                                 std::string::npos;
                        });
  // A tensor made for the batch size outside an op.
  Fn zeros = [](const V& x) { return x + V(Array<double>(xt::zeros<double>(x.shape()))); };
  BOOST_CHECK_EXCEPTION(
      ad::trace<double>(zeros, V(example(2, {3}))), ad::Error, [](const ad::Error& e) {
        return std::string(e.what()).find("constant c0 read by node 0 (add)") != std::string::npos;
      });
  // A custom op (no program description).
  Fn custom = [](const V& x) {
    V y = ad::make_op<double>(
        "twice", Array<double>(x.value() * 2.0), {x},
        [](const ad::BackwardContext<double>& c) -> ad::Grads<double> { return {c.grad * 2.0}; });
    return ad::exp(y);
  };
  const V xg(example(2, {3}), true);
  BOOST_CHECK_EXCEPTION(ad::trace<double>(custom, xg), ad::Error, [](const ad::Error& e) {
    return std::string(e.what()).find("was made by 'twice'") != std::string::npos;
  });
  // The ops differ with the batch size.
  Fn branchy = [](const V& x) { return x.shape()[0] > 2 ? ad::exp(x) : ad::log(ad::abs(x)); };
  BOOST_CHECK_THROW(ad::trace<double>(branchy, V(example(2, {3}))), ad::Error);
  // A program run on an input of the wrong shape names it.
  ad::Program<double> p =
      ad::trace<double>(Fn([](const V& x) { return ad::exp(x); }), V(example(2, {3})));
  BOOST_CHECK_EXCEPTION(p(V(example(2, {4}))), ad::Error, [](const ad::Error& e) {
    return std::string(e.what()) ==
           "program: input 'x' has shape (2,4), the program takes (B,3) with B = 2";
  });
  BOOST_CHECK_THROW(p.run({}), ad::Error);
}

BOOST_AUTO_TEST_CASE(a_trace_leaves_no_trace) {
  // While tracing, the function's results are its own; afterwards, ops record nothing more.
  Fn f = [](const V& x) { return ad::sum(ad::exp(x)); };
  const V x(example(2, {3}), true);
  ad::trace<double>(f, x);
  BOOST_TEST(ad::detail::active_trace<double> == nullptr);
  V y = f(x);
  y.backward();
  BOOST_TEST(x.has_grad());
  // An exception inside the function ends the trace too.
  Fn bad = [](const V& x) -> V { return ad::reshape(x, Shape{7}); };
  BOOST_CHECK_THROW(ad::trace<double>(bad, x), ad::Error);
  BOOST_TEST(ad::detail::active_trace<double> == nullptr);
}

}  // namespace
