// The data-parallel example of docs/distributed.md, verbatim in main (the
// README test, tests/docs/test_readme.cpp, checks that it still matches), with what it needs
// around it: a model, data, the optimizer's options and a loss. Run by CTest under mpirun with 2
// processes, which then checks that rank 0 wrote the checkpoint.
#include "distributed/data_parallel.hpp"
#include "nn/nn.hpp"

namespace nn = ad::nn;

namespace {

std::shared_ptr<nn::Sequential<float>> make_model(nn::Generator& rng) {
  return std::make_shared<nn::Sequential<float>>(std::make_shared<nn::Linear<float>>(8, 16, rng),
                                                 std::make_shared<nn::ReLU<float>>(),
                                                 std::make_shared<nn::Linear<float>>(16, 3, rng));
}

/// 300 samples of 8 features in 3 classes.
std::shared_ptr<nn::Dataset<float>> make_data() {
  nn::Generator rng(7);
  ad::Array<float> x = ad::Array<float>::from_shape({300, 8});
  nn::init::normal(x, 0.0, 1.0, rng);
  ad::Array<float> y = ad::Array<float>::from_shape({300});
  for (std::size_t i = 0; i < 300; ++i)
    y(i) = x(i, 0) + x(i, 1) > 0 ? 1.0f : x(i, 2) > 0 ? 2.0f : 0.0f;
  return std::make_shared<nn::Dataset<float>>(x, y);
}

const auto train = make_data();
const nn::SGDOptions so{0.1, 0.9};
const auto loss = [](const ad::Variable<float>& out, const ad::Variable<float>& y) {
  return nn::cross_entropy(out, y);
};

}  // namespace

// clang-format off
int main(int argc, char** argv) {
  return ad::distributed::run(argc, argv, [&](ad::distributed::Communicator& comm) {
    nn::Generator rng(1);
    auto model = make_model(rng);                   // built the same way on every rank
    ad::distributed::DataParallel<float> dp(*model, comm); // rank 0's parameters and buffers everywhere

    nn::LoaderOptions lo;
    lo.batch_size = 96;                             // the global batch
    lo.seed = 1;
    lo.shard = comm.rank(), lo.shards = comm.size();
    nn::DataLoader<float> loader(train, lo);        // this rank's part of every global batch

    nn::SGD<float> opt(dp.parameters(), so);        // steps over the flat buffer
    nn::TrainerOptions to;
    to.checkpoint = "model.npz";                    // written by rank 0 only
    nn::Trainer<float> trainer(*model, opt, loss, to);
    dp.attach(trainer);                             // sums gradients and figures across ranks
    trainer.fit(loader);
    return 0;
  });
}
// clang-format on
