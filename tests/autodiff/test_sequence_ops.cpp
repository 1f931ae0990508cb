// The ops of sequence models against the composites of recorded ops they replace:
// scaled_dot_product_attention (matmul, softmax, matmul) across tile boundaries, lstm (linear and
// lstm_cell step by step), layer_norm and gelu.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <limits>

#include "helpers.hpp"

using ad::Array;
using ad::Shape;
using ad::test::all_close;
using ad::test::leaf;
using ad::test::uniform;
using ad::testing::passed;
using V = ad::Variable<double>;

namespace {

/// The same attention as recorded ops: attention_weights (softmax of the scores), then the
/// weights times v per head, the heads side by side again.
V composite(const V& q, const V& k, const V& v, const ad::AttentionOptions& o, const V& mask) {
  const V p = ad::attention_weights(q, k, o, mask);
  const Shape& s = v.shape();
  const std::size_t h = o.heads, lk = s[s.size() - 2], dv = s.back() / h;
  std::size_t n = 1;
  for (std::size_t d = 0; d + 2 < s.size(); ++d) n *= s[d];
  const std::size_t lq = q.shape()[q.shape().size() - 2];
  const V vh = ad::reshape(ad::permute(ad::reshape(v, Shape{n, lk, h, dv}), {0, 2, 1, 3}),
                           Shape{n * h, lk, dv});
  const V out = ad::matmul(ad::reshape(p, Shape{n * h, lq, lk}), vh);
  Shape shape = q.shape();
  shape.back() = h * dv;
  return ad::reshape(ad::permute(ad::reshape(out, Shape{n, h, lq, dv}), {0, 2, 1, 3}), shape);
}

/// Σ out·w for fixed weights w: a scalar whose gradient is w pulled back through the op.
V weighted(const V& out, std::uint64_t seed) {
  return ad::sum(out * V(uniform(out.shape(), -1, 1, seed)));
}

/// f()'s value and the gradients of Σ f()² with respect to `inputs` are the same bits on one
/// thread and on two.
template <class F>
void same_bits_on_one_and_two_threads(F f, const std::vector<ad::Variable<float>>& inputs) {
  auto run = [&](int threads) {
    ad::set_num_threads(threads);
    const ad::Variable<float> out = f();
    auto g = ad::grad(ad::sum(out * out), inputs);
    g.insert(g.begin(), out);
    return g;
  };
  const auto one = run(1), two = run(2);
  ad::set_num_threads(1);
  for (std::size_t i = 0; i < one.size(); ++i)
    BOOST_TEST(one[i].value() == two[i].value(), "array " << i);
}

struct Setup {
  const char* label;
  Shape q, k, v;
  ad::AttentionOptions options;
  Shape mask;  // empty: no mask
  bool hide;   // the mask holds −∞ entries (every query keeps at least one key)
};

}  // namespace

BOOST_AUTO_TEST_SUITE(sequence_ops)

BOOST_AUTO_TEST_CASE(equals_the_composite_across_tiles) {
  ad::AttentionOptions causal, heads2, plain;
  causal.causal = true;
  heads2.heads = 2;
  heads2.causal = true;
  const std::vector<Setup> setups = {
      {"unmasked, 1 head, several tiles", {2, 300, 8}, {2, 270, 8}, {2, 270, 5}, plain, {}, false},
      {"causal, 1 head", {2, 520, 4}, {2, 520, 4}, {2, 520, 6}, causal, {}, false},
      {"causal, 2 heads, long keys", {1, 65, 6}, {1, 600, 6}, {1, 600, 4}, heads2, {}, false},
      {"masked (−∞), broadcast over the batch",
       {3, 270, 4},
       {3, 266, 4},
       {3, 266, 3},
       plain,
       {270, 266},
       true},
      {"masked per head and batch",
       {2, 9, 8},
       {2, 530, 8},
       {2, 530, 8},
       heads2,
       {2, 2, 9, 530},
       false},
      {"no batch axes", {300, 4}, {300, 4}, {300, 4}, causal, {}, false},
  };
  for (const auto& s : setups) {
    BOOST_TEST_CONTEXT(s.label) {
      const V q = leaf(uniform(s.q, -1, 1, 1)), k = leaf(uniform(s.k, -1, 1, 2)),
              v = leaf(uniform(s.v, -1, 1, 3));
      V mask;
      if (!s.mask.empty()) {
        Array<double> m = uniform(s.mask, -2, 2, 4);
        if (s.hide)
          for (std::size_t i = 0; i < m.size(); ++i)
            if (i % 7 == 3 && i % m.shape().back() != 0)
              m.data()[i] = -std::numeric_limits<double>::infinity();
        mask = leaf(std::move(m));
      }
      const V fast = ad::scaled_dot_product_attention(q, k, v, s.options, mask);
      const V slow = composite(q, k, v, s.options, mask);
      BOOST_TEST(all_close(fast.value(), slow.value(), 1e-9, 1e-12));
      std::vector<V> inputs{q, k, v};
      if (mask.defined()) inputs.push_back(mask);
      const auto gf = ad::grad(weighted(fast, 5), inputs);
      const auto gs = ad::grad(weighted(slow, 5), inputs);
      for (std::size_t i = 0; i < inputs.size(); ++i)
        BOOST_TEST(all_close(gf[i].value(), gs[i].value(), 1e-8, 1e-11), "input " << i);
    }
  }
}

BOOST_AUTO_TEST_CASE(gradcheck_first_and_second_order) {
  ad::AttentionOptions o;
  o.heads = 2;
  o.causal = true;
  const V q = leaf(uniform({2, 5, 4}, -1, 1, 1)), k = leaf(uniform({2, 6, 4}, -1, 1, 2)),
          v = leaf(uniform({2, 6, 6}, -1, 1, 3)), mask = leaf(uniform({5, 6}, -1, 1, 4));
  auto f = [&](const auto& q, const auto& k, const auto& v, const auto& m) {
    return ad::scaled_dot_product_attention(q, k, v, o, m);
  };
  BOOST_TEST(passed(ad::gradcheck(f, {q, k, v, mask}, ad::test::second_order())));
}

BOOST_AUTO_TEST_CASE(the_same_bits_on_one_and_two_threads) {
  ad::AttentionOptions o;
  o.causal = true;
  o.heads = 2;
  const ad::Variable<float> q(uniform<float>({3, 300, 16}, -1, 1, 1), true),
      k(uniform<float>({3, 300, 16}, -1, 1, 2), true),
      v(uniform<float>({3, 300, 16}, -1, 1, 3), true);
  same_bits_on_one_and_two_threads([&] { return ad::scaled_dot_product_attention(q, k, v, o); },
                                   {q, k, v});
}

BOOST_AUTO_TEST_CASE(nan_and_rows_with_every_key_hidden) {
  Array<double> qa = uniform({1, 3, 2}, -1, 1, 1);
  qa(0, 1, 0) = std::numeric_limits<double>::quiet_NaN();
  const V q(qa), k(uniform({1, 4, 2}, -1, 1, 2)), v(uniform({1, 4, 2}, -1, 1, 3));
  Array<double> m = xt::zeros<double>({3, 4});
  for (std::size_t j = 0; j < 4; ++j) m(2, j) = -std::numeric_limits<double>::infinity();
  const Array<double> out = ad::scaled_dot_product_attention(q, k, v, {}, V(m)).value();
  for (std::size_t c = 0; c < 2; ++c) {
    BOOST_TEST(std::isfinite(out(0, 0, c)));
    BOOST_TEST(std::isnan(out(0, 1, c)));  // the NaN query
    BOOST_TEST(std::isnan(out(0, 2, c)));  // every key hidden: softmax of −∞ only
  }
}

BOOST_AUTO_TEST_CASE(bad_shapes_name_the_op_and_the_shapes) {
  const V a(uniform({2, 3, 4})), b(uniform({2, 5, 4})), c(uniform({2, 5, 6}));
  auto fails = [](auto f, const char* what) {
    try {
      f();
    } catch (const ad::Error& e) {
      const std::string m = e.what();
      return m.find("scaled_dot_product_attention") != std::string::npos &&
             m.find(what) != std::string::npos;
    }
    return false;
  };
  ad::AttentionOptions three;
  three.heads = 3;
  BOOST_TEST(fails([&] { ad::scaled_dot_product_attention(a, a, c); }, "k and v have different"));
  BOOST_TEST(fails([&] { ad::scaled_dot_product_attention(a, c, c); }, "different widths"));
  BOOST_TEST(fails([&] { ad::scaled_dot_product_attention(a, b, c, three); }, "do not divide"));
  BOOST_TEST(fails(
      [&] {
        ad::scaled_dot_product_attention(a, V(uniform({3, 5, 4})), c);
      },
      "leading axes differ"));
  BOOST_TEST(fails(
      [&] {
        ad::scaled_dot_product_attention(a, b, c, {}, V(uniform({4, 5})));
      },
      "does not broadcast"));
}

BOOST_AUTO_TEST_CASE(lstm_equals_the_unrolled_cells) {
  // 40 sequences: two chunks of rows (32 and 8), each run through every step on its own.
  for (const std::size_t n : {3, 40})
    for (const std::size_t length : {0, 1, 7}) {
      BOOST_TEST_CONTEXT(n << " sequences of length " << length) {
        const std::size_t in = 5, h = 19;
        const V x = leaf(uniform({n, length, in}, -1, 1, 1)),
                w_ih = leaf(uniform({4 * h, in}, -0.5, 0.5, 2)),
                w_hh = leaf(uniform({4 * h, h}, -0.5, 0.5, 3)),
                b_ih = leaf(uniform({4 * h}, -1, 1, 4)), b_hh = leaf(uniform({4 * h}, -1, 1, 5)),
                h0 = leaf(uniform({n, h}, -1, 1, 6)), c0 = leaf(uniform({n, h}, -1, 1, 7));
        const V fast = ad::lstm(x, w_ih, w_hh, b_ih, b_hh, h0, c0);
        V hs = h0, cs = c0;
        std::vector<V> steps;
        const V xw = ad::linear(x, w_ih, b_ih);
        for (std::size_t t = 0; t < length; ++t) {
          const V hc = ad::lstm_cell(ad::select(xw, 1, t), ad::linear(hs, w_hh, b_hh), cs);
          hs = ad::slice(hc, 1, 0, h);
          cs = ad::slice(hc, 1, h, 2 * h);
          steps.push_back(hs);
        }
        steps.push_back(cs);
        const V slow = ad::stack(steps, 1);
        BOOST_TEST(all_close(fast.value(), slow.value(), 1e-12, 1e-13));
        const std::vector<V> inputs{x, w_ih, w_hh, b_ih, b_hh, h0, c0};
        const auto gf = ad::grad(weighted(fast, 8), inputs);
        const auto gs = ad::grad(weighted(slow, 8), inputs);
        for (std::size_t i = 0; i < inputs.size(); ++i)
          BOOST_TEST(all_close(gf[i].value(), gs[i].value(), 1e-11, 1e-13), "input " << i);
      }
    }
  // The same bits on one and two threads: 16 sequences (one chunk of rows), every gradient; 40
  // sequences (two chunks, on two threads), the output and the gradients of x and h0, which the
  // recurrence makes (the weights' gradients are one product each over all steps, whose inner sum
  // OpenBLAS splits over its threads at that size in a build without oneDNN).
  for (const std::size_t n : {16, 40}) {
    const ad::Variable<float> x(uniform<float>({n, 9, 12}, -1, 1, 1), true),
        w_ih(uniform<float>({256, 12}, -0.3, 0.3, 2), true),
        w_hh(uniform<float>({256, 64}, -0.3, 0.3, 3), true),
        b(uniform<float>({256}, -1, 1, 4), true), h0(uniform<float>({n, 64}, -1, 1, 5), true);
    same_bits_on_one_and_two_threads([&] { return ad::lstm(x, w_ih, w_hh, b, b, h0, h0); },
                                     n == 16
                                         ? std::vector<ad::Variable<float>>{x, w_ih, w_hh, b, h0}
                                         : std::vector<ad::Variable<float>>{x, h0});
  }
  const ad::Variable<float> x(uniform<float>({16, 9, 12}, -1, 1, 1), true),
      w_ih(uniform<float>({256, 12}, -0.3, 0.3, 2), true),
      w_hh(uniform<float>({256, 64}, -0.3, 0.3, 3), true), b(uniform<float>({256}, -1, 1, 4), true),
      h0(uniform<float>({16, 64}, -1, 1, 5), true);
  BOOST_CHECK_EXCEPTION(
      ad::lstm(x, w_ih, w_hh, b, b, h0, ad::Variable<float>(uniform<float>({16, 3}))), ad::Error,
      [](const ad::Error& e) { return std::string(e.what()).find("lstm: x (16,9,12)") == 0; });
}

BOOST_AUTO_TEST_CASE(layer_norm_equals_its_composite) {
  const V x = leaf(uniform({4, 3, 37}, -3, 5, 1)), w = leaf(uniform({37}, 0.5, 1.5, 2)),
          b = leaf(uniform({37}, -1, 1, 3));
  const V fast = ad::layer_norm(x, 1, w, b, 1e-5);
  const V centred = x - ad::mean(x, {-1}, true);
  const V slow = centred / ad::sqrt(ad::mean(ad::square(centred), {-1}, true) + 1e-5) * w + b;
  BOOST_TEST(all_close(fast.value(), slow.value(), 1e-12, 1e-12));
  const auto gf = ad::grad(weighted(fast, 4), {x, w, b});
  const auto gs = ad::grad(weighted(slow, 4), {x, w, b});
  for (std::size_t i = 0; i < 3; ++i)
    BOOST_TEST(all_close(gf[i].value(), gs[i].value(), 1e-10, 1e-12), "input " << i);
  // Rows far from zero: the statistics stay exact in float (summed in double, centred first).
  Array<float> far = uniform<float>({2, 4096}, -1, 1, 5);
  far += 1000.0f;
  const Array<float> y = ad::layer_norm(ad::Variable<float>(far)).value();
  const Array<double> yd = ad::layer_norm(V(Array<double>(far))).value();
  BOOST_TEST(all_close(y, yd, 1e-4, 1e-4));
}

BOOST_AUTO_TEST_CASE(gelu_equals_its_formulas) {
  const V x = leaf(uniform({3, 50}, -5, 5, 1));
  const V exact = x * (ad::erf(x * M_SQRT1_2) + 1.0) * 0.5;
  const V approx = x * (ad::tanh((x + x * x * x * 0.044715) * std::sqrt(2.0 / M_PI)) + 1.0) * 0.5;
  for (const auto& [form, slow] :
       {std::pair{ad::Gelu::erf, exact}, std::pair{ad::Gelu::tanh, approx}}) {
    const V fast = ad::gelu(x, form);
    BOOST_TEST(all_close(fast.value(), slow.value(), 1e-12, 1e-14));
    BOOST_TEST(all_close(ad::grad(weighted(fast, 2), {x})[0].value(),
                         ad::grad(weighted(slow, 2), {x})[0].value(), 1e-11, 1e-13));
    // float: the SIMD kernels against the double result
    const Array<float> f32 = ad::gelu(ad::Variable<float>(Array<float>(x.value())), form).value();
    BOOST_TEST(all_close(f32, fast.value(), 1e-5, 1e-6));
  }
}

BOOST_AUTO_TEST_SUITE_END()
