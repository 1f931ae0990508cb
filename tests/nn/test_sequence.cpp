// Sequence layers: LSTM, GRU, multi-head attention, positional embeddings. Forward values against
// plain loops written from the defining equations (PyTorch's), gradients against the central
// difference in double to second order, state carried across chunks, and bad shapes refused.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <limits>
#include <vector>

#include <xtensor/xview.hpp>

#include "examples/models.hpp"
#include "helpers.hpp"
#include "nn/gradcheck.hpp"
#include "nn/nn.hpp"

namespace tt = boost::test_tools;
using ad::Array;
using ad::Shape;
using ad::test::leaf;
using ad::test::uniform;
using ad::testing::passed;
namespace nn = ad::nn;
using V = ad::Variable<double>;

namespace {

double sigmoid(double v) {
  return 1 / (1 + std::exp(-v));
}

/// Row r of W (rows × cols) times v, plus b[r] (b may be null).
double dot_row(const Array<double>& w, std::size_t r, const double* v, const Array<double>* b) {
  const std::size_t cols = w.shape()[1];
  double s = b ? (*b)(r) : 0.0;
  for (std::size_t k = 0; k < cols; ++k) s += w(r, k) * v[k];
  return s;
}

/// A named parameter's value.
Array<double> param(const nn::Module<double>& m, const std::string& name) {
  for (const auto& [n, p] : m.named_parameters())
    if (n == name) return p.value();
  BOOST_FAIL("no parameter " << name);
  return {};
}

/// The recurrent layer by the loops of its equations: (N, L, H) outputs, final h and c.
struct LoopResult {
  Array<double> output, h, c;
};
LoopResult loop_recurrent(const nn::Module<double>& m, bool lstm, const Array<double>& x,
                          std::size_t hidden, std::size_t layers) {
  const std::size_t n = x.shape()[0], length = x.shape()[1], H = hidden;
  Array<double> input = x;
  LoopResult r{{}, xt::zeros<double>({layers, n, H}), xt::zeros<double>({layers, n, H})};
  for (std::size_t l = 0; l < layers; ++l) {
    const std::string s = "_l" + std::to_string(l);
    const Array<double> wi = param(m, "weight_ih" + s), wh = param(m, "weight_hh" + s),
                        bi = param(m, "bias_ih" + s), bh = param(m, "bias_hh" + s);
    Array<double> out = xt::zeros<double>({n, length, H});
    for (std::size_t b = 0; b < n; ++b) {
      std::vector<double> h(H, 0.0), c(H, 0.0), xt_(input.shape()[2]);
      for (std::size_t t = 0; t < length; ++t) {
        for (std::size_t k = 0; k < xt_.size(); ++k) xt_[k] = input(b, t, k);
        std::vector<double> nh(H), nc(H);
        for (std::size_t j = 0; j < H; ++j) {
          auto pre = [&](std::size_t g) {
            return dot_row(wi, g * H + j, xt_.data(), &bi) + dot_row(wh, g * H + j, h.data(), &bh);
          };
          if (lstm) {
            const double i = sigmoid(pre(0)), f = sigmoid(pre(1)), g = std::tanh(pre(2)),
                         o = sigmoid(pre(3));
            nc[j] = f * c[j] + i * g;
            nh[j] = o * std::tanh(nc[j]);
          } else {
            const double rr = sigmoid(pre(0)), z = sigmoid(pre(1));
            const double nn_ = std::tanh(dot_row(wi, 2 * H + j, xt_.data(), &bi) +
                                         rr * dot_row(wh, 2 * H + j, h.data(), &bh));
            nh[j] = (1 - z) * nn_ + z * h[j];
          }
        }
        h = nh, c = nc;
        for (std::size_t j = 0; j < H; ++j) out(b, t, j) = h[j];
      }
      for (std::size_t j = 0; j < H; ++j) r.h(l, b, j) = h[j], r.c(l, b, j) = lstm ? c[j] : 0.0;
    }
    input = out;
  }
  r.output = input;
  return r;
}

void check_close(const Array<double>& a, const Array<double>& b) {
  BOOST_REQUIRE(a.shape() == b.shape());
  for (std::size_t i = 0; i < a.size(); ++i)
    BOOST_TEST(a.data()[i] == b.data()[i], tt::tolerance(1e-12));
}

}  // namespace

BOOST_AUTO_TEST_SUITE(sequence)

BOOST_AUTO_TEST_CASE(lstm_and_gru_match_their_equations) {
  for (bool lstm : {true, false}) {
    BOOST_TEST_CONTEXT((lstm ? "LSTM" : "GRU")) {
      nn::Generator rng(3);
      std::shared_ptr<nn::Recurrent<double>> m;
      if (lstm)
        m = std::make_shared<nn::LSTM<double>>(3, 4, rng, 2);
      else
        m = std::make_shared<nn::GRU<double>>(3, 4, rng, 2);
      const Array<double> x = uniform<double>({2, 5, 3}, -2, 2, 7);
      auto out = m->forward(V(x), {});
      auto ref = loop_recurrent(*m, lstm, x, 4, 2);
      check_close(out.output.value(), ref.output);
      check_close(out.state.h.value(), ref.h);
      if (lstm) check_close(out.state.c.value(), ref.c);
      BOOST_TEST(out.state.c.defined() == lstm);
      // PyTorch's names and shapes.
      BOOST_TEST(param(*m, "weight_ih_l1").shape() == Shape({(lstm ? 4u : 3u) * 4, 4}));
      BOOST_TEST(m->named_parameters().size() == 8u);
      // Initialised from U(±1/√hidden).
      for (const auto& p : m->parameters())
        for (double w : p.value()) BOOST_TEST(std::abs(w) <= 0.5);
      // Two chunks with the state carried equal the whole sequence.
      auto first =
          m->forward(V(Array<double>(xt::view(x, xt::all(), xt::range(0, 2), xt::all()))), {});
      auto second = m->forward(V(Array<double>(xt::view(x, xt::all(), xt::range(2, 5), xt::all()))),
                               first.state);
      check_close(second.state.h.value(), ref.h);
      Array<double> tail = xt::view(ref.output, xt::all(), xt::range(2, 5), xt::all());
      check_close(second.output.value(), tail);
      // The plain forward is from a zero state.
      check_close((*m)(V(x)).value(), ref.output);
    }
  }
}

BOOST_AUTO_TEST_CASE(recurrent_gradients_to_second_order) {
  nn::Generator rng(4);
  nn::LSTM<double> lstm(2, 3, rng, 2);
  nn::GRU<double> gru(2, 3, rng, 2);
  nn::LSTM<double> no_bias(2, 3, rng, 1, false);
  V x = leaf(uniform<double>({2, 3, 2}));
  BOOST_TEST(passed(nn::gradcheck_module(lstm, x, ad::test::second_order())));
  BOOST_TEST(passed(nn::gradcheck_module(gru, x, ad::test::second_order())));
  BOOST_TEST(passed(nn::gradcheck_module(no_bias, x)));
  BOOST_TEST(no_bias.named_parameters().size() == 2u);
  // Through a given state: the gradient reaches h0 and c0.
  V h0 = leaf(uniform<double>({2, 2, 3}, -1, 1, 8)),
    c0 = leaf(uniform<double>({2, 2, 3}, -1, 1, 9));
  auto f = [&](const std::vector<V>& in) {
    auto out = lstm.forward(in[0], {in[1], in[2]});
    return ad::sum(out.output * out.output) + ad::sum(out.state.c);
  };
  BOOST_TEST(passed(ad::gradcheck(f, {x, h0, c0}, ad::test::second_order())));
}

BOOST_AUTO_TEST_CASE(recurrent_shapes_are_checked) {
  nn::Generator rng(5);
  nn::LSTM<double> lstm(2, 3, rng, 2);
  nn::GRU<double> gru(2, 3, rng);
  auto says = [](const char* text) {
    return [text](const ad::Error& e) {
      return std::string(e.what()).find(text) != std::string::npos;
    };
  };
  BOOST_CHECK_EXCEPTION(lstm(V(uniform<double>({2, 3, 4}))), ad::Error,
                        says("LSTM: input (2,3,4) is not (N, L, 2)"));
  BOOST_CHECK_EXCEPTION(lstm(V(uniform<double>({3, 2}))), ad::Error, says("LSTM: input (3,2)"));
  BOOST_CHECK_EXCEPTION(
      lstm.forward(V(uniform<double>({2, 3, 2})), {V(uniform<double>({1, 2, 3})), {}}), ad::Error,
      says("state h is (1,2,3), expected (2,2,3)"));
  BOOST_CHECK_EXCEPTION(
      gru.forward(V(uniform<double>({2, 3, 2})), {{}, V(uniform<double>({1, 2, 3}))}), ad::Error,
      says("GRU: has no cell state"));
  BOOST_CHECK_THROW(nn::LSTM<double>(0, 3, rng), ad::Error);
  // An empty sequence gives an empty output and the initial state.
  auto out = lstm.forward(V(Array<double>(xt::zeros<double>({2, 0, 2}))), {});
  BOOST_TEST(out.output.shape() == Shape({2, 0, 3}));
  BOOST_TEST(out.state.h.shape() == Shape({2, 2, 3}));
}

BOOST_AUTO_TEST_CASE(the_key_value_cache_gives_the_outputs_of_the_whole_sequence) {
  for (bool causal : {false, true}) {
    BOOST_TEST_CONTEXT("causal " << causal) {
      nn::Generator rng(8);
      nn::MultiheadAttention<double> att(8, 2, rng, causal);
      const V x(uniform<double>({2, 7, 8}, -1, 1, 9));
      const Array<double> whole = att(x).value();
      // Positions fed in chunks of 3, 1, 1 and 2, each after the cache of the ones before.
      nn::AttentionCache<double> cache;
      std::size_t at = 0;
      for (std::size_t chunk : {3, 1, 1, 2}) {
        const Array<double> part = att.forward(ad::slice(x, 1, at, at + chunk), cache).value();
        BOOST_TEST(cache.length() == at + chunk);
        if (causal) {  // with the causal rule, the chunk's outputs are the whole sequence's
          const Array<double> want = ad::slice(V(whole), 1, at, at + chunk).value();
          BOOST_TEST(ad::test::all_close(part, want, 1e-12, 1e-12), "chunk at " << at);
        }
        at += chunk;
      }
      // Without it, the last chunk sees every position, as the whole sequence does.
      if (!causal) {
        nn::AttentionCache<double> c2;
        att.forward(ad::slice(x, 1, 0, 5), c2);
        const Array<double> last = att.forward(ad::slice(x, 1, 5, 7), c2).value();
        BOOST_TEST(ad::test::all_close(last, ad::slice(V(whole), 1, 5, 7).value(), 1e-12, 1e-12));
      }
      nn::AttentionCache<double> wrong;
      att.forward(ad::slice(x, 1, 0, 2), wrong);
      BOOST_CHECK_THROW(att.forward(V(uniform<double>({3, 1, 8})), wrong), ad::Error);
    }
  }
}

BOOST_AUTO_TEST_CASE(char_lm_models_generate_a_position_at_a_time) {
  // The example's models fed one byte at a time (the LSTM carrying its state, the transformer its
  // caches) give the logits of the whole sequence at once.
  nn::Generator rng(10);
  const ad::Variable<float> x(ad::test::token_ids({2, 6}, 20));
  examples::LstmModel lstm(20, 8, 16, 2, rng);
  examples::TransformerModel transformer(20, 16, 4, 2, 6, rng);
  for (nn::Module<float>* model :
       {static_cast<nn::Module<float>*>(&lstm), static_cast<nn::Module<float>*>(&transformer)}) {
    const Array<float> whole = (*model)(x).value();  // (2·6, 20)
    float scale = 0;
    for (float v : whole) scale = std::max(scale, std::abs(v));
    nn::RecurrentState<float> state;
    std::vector<nn::AttentionCache<float>> caches;
    for (std::size_t t = 0; t < 6; ++t) {
      const ad::Variable<float> step = ad::slice(x, 1, t, t + 1);
      const Array<float> got = model == &lstm ? lstm.forward(step, state).value()
                                              : transformer.forward(step, caches).value();
      for (std::size_t b = 0; b < 2; ++b)  // float, summed in another order: 1e-5 of the largest
        for (std::size_t k = 0; k < 20; ++k)
          BOOST_TEST(std::abs(got(b, k) - whole(b * 6 + t, k)) <= 1e-5f * scale);
    }
  }
}

BOOST_AUTO_TEST_CASE(attention_matches_its_equations_with_and_without_the_causal_mask) {
  for (bool causal : {false, true}) {
    BOOST_TEST_CONTEXT("causal " << causal) {
      nn::Generator rng(6);
      const std::size_t n = 2, length = 4, dim = 6, heads = 2, d = 3;
      nn::MultiheadAttention<double> att(dim, heads, rng, causal);
      att.keep_weights(true);
      // Nonzero biases, so that they are checked too.
      for (auto& [name, p] : att.named_parameters())
        if (name.find("bias") != std::string::npos)
          p.mutable_value() = uniform<double>(p.shape(), -0.5, 0.5, 11);
      const Array<double> x = uniform<double>({n, length, dim}, -1, 1, 12);
      const Array<double> y = att(V(x)).value();
      const Array<double> wi = param(att, "in_proj_weight"), bi = param(att, "in_proj_bias"),
                          wo = param(att, "out_proj.weight"), bo = param(att, "out_proj.bias");
      for (std::size_t b = 0; b < n; ++b) {
        // q, k, v of every position.
        std::vector<std::vector<double>> qkv(length, std::vector<double>(3 * dim));
        for (std::size_t t = 0; t < length; ++t) {
          std::vector<double> xv(dim);
          for (std::size_t k = 0; k < dim; ++k) xv[k] = x(b, t, k);
          for (std::size_t r = 0; r < 3 * dim; ++r) qkv[t][r] = dot_row(wi, r, xv.data(), &bi);
        }
        for (std::size_t t = 0; t < length; ++t) {
          std::vector<double> context(dim, 0.0);
          for (std::size_t h = 0; h < heads; ++h) {
            std::vector<double> w(length, 0.0);
            double most = -std::numeric_limits<double>::infinity(), total = 0;
            const std::size_t visible = causal ? t + 1 : length;
            for (std::size_t s = 0; s < visible; ++s) {
              for (std::size_t k = 0; k < d; ++k)
                w[s] += qkv[t][h * d + k] * qkv[s][dim + h * d + k];
              w[s] /= std::sqrt(double(d));
              most = std::max(most, w[s]);
            }
            for (std::size_t s = 0; s < visible; ++s) total += w[s] = std::exp(w[s] - most);
            for (std::size_t s = 0; s < visible; ++s)
              for (std::size_t k = 0; k < d; ++k)
                context[h * d + k] += w[s] / total * qkv[s][2 * dim + h * d + k];
          }
          for (std::size_t r = 0; r < dim; ++r)
            BOOST_TEST(y(b, t, r) == dot_row(wo, r, context.data(), &bo), tt::tolerance(1e-12));
        }
      }
      // Averaged weights: rows sum to 1, zero above the diagonal when causal.
      const Array<double>& w = att.last_weights();
      BOOST_TEST(w.shape() == Shape({n, length, length}));
      for (std::size_t b = 0; b < n; ++b)
        for (std::size_t i = 0; i < length; ++i) {
          double row = 0;
          for (std::size_t j = 0; j < length; ++j) {
            row += w(b, i, j);
            if (causal && j > i) BOOST_TEST(w(b, i, j) == 0.0);
          }
          BOOST_TEST(row == 1.0, tt::tolerance(1e-12));
        }
      // Causal: changing a later position leaves the earlier outputs as they were.
      if (causal) {
        Array<double> changed = x;
        xt::view(changed, xt::all(), length - 1, xt::all()) += 5.0;
        const Array<double> y2 = att(V(changed)).value();
        for (std::size_t b = 0; b < n; ++b)
          for (std::size_t t = 0; t + 1 < length; ++t)
            for (std::size_t r = 0; r < dim; ++r) BOOST_TEST(y2(b, t, r) == y(b, t, r));
      }
      BOOST_TEST(passed(nn::gradcheck_module(att, leaf(x), ad::test::second_order())));
    }
  }
  nn::Generator rng(7);
  BOOST_CHECK_THROW(nn::MultiheadAttention<double>(6, 4, rng), ad::Error);
  nn::MultiheadAttention<double> att(6, 3, rng);
  BOOST_CHECK_THROW(att(V(uniform<double>({2, 4, 5}))), ad::Error);
}

BOOST_AUTO_TEST_CASE(positional_embeddings) {
  nn::Generator rng(8);
  nn::PositionalEmbedding<double> learned(5, 4, rng);
  nn::SinusoidalPositionalEncoding<double> fixed(5, 4);
  const Array<double> x = uniform<double>({2, 3, 4});
  const Array<double> table = param(learned, "weight");
  const Array<double> y = learned(V(x)).value(), z = fixed(V(x)).value();
  for (std::size_t b = 0; b < 2; ++b)
    for (std::size_t p = 0; p < 3; ++p)
      for (std::size_t j = 0; j < 4; ++j) {
        BOOST_TEST(y(b, p, j) == x(b, p, j) + table(p, j));
        const double angle = double(p) / std::pow(10000.0, double(j / 2 * 2) / 4.0);
        BOOST_TEST(z(b, p, j) == x(b, p, j) + (j % 2 ? std::cos(angle) : std::sin(angle)),
                   tt::tolerance(1e-15));
      }
  BOOST_TEST(fixed.parameters().empty());
  BOOST_TEST(passed(nn::gradcheck_module(learned, leaf(x), ad::test::second_order())));
  BOOST_TEST(passed(nn::gradcheck_module(fixed, leaf(x), ad::test::second_order())));
  BOOST_CHECK_EXCEPTION(learned(V(uniform<double>({1, 6, 4}))), ad::Error, [](const ad::Error& e) {
    return std::string(e.what()).find("longer than the 5 positions") != std::string::npos;
  });
  BOOST_CHECK_THROW(fixed(V(uniform<double>({1, 6, 4}))), ad::Error);
  BOOST_CHECK_THROW(fixed(V(uniform<double>({1, 2, 3}))), ad::Error);
}

BOOST_AUTO_TEST_SUITE_END()
