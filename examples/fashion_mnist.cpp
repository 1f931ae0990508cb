// Trains an MLP or a small CNN on Fashion-MNIST (or MNIST) and reports how it learns: a progress
// bar and a summary line per epoch, then the confusion matrix and per-class accuracy.
#include <boost/program_options.hpp>

#include <iomanip>
#include <iostream>

#include "autodiff/autodiff.hpp"
#include "cli.hpp"
#ifdef AD_WITH_MPI
#include "distributed/data_parallel.hpp"
#endif
#include "export.hpp"
#include "models.hpp"
#include "nn/nn.hpp"
#include "plot.hpp"

namespace nn = ad::nn;
namespace po = boost::program_options;
using F = ad::Variable<float>;

namespace {

#ifdef AD_WITH_MPI
using Parallel = ad::distributed::Communicator;
using DataParallel = ad::distributed::DataParallel<float>;
std::unique_ptr<DataParallel> make_data_parallel(nn::Module<float>& model, Parallel* comm) {
  return comm ? std::make_unique<DataParallel>(model, *comm) : nullptr;
}
#else
/// Without MPI there are no processes to combine: --distributed is refused.
struct Parallel : nn::Collective {
  bool is_root() const override { return true; }
  int rank() const { return 0; }
  int size() const { return 1; }
  void sum(double*, std::size_t) override {}
};
struct DataParallel {
  std::shared_ptr<ad::FlatParameters<float>> parameters() const { return nullptr; }
  void attach(nn::Trainer<float>&) {}
};
std::unique_ptr<DataParallel> make_data_parallel(nn::Module<float>&, Parallel*) {
  return nullptr;
}
#endif

/// Where the other ranks' output goes.
std::ostream& null_stream() {
  static std::ostream sink(nullptr);
  return sink;
}

const char* const class_names[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                     "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

struct Options {
  std::string model = "mlp", optimizer = "sgd", schedule = "cosine";
  std::size_t epochs = 15, batch = 100, limit = 0, test_limit = 0;
  double lr = 0, momentum = 0.9, weight_decay = 0;
  std::uint64_t seed = 1;
  int threads = ad::default_num_threads();
  std::string data_dir = nn::datasets::fashion_mnist_dir, checkpoint, metrics_csv, plot;
  std::string export_onnx, graph;
  bool resume = false, reset_optimizer = false, quiet = false, distributed = false;
  std::size_t augment = 0;  // random crop padding (0: no augmentation)
};

/// The optimizer over the model's parameters, or over flat buffers when data-parallel (SGD then
/// updates them in one pass; the others go over the same parameters one by one).
std::unique_ptr<nn::Optimizer<float>> make_optimizer(
    const Options& o, const std::vector<F>& params,
    const std::shared_ptr<ad::FlatParameters<float>>& flat) {
  if (o.optimizer == "sgd") {
    nn::SGDOptions s;
    s.lr = o.lr, s.momentum = o.momentum, s.weight_decay = o.weight_decay;
    if (flat) return std::make_unique<nn::SGD<float>>(flat, s);
    return std::make_unique<nn::SGD<float>>(params, s);
  }
  if (o.optimizer == "adam" || o.optimizer == "adamw") {
    nn::AdamWOptions a;
    a.lr = o.lr, a.weight_decay = o.weight_decay;
    if (o.optimizer == "adam") return std::make_unique<nn::Adam<float>>(params, a);
    return std::make_unique<nn::AdamW<float>>(params, a);
  }
  if (o.optimizer == "rmsprop") {
    nn::RMSPropOptions r;
    r.lr = o.lr, r.momentum = o.momentum, r.weight_decay = o.weight_decay;
    return std::make_unique<nn::RMSProp<float>>(params, r);
  }
  throw ad::Error("--optimizer must be sgd, adam, adamw or rmsprop, not '" + o.optimizer + "'");
}

std::shared_ptr<const nn::Schedule> make_schedule(const Options& o) {
  if (o.schedule == "cosine") return std::make_shared<nn::CosineSchedule>(o.epochs, 0.0);
  if (o.schedule == "step")
    return std::make_shared<nn::StepSchedule>(std::max<std::size_t>(o.epochs / 3, 1), 0.3);
  if (o.schedule == "none") return std::make_shared<nn::ExponentialSchedule>(1.0);
  throw ad::Error("--schedule must be cosine, step or none, not '" + o.schedule + "'");
}

/// The 10×10 confusion counts (rows: true class), as numbers a data-parallel run can sum.
std::vector<double> confusion(const std::vector<std::size_t>& predicted,
                              const std::vector<std::size_t>& labels) {
  std::vector<double> m(100, 0.0);
  for (std::size_t i = 0; i < labels.size(); ++i) m[labels[i] * 10 + predicted[i]] += 1;
  return m;
}

void print_confusion(const std::vector<double>& counts) {
  std::size_t m[10][10] = {};
  for (std::size_t i = 0; i < 100; ++i) m[i / 10][i % 10] = static_cast<std::size_t>(counts[i]);
  std::cout << "\nconfusion matrix (rows: true class, columns: predicted)\n" << std::setw(13) << "";
  for (int j = 0; j < 10; ++j) std::cout << std::setw(6) << j;
  std::cout << "   accuracy\n";
  for (int i = 0; i < 10; ++i) {
    std::size_t total = 0;
    for (int j = 0; j < 10; ++j) total += m[i][j];
    std::cout << std::setw(2) << i << " " << std::left << std::setw(10) << class_names[i]
              << std::right;
    for (int j = 0; j < 10; ++j) std::cout << std::setw(6) << m[i][j];
    std::cout << "   " << std::fixed << std::setprecision(3)
              << (total ? double(m[i][i]) / total : 0.0) << "\n";
    std::cout.unsetf(std::ios::fixed);
  }
}

/// Trains and reports; with `comm`, as one process of a data-parallel run (mpirun): each process
/// takes its shard of every batch (and of the test set), the gradients are summed across
/// processes, and only rank 0 prints and writes.
int run(const Options& o, Parallel* comm) {
  ad::set_num_threads(o.threads);
  const bool root = !comm || comm->is_root();
  std::ostream& out = root ? std::cout : null_stream();
  const bool cnn = o.model == "cnn";
  if (!cnn && o.model != "mlp")
    throw ad::Error("--model must be mlp or cnn, not '" + o.model + "'");
  Options opt = o;
  if (opt.lr == 0) opt.lr = opt.optimizer == "sgd" ? 0.05 : 1e-3;

  auto train_split = nn::datasets::load_mnist(opt.data_dir, true);
  auto test_split = nn::datasets::load_mnist(opt.data_dir, false);
  auto train_data = nn::datasets::mnist_dataset(train_split, cnn, opt.limit);
  auto test_data = nn::datasets::mnist_dataset(test_split, cnn, opt.test_limit);
  nn::LoaderOptions lo;
  lo.batch_size = opt.batch;
  lo.seed = opt.seed;
  if (comm) {
    lo.shard = static_cast<std::size_t>(comm->rank());
    lo.shards = static_cast<std::size_t>(comm->size());
  }
  nn::DataLoader<float> train(train_data, lo);
  if (opt.augment) {
    if (!cnn) throw ad::Error("--augment needs --model cnn (it moves and mirrors images)");
    train.set_transform(nn::augment::compose<float>(
        {nn::augment::random_crop<float>(opt.augment), nn::augment::horizontal_flip<float>()}));
  }
  lo.shuffle = false;
  lo.batch_size = std::max<std::size_t>(opt.batch, 500);
  nn::DataLoader<float> test(test_data, lo);

  nn::Generator rng(opt.seed);
  auto model = cnn ? examples::make_cnn(rng) : examples::make_mlp(rng);
  std::unique_ptr<DataParallel> parallel = make_data_parallel(*model, comm);
  auto optimizer =
      make_optimizer(opt, model->parameters(), parallel ? parallel->parameters() : nullptr);
  nn::Scheduler<float> scheduler(*optimizer, make_schedule(opt));
  if (!opt.quiet)
    out << "fashion_mnist: " << opt.model << " (" << model->parameter_count() << " parameters), "
        << opt.optimizer << " lr " << opt.lr << " (" << opt.schedule << " schedule), batch "
        << opt.batch << ", " << train.samples() << " training and " << test.samples()
        << " test images, " << opt.threads << " thread(s)"
        << (opt.augment ? ", augmented (crop ±" + std::to_string(opt.augment) + ", flip)" : "")
        << (comm ? ", " + std::to_string(comm->size()) + " processes (data-parallel)" : "") << "\n";

  examples::check_export_paths(opt.export_onnx, opt.graph);
  nn::TrainerOptions to;
  to.epochs = opt.epochs;
  to.validation_name = "test";
  to.metrics_csv = opt.metrics_csv;
  to.checkpoint = opt.checkpoint;
  if (opt.quiet) to.progress = nn::TrainerOptions::Progress::lines;
  nn::Trainer<float> trainer(
      *model, *optimizer, [](const F& out, const F& y) { return nn::cross_entropy(out, y); }, to);
  trainer.set_scheduler(&scheduler);
  if (parallel) parallel->attach(trainer);
  if (opt.reset_optimizer && !opt.resume) throw ad::Error("--reset-optimizer needs --resume");
  if (opt.resume) {
    if (opt.checkpoint.empty()) throw ad::Error("--resume needs --checkpoint PATH");
    trainer.resume(opt.checkpoint, opt.reset_optimizer);  // every process reads it
    out << "resumed from '" << opt.checkpoint << "' after epoch " << trainer.epochs_done()
        << (opt.reset_optimizer ? " (--reset-optimizer: the optimizer starts afresh)" : "") << "\n";
  }
  trainer.fit(train, &test);

  auto eval = trainer.evaluate(test, true);
  std::vector<double> counts = confusion(eval.predictions, eval.labels);
  if (comm) comm->sum(counts.data(), counts.size());
  if (!root) return 0;
  print_confusion(counts);
  out << "\ntest accuracy " << std::fixed << std::setprecision(4) << eval.accuracy << ", test loss "
      << eval.loss << "\n";
  if (!opt.plot.empty() && !trainer.history().empty() &&
      examples::plot_training(opt.plot, "Fashion-MNIST, " + opt.model, trainer.history()))
    out << "plot written to '" << opt.plot << "'\n";
  // The model on the first test images (at most 256), exported.
  if (!opt.export_onnx.empty() || !opt.graph.empty()) {
    const auto first = test_data->slice(0, std::min<std::size_t>(256, test_data->size()));
    ad::Array<float> x = ad::Array<float>::from_shape(first.inputs().shape());
    for (std::size_t i = 0; i < x.size(); ++i)
      x.data()[i] = static_cast<float>(first.inputs().data()[i] * first.scale());
    examples::export_model(*model, F(std::move(x)), opt.export_onnx, opt.graph, out);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  po::options_description desc(
      "fashion_mnist: train an MLP or a CNN on Fashion-MNIST (IDX files, .gz or raw)\nOptions");
  desc.add_options()("help,h", "show this help")(
      "model", po::value(&o.model)->default_value(o.model), "mlp (784-256-128-10) or cnn")(
      "epochs", examples::number(&o.epochs, std::size_t{1}, std::size_t{100000}, "epochs"),
      "total number of epochs")(
      "batch-size", examples::number(&o.batch, std::size_t{1}, std::size_t{1000000}, "batch-size"),
      "mini-batch size")("lr", examples::optional_number(&o.lr, 1e-12, 1e3, "lr"),
                         "learning rate (default: 0.05 for sgd, 1e-3 otherwise)")(
      "optimizer", po::value(&o.optimizer)->default_value(o.optimizer),
      "sgd, adam, adamw or rmsprop")("momentum",
                                     examples::number(&o.momentum, 0.0, 0.9999, "momentum"),
                                     "momentum of sgd and rmsprop")(
      "weight-decay", examples::number(&o.weight_decay, 0.0, 1e3, "weight-decay"), "weight decay")(
      "schedule", po::value(&o.schedule)->default_value(o.schedule),
      "learning-rate schedule over the epochs: cosine, step or none")(
      "seed", examples::number(&o.seed, std::uint64_t{0}, ~std::uint64_t{0}, "seed"),
      "seed of the weights and the shuffling")("threads",
                                               examples::number(&o.threads, 1, 1024, "threads"),
                                               "BLAS threads (default: $AD_NUM_THREADS or 1)")(
      "data-dir", po::value(&o.data_dir)->default_value(o.data_dir),
      "folder with the four IDX files")(
      "limit", examples::number(&o.limit, std::size_t{0}, std::size_t{1} << 40, "limit"),
      "use only the first N training images (0: all)")(
      "test-limit",
      examples::number(&o.test_limit, std::size_t{0}, std::size_t{1} << 40, "test-limit"),
      "use only the first N test images (0: all)")(
      "checkpoint", po::value(&o.checkpoint),
      "save model and optimizer here (.npz) after every epoch")(
      "resume", po::bool_switch(&o.resume), "continue from --checkpoint")(
      "reset-optimizer", po::bool_switch(&o.reset_optimizer),
      "with --resume: start the optimizer afresh instead of loading its state (to switch "
      "optimizers, or from a checkpoint saved without one)")(
      "metrics-csv", po::value(&o.metrics_csv), "write the metrics per epoch to this CSV")(
      "plot",
      po::value(&o.plot)->notifier([](const std::string& p) { examples::check_plot_path(p); }),
      "plot loss and accuracy curves to this .png or .svg")("quiet", po::bool_switch(&o.quiet),
                                                            "one line per epoch, no progress bar")(
      "export-onnx", po::value(&o.export_onnx),
      "after training, write the model as an ONNX model (opset 17) to this file, with its output "
      "on the first test images beside it (FILE.expected.npz)")(
      "graph", po::value(&o.graph), "after training, draw the model's ops to this Graphviz file")(
      "augment", examples::number(&o.augment, std::size_t{0}, std::size_t{14}, "augment"),
      "with --model cnn: move each training image by up to this many pixels (a random crop of "
      "it padded with zeros) and mirror half of them (0: off)")(
      "distributed", po::bool_switch(&o.distributed),
      "data-parallel over the processes of an mpirun (the default when started by mpirun with "
      "more than one process)");
  return examples::run_program("fashion_mnist", argc, argv, desc, [&] {
    if (!o.distributed && !examples::under_mpirun()) return run(o, nullptr);
#ifdef AD_WITH_MPI
    return ad::distributed::run(argc, argv,
                                [&](ad::distributed::Communicator& comm) { return run(o, &comm); });
#else
    throw ad::Error("--distributed needs a build with MPI (install libopenmpi-dev and rebuild)");
#endif
  });
}
