// A data-parallel run in which one rank fails in the middle of an epoch (tests/distributed/
// failure.sh runs it under mpirun): every rank must end at once with that rank's message, and the
// last checkpoint must load. `fail_midway --check CKPT` is the loading half, in one process.
#include <cstring>
#include <iostream>
#include <sstream>

#include "autodiff/autodiff.hpp"
#include "distributed/data_parallel.hpp"
#include "nn/nn.hpp"

namespace nn = ad::nn;
using V = ad::Variable<float>;

namespace {

struct Setup {
  nn::Generator rng{2};
  nn::Sequential<float> model{std::make_shared<nn::Linear<float>>(8, 16, rng),
                              std::make_shared<nn::Tanh<float>>(),
                              std::make_shared<nn::Linear<float>>(16, 3, rng)};
};

std::shared_ptr<nn::Dataset<float>> data() {
  ad::Array<float> x = ad::Array<float>::from_shape({300, 8});
  ad::Array<float> y = ad::Array<float>::from_shape({300});
  for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>((i * 37) % 11) / 11;
  for (std::size_t i = 0; i < 300; ++i) y(i) = static_cast<float>(i % 3);
  return std::make_shared<nn::Dataset<float>>(x, y);
}

nn::TrainerOptions options(const std::string& checkpoint, std::ostream& log) {
  nn::TrainerOptions o;
  o.epochs = 5;
  o.progress = nn::TrainerOptions::Progress::lines;
  o.log = &log;
  o.checkpoint = checkpoint;
  return o;
}

V ce(const V& out, const V& y) {
  return nn::cross_entropy(out, y);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::strcmp(argv[1], "--check") == 0) {
    Setup s;
    nn::SGD<float> opt(s.model.parameters(), nn::SGDOptions{0.1, 0.9});
    std::ostringstream log;
    nn::Trainer<float> trainer(s.model, opt, ce, options("", log));
    trainer.resume(argv[2]);
    std::cout << "the checkpoint loads: " << trainer.epochs_done() << " epochs done\n";
    return trainer.epochs_done() == 2 ? 0 : 1;
  }
  if (argc != 2) {
    std::cerr << "usage: fail_midway CHECKPOINT | fail_midway --check CHECKPOINT\n";
    return 2;
  }
  return ad::distributed::run(argc, argv, [&](ad::distributed::Communicator& comm) {
    Setup s;
    nn::LoaderOptions lo;
    lo.batch_size = 30;
    lo.shard = static_cast<std::size_t>(comm.rank());
    lo.shards = static_cast<std::size_t>(comm.size());
    nn::DataLoader<float> loader(data(), lo);
    ad::distributed::DataParallel<float> dp(s.model, comm);
    nn::SGD<float> opt(dp.parameters(), nn::SGDOptions{0.1, 0.9});
    nn::Trainer<float> trainer(s.model, opt, ce, options(argv[1], std::cout));
    dp.attach(trainer);
    trainer.on_batch_end = [&](std::size_t epoch, std::size_t batch, double) {
      if (comm.rank() == 1 && epoch == 3 && batch == 2)
        throw ad::Error("deliberate failure at epoch 3, batch 2");
    };
    trainer.fit(loader);
    return 0;
  });
}
