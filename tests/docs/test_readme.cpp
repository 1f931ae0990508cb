// The C++ examples of the README and of the guide (docs/*.md), compiled and run: each ```cpp
// block stands here verbatim (in a test case, with what it needs around it), and the first test
// checks that they still match, so that an example in the docs cannot stop compiling unnoticed.
#include <boost/test/unit_test.hpp>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <regex>
#include <sstream>

#include <autodiff/autodiff.hpp>
#include <autodiff/boost_test.hpp>
#include <autodiff/gradcheck.hpp>
#include <autodiff/kernels/gemm.hpp>

#include "nn/nn.hpp"
#ifdef AD_WITH_ONNX
#include "interop/onnx.hpp"
#include "interop/safetensors.hpp"
#endif

// The README's blocks as they are written there (clang-format would change them).
// clang-format off

namespace {

// README: "Custom ops"
template <class T>
ad::Variable<T> swish(const ad::Variable<T>& x) {
  ad::Array<T> s = 1.0 / (1.0 + xt::exp(-x.value()));
  ad::Array<T> y = x.value() * s;
  return ad::make_op<T>("swish", std::move(y), {x},
      [](const ad::BackwardContext<T>& c) -> ad::Grads<T> {
        // d/dx = g·(s + x·s·(1 − s))
        const auto& x = c.input(0);
        auto s = ad::sigmoid(x);
        return {c.grad * (s + x * s * (1.0 - s))};
      });
}

// README: "A model of your own"
namespace nn = ad::nn;

struct Net : nn::Module<float> {
  std::shared_ptr<nn::Linear<float>> fc1, fc2;
  explicit Net(nn::Generator& rng)
      : fc1(register_module("fc1", std::make_shared<nn::Linear<float>>(784, 256, rng))),
        fc2(register_module("fc2", std::make_shared<nn::Linear<float>>(256, 10, rng))) {}
  ad::Variable<float> forward(const ad::Variable<float>& x) override {
    return fc2->forward(ad::relu(fc1->forward(x)));
  }
};

std::string read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

/// The lines of a text without their leading and trailing blanks, empty lines and #includes
/// dropped.
std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    line.erase(0, line.find_first_not_of(" \t"));
    line.erase(line.find_last_not_of(" \t") + 1);
    if (!line.empty() && line.rfind("#include", 0) != 0) out.push_back(line);
  }
  return out;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(readme)

BOOST_AUTO_TEST_CASE(every_cpp_block_of_the_readme_and_the_guide_is_here) {
  // Here, or (the data-parallel example, which needs MPI) in tests/distributed/readme_example.cpp.
  const std::vector<std::vector<std::string>> files = {
      lines_of(read(__FILE__)),
      lines_of(read(std::string(AD_SOURCE_DIR) + "/tests/distributed/readme_example.cpp"))};
  std::vector<std::string> pages = {"README.md"};
  for (const auto& entry : std::filesystem::directory_iterator(std::string(AD_SOURCE_DIR) + "/docs"))
    if (entry.path().extension() == ".md") pages.push_back("docs/" + entry.path().filename().string());
  const std::regex block("```cpp\\n([\\s\\S]*?)```");
  std::size_t blocks = 0;
  for (const std::string& page : pages) {
    const std::string text = read(std::string(AD_SOURCE_DIR) + "/" + page);
    BOOST_TEST_REQUIRE(!text.empty(), page);
    std::size_t n = 0;
    for (std::sregex_iterator it(text.begin(), text.end(), block), end; it != end; ++it) {
      ++n;
      const std::vector<std::string> want = lines_of((*it)[1]);
      bool found = false;
      for (const auto& here : files)
        for (std::size_t at = 0; !found && at + want.size() <= here.size(); ++at)
          found = std::equal(want.begin(), want.end(), here.begin() + static_cast<long>(at));
      BOOST_TEST(found, page << " block " << n << " is not in " << __FILE__
                             << " nor in tests/distributed/readme_example.cpp:\n"
                             << (*it)[1]);
    }
    blocks += n;
  }
  BOOST_TEST(pages.size() >= 8u);
  BOOST_TEST(blocks >= 15u);
}

BOOST_AUTO_TEST_CASE(a_first_model) {
  // (The first 10,000 Fashion-MNIST images, three epochs: the loss comes down from about
  // log 10 = 2.3.)
  namespace nn = ad::nn;
  namespace data = nn::datasets;
  auto train = data::mnist_dataset(data::load_mnist(data::fashion_mnist_dir, /*train=*/true),
                                   /*as_images=*/false, /*limit=*/10000);
  nn::LoaderOptions lo;
  lo.batch_size = 100;
  nn::DataLoader<float> loader(train, lo);

  nn::Generator rng(42);                 // every random choice comes from a seeded generator
  nn::Sequential<float> model(std::make_shared<nn::Linear<float>>(784, 256, ad::Activation::relu, rng),
                              std::make_shared<nn::Linear<float>>(256, 10, rng));
  nn::SGDOptions so;
  so.lr = 0.1, so.momentum = 0.9;
  nn::SGD<float> opt(model.parameters(), so);
  for (std::size_t epoch = 0; epoch < 3; ++epoch)
    for (const nn::Batch<float>& batch : loader.epoch(epoch)) {
      opt.zero_grad();
      ad::Variable<float> loss = nn::cross_entropy(model(batch.inputs), batch.targets);
      loss.backward();
      opt.step();
    }
  const nn::Batch<float> first = *loader.epoch(0).begin();
  BOOST_TEST(nn::cross_entropy(model(first.inputs), first.targets).item() < 0.8);
}

BOOST_AUTO_TEST_CASE(gradients) {
  ad::Variable<double> x(ad::Array<double>{3.0, 4.0}, /*requires_grad=*/true);
  auto f = ad::sum(x * x);       // f(x0, x1) = x0² + x1²
  f.backward();                  // x.grad() is (6, 8)
  BOOST_TEST(x.grad().value() == (ad::Array<double>{6.0, 8.0}));
}

BOOST_AUTO_TEST_CASE(gradients_of_gradients) {
  ad::Variable<double> x(ad::Array<double>{2.0}, true);
  auto f = [](const ad::Variable<double>& x) { return ad::sum(x * x * x); };
  ad::Array<double> x0{0.5, 2.0}, v{1.0, 0.0};
  auto y = x * x * x;
  auto dy = ad::grad(y, {x}, ad::BackwardOptions{true, true})[0];   // 3x², recorded
  auto d2y = ad::grad(dy, {x})[0];                                   // 6x
  ad::Array<double> H = ad::hessian(f, x0);     // shape x0.shape + x0.shape; a reverse pass per row
  ad::Array<double> Hv = ad::hvp(f, x0, v);     // Hessian-vector product, no Hessian formed
  BOOST_TEST(d2y.value()(0) == 12.0);
  BOOST_TEST(H(1, 1) == 12.0);
  BOOST_TEST(Hv(0) == 3.0);
}

BOOST_AUTO_TEST_CASE(jacobians_forward_mode_vector_products) {
  const ad::Variable<double> m(ad::Array<double>(xt::ones<double>({3, 4}) * 0.25));
  const ad::Array<double> x0 = xt::ones<double>({2, 3}), v = xt::ones<double>({2, 3}),
                          u = xt::ones<double>({2, 4});
  auto f = [&](const ad::Variable<double>& x) { return ad::tanh(ad::matmul(x, m)); };  // (2,3) → (2,4)
  ad::JvpResult<double> d = ad::jvp(f, x0, v);      // f(x0) and J·v, the derivative along v
  ad::VjpResult<double> r = ad::vjp(f, x0, u);      // f(x0) and uᵀ·J (r.grads[0])
  ad::Array<double> J = ad::jacobian(f, x0);        // shape (2,4,2,3): f's shape, then x's
  // tanh(0.75) everywhere; J·v = 3·0.25·(1 − tanh²(0.75)); uᵀ·J = 4·0.25·(1 − tanh²(0.75))
  const double t = std::tanh(0.75), dt = 1 - t * t;
  BOOST_TEST(d.value(1, 3) == t, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(d.tangent(0, 1) == 0.75 * dt, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(r.grads[0](1, 2) == dt, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(J.dimension() == 4u);
  BOOST_TEST(J(0, 1, 0, 2) == 0.25 * dt, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(J(0, 1, 1, 2) == 0.0);
}

BOOST_AUTO_TEST_CASE(recomputation) {
  const ad::Variable<float> x(ad::Array<float>(xt::ones<float>({2, 4})));
  const ad::Variable<float> w = ad::param(ad::Array<float>(xt::ones<float>({4, 4}) * 0.1f));
  std::vector<std::function<ad::Variable<float>(const ad::Variable<float>&)>> blocks(
      3, [&w](const ad::Variable<float>& a) { return ad::tanh(ad::linear(ad::tanh(ad::linear(a, w)), w)); });
  ad::Variable<float> h = x;
  for (std::size_t k = 0; k < blocks.size(); ++k)          // each block: several layers
    h = ad::checkpoint([&, k](const auto& in) { return blocks[k](in); }, h);
  BOOST_TEST(h.op_name() == std::string("checkpoint"));
  ad::sum(h).backward();
  BOOST_TEST(w.has_grad());
}

BOOST_AUTO_TEST_CASE(checking_gradients) {
  ad::Variable<double> x(ad::Array<double>{{0.1, -0.2}, {0.3, 0.4}}, true);
  ad::Variable<double> w(ad::Array<double>{{0.5, -0.6, 0.2}, {0.7, 0.1, -0.3}}, true);
  auto report = ad::gradcheck([](const auto& x, const auto& w) { return ad::tanh(ad::matmul(x, w)); },
                              {x, w});
  std::cout << report;          // per input: max abs/rel error, the worst entry, pass/fail
  BOOST_TEST(ad::testing::passed(report));   // in a Boost.Test case (autodiff/boost_test.hpp)
  BOOST_TEST(report.str().find("PASSED") != std::string::npos);
  ad::Variable<double> z(ad::Array<double>{0.3, -1.2}, true);
  BOOST_TEST(ad::testing::passed(ad::gradcheck([](const auto& x) { return swish(x); }, {z})));
}

BOOST_AUTO_TEST_CASE(custom_op_checked_on_many_cases) {
  // README: "Custom ops"
  ad::InputSpec x;                 // values in [-2, 2]; kinks, a fixed shape, requires_grad: optional
  auto found = ad::check_op([](const auto& x) { return swish(x); }, {x});
  std::cout << found;              // "check_op PASSED: 60 cases", or the smallest failing case
  BOOST_TEST(found.passed);
}

BOOST_AUTO_TEST_CASE(models_and_training) {
  nn::Generator rng0(1);
  Net net(rng0);
  BOOST_TEST(net.named_parameters()[0].first == "fc1.weight");
  nn::Generator rng(42);                 // every random choice comes from a seeded generator
  nn::Sequential<float> model(std::make_shared<nn::Linear<float>>(784, 256, rng),
                              std::make_shared<nn::ReLU<float>>(),
                              std::make_shared<nn::Linear<float>>(256, 10, rng));   // 0.weight, 2.bias, ...
  ad::Array<std::uint8_t> images = xt::zeros<std::uint8_t>({200, 784});
  ad::Array<float> labels = ad::Array<float>::from_shape({200});
  for (std::size_t i = 0; i < 200; ++i) {
    labels(i) = static_cast<float>(i % 10);
    images(i, i % 784) = 255;
  }
  auto test_loader = nn::DataLoader<float>(
      std::make_shared<nn::Dataset<std::uint8_t>>(images, labels, 1.0 / 255), nn::LoaderOptions{});
  auto train = std::make_shared<nn::Dataset<std::uint8_t>>(images, labels, 1.0 / 255);  // uint8 kept compact
  nn::LoaderOptions lo;
  lo.batch_size = 100;
  lo.seed = 1;                                  // the order of epoch e depends only on (seed, e)
  nn::DataLoader<float> loader(train, lo);      // batches copy their own rows, never the dataset

  nn::SGDOptions so;
  so.lr = 0.1, so.momentum = 0.9;
  nn::SGD<float> opt(model.parameters(), so);
  nn::TrainerOptions to;
  to.epochs = 10;
  to.metrics_csv = "metrics.csv";               // rewritten atomically after every epoch
  to.checkpoint = "model.npz";                  // saved atomically after every epoch
  nn::Trainer<float> trainer(model, opt, [](const auto& out, const auto& y) {
    return nn::cross_entropy(out, y);
  }, to);
  trainer.fit(loader, &test_loader);            // progress bar on a terminal, a line per epoch otherwise
  BOOST_TEST(trainer.epochs_done() == 10u);  // (metrics.csv and model.npz in the test's folder)
}

BOOST_AUTO_TEST_CASE(sequences) {
  nn::Generator rng(7);
  nn::LSTM<float> lstm(16, 32, rng, /*layers=*/2);
  ad::Variable<float> x(ad::Array<float>(xt::zeros<float>({4, 10, 16})));
  auto [out, state] = lstm.forward(x, {});                // out (4, 10, 32); state.h, state.c (2, 4, 32)
  auto [next, after] = lstm.forward(x, state);            // the next chunk goes on from that state
  nn::MultiheadAttention<float> attention(32, 4, rng, /*causal=*/true);
  ad::Variable<float> y = attention(out);                 // (4, 10, 32); position i sees positions <= i
  BOOST_TEST(y.shape() == ad::Shape({4, 10, 32}));
  BOOST_TEST(after.c.shape() == ad::Shape({2, 4, 32}));
  BOOST_TEST(next.shape() == out.shape());
}

BOOST_AUTO_TEST_CASE(looking_at_a_model) {
  nn::Generator rng(42);
  nn::Sequential<float> model(std::make_shared<nn::Linear<float>>(784, 256, rng),
                              std::make_shared<nn::ReLU<float>>(),
                              std::make_shared<nn::Linear<float>>(256, 10, rng));
  ad::Array<float> inputs = xt::zeros<float>({3, 784});
  std::cout << nn::summary(model, {1, 784});              // every layer, its output shape, parameters
  ad::Array<float> scores = model.predict(inputs);        // eval mode, no graph, the mode put back
  BOOST_TEST(scores.shape() == ad::Shape({3, 10}));
  BOOST_TEST(nn::summary(model, {1, 784}).str().find("total parameters: 203530") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(early_stopping_and_the_best_model) {
  nn::Generator rng(3);
  nn::Sequential<float> model(std::make_shared<nn::Linear<float>>(4, 3, rng));
  // Trained towards class 0, validated against class 1: the validation loss only rises.
  ad::Array<float> inputs = xt::ones<float>({20, 4}), zeros = xt::zeros<float>({20}),
                   ones = xt::ones<float>({20});
  nn::DataLoader<float> loader(std::make_shared<nn::Dataset<float>>(inputs, zeros), nn::LoaderOptions{});
  nn::DataLoader<float> val_loader(std::make_shared<nn::Dataset<float>>(inputs, ones), nn::LoaderOptions{});
  nn::SGDOptions so;
  so.lr = 0.1;
  nn::SGD<float> opt(model.parameters(), so);
  auto loss = [](const auto& out, const auto& y) { return nn::cross_entropy(out, y); };
  nn::TrainerOptions to;
  to.epochs = 100;
  to.patience = 5;                              // stop after 5 epochs without a better validation loss
  to.keep_best = true;                          // and end with the weights of the best epoch
  to.best_checkpoint = "best.npz";              // saved atomically whenever the loss improves
  nn::Trainer<float> trainer(model, opt, loss, to);
  nn::ReduceLROnPlateau<float> plateau(opt, {});  // the rate × 0.1 after 10 epochs without improvement
  trainer.set_plateau(&plateau);
  trainer.fit(loader, &val_loader);
  BOOST_TEST(trainer.stopped_early());
  BOOST_TEST(trainer.epochs_done() == 6u);
  BOOST_TEST(trainer.best_epoch() == 1u);
  BOOST_TEST(trainer.history()[5].val_loss > trainer.history()[0].val_loss);
}

#ifdef AD_WITH_ONNX
BOOST_AUTO_TEST_CASE(models_in_and_out) {
nn::Generator rng(1);
nn::Sequential<float> mlp(std::make_shared<nn::Linear<float>>(784, 128, ad::Activation::relu, rng),
                          std::make_shared<nn::Linear<float>>(128, 10, rng));
const ad::Variable<float> x(ad::Array<float>(xt::zeros<float>({2, 784})));
ad::Program<float> program = nn::trace(mlp, x);  // traced at batch 2 and 3: the batch is symbolic
std::cout << program.str();     // %0: f32[B,128] = linear(x, 0.weight, 0.bias) activation=relu ...
std::ofstream("mlp.dot") << program.dot();                       // dot -Tpng mlp.dot -o mlp.png
ad::Variable<float> y = program(ad::Variable<float>(ad::Array<float>(xt::ones<float>({5, 784}))));

ad::onnx::save(mlp, x, "mlp.onnx");                   // opset 17; ONNX Runtime gives its outputs
auto imported = ad::onnx::load<float>("mlp.onnx");    // an nn::Module on the library's ops
ad::Variable<float> z = (*imported)(x);               // trains, gradchecks, checkpoints
ad::interop::save_safetensors(mlp, "mlp.safetensors");  // and load_safetensors, to and from PyTorch
  BOOST_TEST(program.str().find("%0: f32[B,128] = linear(x, 0.weight, 0.bias) activation=relu") != std::string::npos);
  BOOST_TEST(y.shape() == (ad::Shape{5, 10}));
  BOOST_TEST(z.shape() == (ad::Shape{2, 10}));
  BOOST_TEST(imported->named_parameters().size() == 4u);
  for (const char* f : {"mlp.dot", "mlp.onnx", "mlp.safetensors"}) std::remove(f);
}
#endif

BOOST_AUTO_TEST_CASE(bad_input) {
  std::ostringstream printed;  // what the block prints
  std::streambuf* const out = std::cout.rdbuf(printed.rdbuf());
  ad::Variable<float> a(ad::Array<float>(xt::zeros<float>({2, 3})));
  ad::Variable<float> b(ad::Array<float>(xt::zeros<float>({4})));
  try {
    ad::Variable<float> c = a * b;
  } catch (const ad::Error& e) {
    std::cout << e.what() << "\n";   // mul: shapes (2,3) and (4) do not broadcast
  }
  nn::Generator rng(1);
  nn::Linear<float> layer(3, 2, rng);
  std::ofstream("broken.npz") << "not a zip archive";
  try {
    nn::load_checkpoint("broken.npz", layer);   // the layer is not touched
  } catch (const ad::Error& e) {
    std::cout << e.what() << "\n";   // checkpoint: cannot read 'broken.npz': Not a zip archive
  }
  std::cout.rdbuf(out);
  BOOST_TEST(printed.str() ==
             "mul: shapes (2,3) and (4) do not broadcast\n"
             "checkpoint: cannot read 'broken.npz': Not a zip archive\n");
  std::remove("broken.npz");
}

BOOST_AUTO_TEST_CASE(threads_products_and_memory) {
  ad::set_num_threads(2);                        // OpenBLAS's, oneDNN's and the library's own
  std::cout << ad::kernels::float_gemm_library() << "\n";    // "oneDNN" or "OpenBLAS"
  ad::memory::reset_peak_memory();
  ad::Variable<float> w = ad::param(ad::Array<float>(xt::ones<float>({256, 784}) * 0.01f));
  ad::Variable<float> x(ad::Array<float>(xt::ones<float>({100, 784})));
  ad::sum(ad::relu(ad::linear(x, w))).backward();
  std::cout << ad::memory::memory_stats().peak / 1024 << " KiB at most\n";  // the arrays of a step
  BOOST_TEST(ad::memory::memory_stats().peak >= 100u * 256u * sizeof(float));
  ad::set_num_threads(1);
}

BOOST_AUTO_TEST_SUITE_END()
// clang-format on
