// Training killed with SIGKILL at random moments, saves included: every checkpoint that survives
// loads, and the next save leaves no temporary behind.
#include <boost/test/unit_test.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <random>
#include <sstream>
#include <thread>

#include "helpers.hpp"
#include "nn/nn.hpp"

namespace fs = std::filesystem;
namespace nn = ad::nn;
using V = ad::Variable<float>;

namespace {

struct Setup {
  nn::Generator rng{3};
  nn::Sequential<float> model{std::make_shared<nn::Linear<float>>(8, 64, rng),
                              std::make_shared<nn::ReLU<float>>(),
                              std::make_shared<nn::Linear<float>>(64, 4, rng)};
  nn::SGD<float> opt{model.parameters(), nn::SGDOptions{0.05, 0.9}};
};

std::shared_ptr<nn::Dataset<float>> data() {
  ad::Array<float> x = ad::test::uniform<float>({64, 8});
  ad::Array<float> y = ad::Array<float>::from_shape({64});
  for (std::size_t i = 0; i < 64; ++i) y(i) = static_cast<float>(i % 4);
  return std::make_shared<nn::Dataset<float>>(x, y);
}

/// A trainer of tiny epochs, each followed by a checkpoint and the metrics.
struct Training {
  Training(const std::string& checkpoint, const std::string& csv)
      : loader(data(), loader_options()), trainer(s.model, s.opt, loss, options(checkpoint, csv)) {}
  static nn::LoaderOptions loader_options() {
    nn::LoaderOptions lo;
    lo.batch_size = 32;
    return lo;
  }
  nn::TrainerOptions options(const std::string& checkpoint, const std::string& csv) {
    nn::TrainerOptions o;
    o.epochs = 1000000;
    o.progress = nn::TrainerOptions::Progress::none;
    o.log = &log;
    o.checkpoint = checkpoint;
    o.metrics_csv = csv;
    return o;
  }
  static V loss(const V& out, const V& y) { return nn::cross_entropy(out, y); }

  Setup s;
  nn::DataLoader<float> loader;
  std::ostringstream log;
  nn::Trainer<float> trainer;
};

/// The child: trains until killed.
[[noreturn]] void train_until_killed(const std::string& checkpoint, const std::string& csv) {
  Training t(checkpoint, csv);
  try {
    t.trainer.fit(t.loader);
  } catch (...) {
  }
  _exit(3);
}

std::size_t temporaries(const fs::path& dir) {
  std::size_t n = 0;
  for (const auto& e : fs::directory_iterator(dir))
    n += e.path().filename().string().find(".tmp-") != std::string::npos;
  return n;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(killed_training)

BOOST_AUTO_TEST_CASE(checkpoints_survive_sigkill_at_any_moment) {
  const fs::path dir = fs::path(AD_BINARY_DIR) / "tests" / "kill";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string checkpoint = (dir / "model.npz").string(), csv = (dir / "metrics.csv").string();
  // How long the first checkpoint takes to appear here and now (a loaded machine or a sanitizer
  // makes it slower): the kills fall between 5 ms and three times that.
  int first_ms = 0;
  {
    const pid_t child = fork();
    BOOST_REQUIRE(child >= 0);
    if (child == 0) train_until_killed(checkpoint, csv);
    const auto t0 = std::chrono::steady_clock::now();
    while (!fs::exists(checkpoint) && first_ms < 20000) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      first_ms = int(std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::steady_clock::now() - t0)
                         .count());
    }
    ::kill(child, SIGKILL);
    ::waitpid(child, nullptr, 0);
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> delay_ms(5, std::max(80, 3 * first_ms));
  std::size_t loaded = 0, stale = 0;
  // 20 kills, and more (up to 60) while fewer than 11 left a checkpoint.
  int round = 0;
  for (; round < 20 || (loaded <= 10 && round < 60); ++round) {
    BOOST_TEST_CONTEXT("round " << round) {
      const pid_t child = fork();
      BOOST_REQUIRE(child >= 0);
      if (child == 0) train_until_killed(checkpoint, csv);
      std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(rng)));
      ::kill(child, SIGKILL);
      int status = 0;
      ::waitpid(child, &status, 0);
      BOOST_TEST((WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL));
      stale += temporaries(dir);
      // Whatever survived loads, whole: model and optimizer, through resume; then one more
      // epoch saves the checkpoint and the metrics, which removes the temporaries the killed
      // writer left.
      if (fs::exists(checkpoint)) {
        Training t(checkpoint, csv);
        BOOST_CHECK_NO_THROW(t.trainer.resume(checkpoint));
        ++loaded;
        t.trainer.on_epoch_end = [](const nn::EpochMetrics&) { throw std::runtime_error("one"); };
        BOOST_CHECK_THROW(t.trainer.fit(t.loader), std::runtime_error);  // after one epoch's saves
        BOOST_TEST(temporaries(dir) == 0u);
      }
    }
  }
  BOOST_TEST_MESSAGE("first checkpoint after "
                     << first_ms << " ms; " << loaded << " of " << round
                     << " kills left a checkpoint, all loaded; " << stale
                     << " temporaries of killed saves were removed by the next save");
  BOOST_TEST(loaded > 10u);
  fs::remove_all(dir);
}

BOOST_AUTO_TEST_SUITE_END()
