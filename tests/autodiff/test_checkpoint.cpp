// checkpoint(): the same gradients as without it (first and second order, backward and grad()),
// parameters found inside, the memory it saves, and a clear error when the rerun differs.
#include <boost/test/unit_test.hpp>

#include <random>

#include "autodiff/allocator.hpp"
#include "helpers.hpp"

namespace tt = boost::test_tools;
using ad::Array;
using V = ad::Variable<double>;

namespace {

/// A stack of tanh(x·Wᵀ + b) layers; block(k) is layer k as a function of its input.
struct Mlp {
  std::vector<V> w, b;
  Mlp(std::size_t depth, std::size_t width) {
    for (std::size_t k = 0; k < depth; ++k) {
      w.push_back(ad::param(ad::test::uniform({width, width}, -0.6, 0.6, 100 + k)));
      b.push_back(ad::param(ad::test::uniform({width}, -0.1, 0.1, 200 + k)));
    }
  }
  V layer(const V& x, std::size_t k) const { return ad::tanh(ad::linear(x, w[k], b[k])); }
  /// Layers [from, to).
  V run(V x, std::size_t from, std::size_t to) const {
    for (std::size_t k = from; k < to; ++k) x = layer(x, k);
    return x;
  }
  /// The whole stack, checkpointed in segments of `segment` layers (0: not at all).
  V forward(const V& x, std::size_t segment) const {
    if (segment == 0) return run(x, 0, w.size());
    V h = x;
    for (std::size_t k = 0; k < w.size(); k += segment) {
      const std::size_t to = std::min(w.size(), k + segment);
      h = ad::checkpoint([this, k, to](const V& in) { return run(in, k, to); }, h);
    }
    return h;
  }
  void zero_grad() {
    for (auto& p : w) p.zero_grad();
    for (auto& p : b) p.zero_grad();
  }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(checkpoint)

BOOST_AUTO_TEST_CASE(same_gradients_as_without_it) {
  Mlp net(6, 5);
  V x = ad::test::leaf(ad::test::uniform({4, 5}, -1, 1, 1));
  ad::sum(ad::square(net.forward(x, 0))).backward();
  const Array<double> gx = x.grad().value(), gw0 = net.w[0].grad().value(),
                      gb5 = net.b[5].grad().value();
  for (std::size_t segment : {1, 2, 4}) {
    BOOST_TEST_CONTEXT("segments of " << segment) {
      x.zero_grad();
      net.zero_grad();
      V y = net.forward(x, segment);
      BOOST_TEST(y.op_name() == std::string("checkpoint"));
      ad::sum(ad::square(y)).backward();
      BOOST_TEST(ad::test::all_close(x.grad().value(), gx, 1e-14, 1e-15));
      BOOST_TEST(ad::test::all_close(net.w[0].grad().value(), gw0, 1e-14, 1e-15));
      BOOST_TEST(ad::test::all_close(net.b[5].grad().value(), gb5, 1e-14, 1e-15));
    }
  }
  // grad() through it leaves the parameters' .grad alone.
  net.zero_grad();
  const Array<double> via_grad = ad::grad(ad::sum(ad::square(net.forward(x, 2))), {x})[0].value();
  BOOST_TEST(ad::test::all_close(via_grad, gx, 1e-14, 1e-15));
  BOOST_TEST(!net.w[0].has_grad());
}

BOOST_AUTO_TEST_CASE(second_order_and_gradcheck_through_it) {
  Mlp net(3, 3);
  // A checkpoint inside a checkpoint, with a captured non-leaf (scale) and two inputs.
  auto f = [&net](const V& x, const V& s) {
    V scale = ad::exp(s);
    auto inner = [&net, scale](const V& h) { return net.run(h, 1, 3) * scale; };
    return ad::sum(ad::checkpoint(
        [inner, &net](const V& a, const V& c) {
          return ad::checkpoint(inner, net.layer(a, 0)) + c;
        },
        x, s * 2.0));
  };
  ad::GradcheckOptions o;
  o.second_order = true;
  BOOST_TEST(ad::testing::passed(ad::gradcheck(
      f, {ad::test::leaf(ad::test::uniform({2, 3})), ad::test::leaf(Array<double>(0.3))}, o)));
  // The Hessian-vector product through checkpoints equals the one without.
  const Array<double> x0 = ad::test::uniform({2, 3}, -1, 1, 5), v = ad::test::uniform({2, 3});
  auto plain = [&net](const V& x) { return ad::sum(ad::square(net.forward(x, 0))); };
  auto ckpt = [&net](const V& x) { return ad::sum(ad::square(net.forward(x, 1))); };
  BOOST_TEST(ad::test::all_close(ad::hvp(ckpt, x0, v), ad::hvp(plain, x0, v), 1e-12, 1e-14));
}

BOOST_AUTO_TEST_CASE(hooks_of_a_parameter_inside_run_once) {
  Mlp net(2, 3);
  int calls = 0;
  net.w[1].register_hook([&calls](const V& g) {
    ++calls;
    return g * 0.5;
  });
  V x(ad::test::uniform({2, 3}));
  ad::sum(net.forward(x, 0)).backward();
  const Array<double> plain = net.w[1].grad().value();
  net.zero_grad();
  ad::sum(net.forward(x, 1)).backward();
  BOOST_TEST(calls == 2);
  BOOST_TEST(ad::test::all_close(net.w[1].grad().value(), plain, 1e-14, 1e-15));
}

BOOST_AUTO_TEST_CASE(it_keeps_less_memory) {
  // 32 layers of width 64 at batch 512: without checkpoints every layer's output and its
  // pre-activation stay for backward (64 arrays of 128 KiB); with segments of 4 only the segment
  // boundaries do, and one segment's intermediates while it is recomputed.
  ad::Variable<float> x(Array<float>(ad::test::uniform<float>({512, 64})));
  std::vector<ad::Variable<float>> w;
  for (std::size_t k = 0; k < 32; ++k)
    w.push_back(ad::param(Array<float>(ad::test::uniform<float>({64, 64}, -0.2, 0.2, k))));
  auto peak_of = [&](std::size_t segment) {
    ad::memory::reset_peak_memory();
    const std::size_t before = ad::memory::memory_stats().in_use;
    ad::Variable<float> h = x;
    for (std::size_t k = 0; k < w.size(); k += segment) {
      auto run = [&w, k, segment](const ad::Variable<float>& in) {
        ad::Variable<float> a = in;
        for (std::size_t j = k; j < k + segment; ++j) a = ad::tanh(ad::linear(a, w[j]));
        return a;
      };
      h = segment == 1 ? run(h) : ad::checkpoint(run, h);
    }
    ad::sum(h).backward();
    for (auto& p : w) p.zero_grad();
    return ad::memory::memory_stats().peak - before;
  };
  const std::size_t plain = peak_of(1), checkpointed = peak_of(4);
  BOOST_TEST_MESSAGE("peak bytes: " << plain << " without, " << checkpointed << " with");
  BOOST_TEST(checkpointed < plain / 2);
}

BOOST_AUTO_TEST_CASE(a_rerun_that_differs_is_an_error) {
  V x = ad::test::leaf(ad::test::uniform({3}));
  int runs = 0;
  V y = ad::checkpoint([&runs](const V& a) { return a * double(++runs); }, x);
  BOOST_CHECK_EXCEPTION(ad::sum(y).backward(), ad::Error, [](const ad::Error& e) {
    return std::string(e.what()).find(
               "checkpoint: running the function again in backward gave "
               "a different output") == 0;
  });
  // Without grad mode it is just the function.
  ad::NoGradGuard off;
  BOOST_TEST(ad::checkpoint([](const V& a) { return a * 2.0; }, x).is_leaf());
}

BOOST_AUTO_TEST_SUITE_END()
