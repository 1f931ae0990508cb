// The comparison workloads on LibTorch's C++ frontend; the same models, data and optimizer as
// bench/workloads.cpp, printing the same "result" lines.
//   libtorch_workloads mlp|cnn EPOCHS BATCH THREADS | tiny STEPS THREADS
#include <sys/resource.h>
#include <torch/torch.h>
#include <zlib.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

std::vector<uint8_t> gunzip(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw std::runtime_error("cannot open " + path);
  std::vector<uint8_t> out;
  uint8_t buf[1 << 16];
  int n;
  while ((n = gzread(f, buf, sizeof buf)) > 0) out.insert(out.end(), buf, buf + n);
  gzclose(f);
  return out;
}

torch::Tensor images(const std::string& path, bool as_images) {
  auto d = gunzip(path);
  const int64_t n = (d[4] << 24) | (d[5] << 16) | (d[6] << 8) | d[7];
  auto t = torch::from_blob(d.data() + 16, {n, 784}, torch::kUInt8).to(torch::kFloat32) / 255.0;
  return as_images ? t.view({n, 1, 28, 28}).clone() : t.clone();
}

torch::Tensor labels(const std::string& path) {
  auto d = gunzip(path);
  const int64_t n = (d[4] << 24) | (d[5] << 16) | (d[6] << 8) | d[7];
  return torch::from_blob(d.data() + 8, {n}, torch::kUInt8).to(torch::kInt64);
}

double peak_mib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss / 1024.0;
}

int train(const std::string& which, int epochs, int64_t batch, int threads) {
  torch::set_num_threads(threads);
  torch::manual_seed(0);
  const bool cnn = which == "cnn";
  const std::string dir = "/usr/share/datasets/fashion-mnist/";
  auto xtr = images(dir + "train-images-idx3-ubyte.gz", cnn);
  auto ytr = labels(dir + "train-labels-idx1-ubyte.gz");
  auto xte = images(dir + "t10k-images-idx3-ubyte.gz", cnn);
  auto yte = labels(dir + "t10k-labels-idx1-ubyte.gz");
  torch::nn::Sequential model;
  if (cnn) {
    model = torch::nn::Sequential(
        torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 32, 3).padding(1)), torch::nn::ReLU(),
        torch::nn::MaxPool2d(2), torch::nn::Conv2d(torch::nn::Conv2dOptions(32, 64, 3).padding(1)),
        torch::nn::ReLU(), torch::nn::MaxPool2d(2), torch::nn::Flatten(),
        torch::nn::Linear(64 * 7 * 7, 128), torch::nn::ReLU(), torch::nn::Linear(128, 10));
  } else {
    model = torch::nn::Sequential(torch::nn::Linear(784, 256), torch::nn::ReLU(),
                                  torch::nn::Linear(256, 128), torch::nn::ReLU(),
                                  torch::nn::Linear(128, 10));
  }
  torch::optim::SGD opt(model->parameters(),
                        torch::optim::SGDOptions(cnn ? 0.05 : 0.1).momentum(0.9));
  const int64_t n = xtr.size(0);
  double best = 1e30;
  for (int e = 0; e < epochs; ++e) {
    const auto t0 = Clock::now();
    auto perm = torch::randperm(n);
    for (int64_t i = 0; i < n; i += batch) {
      auto idx = perm.slice(0, i, std::min(i + batch, n));
      opt.zero_grad();
      torch::nn::functional::cross_entropy(model->forward(xtr.index_select(0, idx)),
                                           ytr.index_select(0, idx))
          .backward();
      opt.step();
    }
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  torch::NoGradGuard no_grad;
  const double acc =
      (model->forward(xte).argmax(1) == yte).to(torch::kFloat32).mean().item<double>();
  std::printf("result workload=%s batch=%ld threads=%d epoch_s=%.4f peak_mib=%.1f test_acc=%.4f\n",
              which.c_str(), static_cast<long>(batch), threads, best, peak_mib(), acc);
  return 0;
}

int tiny(long steps, int threads) {
  torch::set_num_threads(threads);
  torch::manual_seed(0);
  torch::nn::Sequential model(torch::nn::Linear(2, 16), torch::nn::Tanh(),
                              torch::nn::Linear(16, 16), torch::nn::Tanh(),
                              torch::nn::Linear(16, 1));
  torch::optim::SGD opt(model->parameters(), torch::optim::SGDOptions(0.05));
  auto x = torch::randn({8, 2}), y = torch::randn({8, 1});
  torch::Tensor loss;
  const auto t0 = Clock::now();
  for (long i = 0; i < steps; ++i) {
    opt.zero_grad();
    loss = torch::mse_loss(model->forward(x), y);
    loss.backward();
    opt.step();
  }
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  std::printf("result workload=tiny threads=%d us_per_step=%.3f loss=%.5f\n", threads,
              s / steps * 1e6, loss.item<double>());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  auto arg = [&](int i, long fallback) { return argc > i ? std::atol(argv[i]) : fallback; };
  if (mode == "mlp" || mode == "cnn")
    return train(mode, static_cast<int>(arg(2, 2)), arg(3, 100), static_cast<int>(arg(4, 1)));
  if (mode == "tiny") return tiny(arg(2, 20000), static_cast<int>(arg(3, 1)));
  std::fprintf(stderr,
               "usage: libtorch_workloads mlp|cnn EPOCHS BATCH THREADS | tiny STEPS THREADS\n");
  return 2;
}
