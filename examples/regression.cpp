// Fits a function with the classic squared error E = ½ Σ (y − ŷ)²: by default a noisy 1-D curve
// it generates, the diabetes data (--dataset diabetes, from Debian's python3-sklearn), or the
// columns of a user's CSV file (--csv FILE --target COLUMN). With a held-out part
// (--test-fraction), the ordinary least-squares fit of the training part is printed beside the
// network's as the floor a linear model reaches.
#include <boost/program_options.hpp>

#include <xtensor-blas/xlinalg.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <numeric>
#include <random>
#include <variant>

#include "autodiff/autodiff.hpp"
#include "cli.hpp"
#include "nn/nn.hpp"
#include "plot.hpp"

namespace nn = ad::nn;
namespace po = boost::program_options;
using F = ad::Variable<float>;

namespace {

struct Options {
  std::size_t epochs = 300, batch = 20, hidden = 32, points = 200, patience = 0;
  double lr = 0.005, noise = 0.1, test_fraction = -1;  // -1: 0.2 for diabetes, else 0
  std::uint64_t seed = 1;
  std::string dataset = "curve", data_dir = nn::datasets::sklearn_data_dir, csv, target, plot;
  bool dataset_given = false;  // --dataset on the command line (it conflicts with --csv)
  int threads = ad::default_num_threads();
};

/// y = sin(3x) + 0.3·x² + noise for x uniform in [-1.5, 1.5].
std::shared_ptr<nn::Dataset<float>> make_curve(const Options& o) {
  nn::Generator rng(o.seed + 1000);
  std::uniform_real_distribution<double> u(-1.5, 1.5);
  std::normal_distribution<double> n(0.0, o.noise);
  ad::Array<float> x = ad::Array<float>::from_shape({o.points, 1});
  ad::Array<float> y = ad::Array<float>::from_shape({o.points, 1});
  for (std::size_t i = 0; i < o.points; ++i) {
    const double v = u(rng);
    x(i, 0) = static_cast<float>(v);
    y(i, 0) = static_cast<float>(std::sin(3 * v) + 0.3 * v * v + n(rng));
  }
  return std::make_shared<nn::Dataset<float>>(std::move(x), std::move(y));
}

/// Shifts and scales every input column and the target to mean 0 and deviation 1 (the network
/// learns faster), remembering how to undo it for the target.
struct Standardizer {
  ad::Array<float> mean, scale;  // per input column
  float y_mean = 0, y_scale = 1;

  explicit Standardizer(const nn::Dataset<float>& d) {
    const std::size_t n = d.size(), cols = d.inputs().shape()[1];
    mean = xt::zeros<float>({cols});
    scale = xt::ones<float>({cols});
    auto stats = [n](auto column, float& m, float& s) {
      double sum = 0, sq = 0;
      for (std::size_t i = 0; i < n; ++i) sum += column(i);
      const double mu = sum / n;
      for (std::size_t i = 0; i < n; ++i) sq += (column(i) - mu) * (column(i) - mu);
      m = static_cast<float>(mu);
      s = static_cast<float>(std::sqrt(sq / n) > 1e-12 ? std::sqrt(sq / n) : 1.0);
    };
    for (std::size_t c = 0; c < cols; ++c)
      stats([&](std::size_t i) { return d.inputs()(i, c); }, mean(c), scale(c));
    stats([&](std::size_t i) { return d.targets()(i, 0); }, y_mean, y_scale);
  }

  std::shared_ptr<nn::Dataset<float>> apply(const nn::Dataset<float>& d) const {
    ad::Array<float> x = (d.inputs() - mean) / scale;
    ad::Array<float> y = (d.targets() - y_mean) / y_scale;
    return std::make_shared<nn::Dataset<float>>(std::move(x), std::move(y));
  }
};

/// The rows at `picks` of a dataset.
std::shared_ptr<nn::Dataset<float>> rows(const nn::Dataset<float>& d,
                                         const std::vector<std::size_t>& picks) {
  const std::size_t cols = d.inputs().shape()[1];
  ad::Array<float> x = ad::Array<float>::from_shape({picks.size(), cols});
  ad::Array<float> y = ad::Array<float>::from_shape({picks.size(), 1});
  for (std::size_t i = 0; i < picks.size(); ++i) {
    for (std::size_t c = 0; c < cols; ++c) x(i, c) = d.inputs()(picks[i], c);
    y(i, 0) = d.targets()(picks[i], 0);
  }
  return std::make_shared<nn::Dataset<float>>(std::move(x), std::move(y));
}

/// The ordinary least-squares fit (with an intercept) of the targets on the inputs, in double:
/// the normal equations (XᵀX) β = Xᵀy. Returns β, intercept last, or, when the fit has no unique
/// solution, why not (fewer samples than coefficients, a constant input column, or columns that
/// depend on each other).
std::variant<ad::Array<double>, std::string> least_squares(const nn::Dataset<float>& d) {
  const std::size_t n = d.size(), cols = d.inputs().shape()[1];
  if (n < cols + 1)
    return std::to_string(n) + " training sample" + (n == 1 ? "" : "s") + " for " +
           std::to_string(cols + 1) + " coefficients (the inputs and an intercept)";
  ad::Array<double> x = xt::ones<double>({n, cols + 1});
  ad::Array<double> y = ad::Array<double>::from_shape({n});
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t c = 0; c < cols; ++c) x(i, c) = d.inputs()(i, c);
    y(i) = d.targets()(i, 0);
  }
  for (std::size_t c = 0; c < cols; ++c) {
    bool constant = true;
    for (std::size_t i = 1; i < n && constant; ++i) constant = x(i, c) == x(0, c);
    if (constant)
      return "input column " + std::to_string(c + 1) + " is constant (the intercept's twin)";
  }
  const auto rank = static_cast<std::size_t>(xt::linalg::matrix_rank(x));
  if (rank < cols + 1)
    return "the input columns and the intercept depend on each other (rank " +
           std::to_string(rank) + " of " + std::to_string(cols + 1) + ")";
  ad::Array<double> xtx = xt::linalg::dot(xt::transpose(x), x);
  ad::Array<double> xty = xt::linalg::dot(xt::transpose(x), y);
  try {
    return ad::Array<double>(xt::linalg::solve(xtx, xty));
  } catch (const std::exception& e) {
    return std::string("the normal equations cannot be solved (") + e.what() + ")";
  }
}

/// E = ½ Σ (y − ŷ)² of the linear fit β over a dataset (standardised units).
double least_squares_error(const ad::Array<double>& beta, const nn::Dataset<float>& d) {
  const std::size_t cols = d.inputs().shape()[1];
  double e = 0;
  for (std::size_t i = 0; i < d.size(); ++i) {
    double fit = beta(cols);
    for (std::size_t c = 0; c < cols; ++c) fit += beta(c) * d.inputs()(i, c);
    e += 0.5 * (d.targets()(i, 0) - fit) * (d.targets()(i, 0) - fit);
  }
  return e;
}

/// E = ½ Σ (y − ŷ)² over the whole dataset, in the target's own units.
double classic_error(nn::Module<float>& model, const nn::Dataset<float>& data,
                     const Standardizer& s) {
  ad::NoGradGuard no_grad;
  F pred = model(F(data.inputs()));
  return nn::mse_loss(pred, F(data.targets()), nn::Reduction::half_sum).item() * s.y_scale *
         s.y_scale;
}

int run(const Options& o) {
  ad::set_num_threads(o.threads);
  std::shared_ptr<nn::Dataset<float>> all;
  std::string source;
  if (!o.csv.empty()) {
    if (o.dataset_given)
      throw ad::Error("--csv and --dataset both say what data to fit: give one of them");
    if (o.target.empty()) throw ad::Error("--csv needs --target COLUMN");
    all = nn::datasets::csv_dataset(nn::datasets::read_csv(o.csv), o.target);
    source = o.csv;
  } else if (o.dataset == "diabetes") {
    all = nn::datasets::csv_dataset(nn::datasets::load_diabetes(o.data_dir), "target");
    source = "diabetes (Efron et al. 2004, 10 inputs)";
  } else if (o.dataset == "curve") {
    all = make_curve(o);
    source = "noisy curve y = sin(3x) + 0.3x²";
  } else {
    throw ad::Error("--dataset: '" + o.dataset + "' is not curve or diabetes");
  }
  // A held-out part, drawn with the seed.
  const double fraction = o.test_fraction >= 0      ? o.test_fraction
                          : o.dataset == "diabetes" ? 0.2
                                                    : 0.0;
  std::vector<std::size_t> order(all->size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  if (fraction > 0) std::shuffle(order.begin(), order.end(), nn::Generator(o.seed + 2000));
  const auto held =
      static_cast<std::size_t>(std::round(fraction * static_cast<double>(all->size())));
  if (held >= all->size())
    throw ad::Error("--test-fraction: " + std::to_string(fraction) + " leaves no training sample");
  // With early stopping, a fifth of the training part validates (and never trains).
  const std::size_t validating = o.patience ? (all->size() - held) / 5 : 0;
  if (o.patience && validating == 0) throw ad::Error("--patience: too few samples to validate");
  const auto from = [&](std::size_t a, std::size_t b) {
    return std::vector<std::size_t>(order.begin() + static_cast<long>(a),
                                    order.begin() + static_cast<long>(b));
  };
  auto raw = rows(*all, from(held + validating, all->size()));
  const Standardizer standardizer(*raw);
  auto data = standardizer.apply(*raw);
  auto test = standardizer.apply(*rows(*all, from(0, held)));
  auto validation = standardizer.apply(*rows(*all, from(held, held + validating)));
  const std::size_t inputs = data->inputs().shape()[1];

  nn::Generator rng(o.seed);
  nn::Sequential<float> model(
      std::make_shared<nn::Linear<float>>(inputs, o.hidden, ad::Activation::tanh, rng),
      std::make_shared<nn::Linear<float>>(o.hidden, o.hidden, ad::Activation::tanh, rng),
      std::make_shared<nn::Linear<float>>(o.hidden, 1, rng));
  nn::AdamOptions ao;
  ao.lr = o.lr;
  nn::Adam<float> opt(model.parameters(), ao);
  nn::LoaderOptions lo;
  lo.batch_size = o.batch;
  lo.seed = o.seed;
  nn::DataLoader<float> loader(data, lo);
  nn::TrainerOptions to;
  to.epochs = o.epochs;
  to.classification = false;
  to.progress = nn::TrainerOptions::Progress::none;
  to.patience = o.patience;
  to.keep_best = o.patience > 0;
  // The classic error of each batch, E = ½ Σ (y − ŷ)².
  nn::Trainer<float> trainer(
      model, opt,
      [](const F& out, const F& y) { return nn::mse_loss(out, y, nn::Reduction::half_sum); }, to);
  std::cout << "regression: " << source << ", " << data->size() << " training samples"
            << (validating ? ", " + std::to_string(validating) + " validating" : "")
            << (held ? ", " + std::to_string(held) + " held out" : "") << ", " << inputs
            << " input(s), MLP " << inputs << "-" << o.hidden << "-" << o.hidden
            << "-1 (tanh), Adam lr " << o.lr << "\n";
  std::cout << "epoch 0: E = ½Σ(y − ŷ)² = " << classic_error(model, *data, standardizer) << "\n";
  const std::size_t every = std::max<std::size_t>(o.epochs / 10, 1);
  std::vector<nn::EpochMetrics> errors;
  trainer.on_epoch_end = [&](const nn::EpochMetrics& m) {
    nn::EpochMetrics e = m;
    e.train_loss = classic_error(model, *data, standardizer);
    errors.push_back(e);
    if (m.epoch % every == 0 || m.epoch == o.epochs)
      std::cout << "epoch " << m.epoch << ": E = ½Σ(y − ŷ)² = " << e.train_loss << "\n";
  };
  nn::DataLoader<float> val_loader(validation, nn::LoaderOptions{});
  trainer.fit(loader, validating ? &val_loader : nullptr);
  if (trainer.stopped_early())
    std::cout << "stopped after epoch " << trainer.epochs_done() << " (" << o.patience
              << " without a lower validation error); the weights of epoch " << trainer.best_epoch()
              << " kept\n";

  // The final fit at a few points.
  ad::NoGradGuard no_grad;
  F pred = model(F(data->inputs()));
  std::cout << "\nfinal fit (" << std::min<std::size_t>(10, data->size()) << " samples):\n"
            << std::setw(12) << (inputs == 1 ? "x" : "sample") << std::setw(12) << "y"
            << std::setw(12) << "fit"
            << "\n";
  const std::size_t step = std::max<std::size_t>(data->size() / 10, 1);
  for (std::size_t i = 0; i < data->size(); i += step) {
    const double y = raw->targets()(i, 0);
    const double fit = pred.value()(i, 0) * standardizer.y_scale + standardizer.y_mean;
    std::cout << std::setw(12) << (inputs == 1 ? double(raw->inputs()(i, 0)) : double(i))
              << std::setw(12) << y << std::setw(12) << fit << "\n";
  }
  const double e = errors.empty() ? 0 : errors.back().train_loss;
  std::cout << "E = " << e << ", root mean squared error " << std::sqrt(2 * e / data->size())
            << "\n";
  // The floor of a linear model: ordinary least squares on the training part (skipped, with the
  // reason, when it has no unique solution: the network's fit stands on its own).
  const auto fit = least_squares(*data);
  const ad::Array<double>* beta = std::get_if<ad::Array<double>>(&fit);
  const double units = double(standardizer.y_scale) * standardizer.y_scale;
  auto rmse = [](double err, std::size_t n) { return std::sqrt(2 * err / static_cast<double>(n)); };
  if (beta) {
    const double ols_train = least_squares_error(*beta, *data) * units;
    std::cout << "least squares (linear, the floor): training E = " << ols_train << ", RMSE "
              << rmse(ols_train, data->size()) << "\n";
  } else {
    std::cout << "least squares (linear, the floor): skipped, no unique fit: "
              << std::get<std::string>(fit) << "\n";
  }
  if (held) {
    const double net_test = classic_error(model, *test, standardizer);
    std::cout << "held out (" << held << " samples): network E = " << net_test << ", RMSE "
              << rmse(net_test, held);
    if (beta) {
      const double ols_test = least_squares_error(*beta, *test) * units;
      std::cout << "; least squares E = " << ols_test << ", RMSE " << rmse(ols_test, held);
    }
    std::cout << "\n";
  }
  if (!o.plot.empty()) {
    examples::Series points{"data", {}, "points pt 7 ps 0.5"}, curve{"fit", {}, "lines lw 2"};
    if (inputs == 1) {
      for (std::size_t i = 0; i < raw->size(); ++i)
        points.points.emplace_back(raw->inputs()(i, 0), raw->targets()(i, 0));
      const float lo = xt::amin(raw->inputs())(), hi = xt::amax(raw->inputs())();
      for (int k = 0; k <= 200; ++k) {
        const float x = lo + (hi - lo) * static_cast<float>(k) / 200;
        ad::Array<float> in = xt::zeros<float>({1, 1});
        in(0, 0) = (x - standardizer.mean(0)) / standardizer.scale(0);
        curve.points.emplace_back(
            x, model(F(in)).value()(0, 0) * standardizer.y_scale + standardizer.y_mean);
      }
    }
    examples::Series loss{"E = ½Σ(y − ŷ)²", {}, "lines"};
    for (const auto& m : errors) loss.points.emplace_back(m.epoch, m.train_loss);
    std::vector<examples::Panel> panels{{"epoch", "E", {loss}, true}};
    if (inputs == 1) panels.push_back({"x", "y", {points, curve}});
    if (examples::plot_panels(o.plot, "regression", panels))
      std::cout << "plot written to '" << o.plot << "'\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  po::options_description desc(
      "regression: fit a function by minimising E = ½ Σ (y − ŷ)²\nOptions");
  desc.add_options()("help,h", "show this help")(
      "dataset",
      po::value(&o.dataset)->notifier([&o](const std::string&) { o.dataset_given = true; }),
      "curve (a generated noisy curve, the default) or diabetes (python3-sklearn's data)")(
      "data-dir", po::value(&o.data_dir), "where the diabetes files are")(
      "test-fraction", po::value<std::string>()->notifier([&](const std::string& text) {
        o.test_fraction = examples::parse_number(text, 0.0, 0.9, "test-fraction");
      }),
      "part held out for testing (default 0.2 for diabetes, else 0)")(
      "patience", examples::number(&o.patience, std::size_t{0}, std::size_t{1000000}, "patience"),
      "stop after this many epochs without a lower error on a validation fifth of the training "
      "part, keeping the best epoch's weights (0: off)")(
      "csv", po::value(&o.csv), "a CSV file with a header row (instead of --dataset)")(
      "target", po::value(&o.target), "the CSV column to predict from the others")(
      "epochs", examples::number(&o.epochs, std::size_t{1}, std::size_t{1000000}, "epochs"),
      "epochs")("batch-size",
                examples::number(&o.batch, std::size_t{1}, std::size_t{10000000}, "batch-size"),
                "mini-batch size")(
      "hidden", examples::number(&o.hidden, std::size_t{1}, std::size_t{100000}, "hidden"),
      "hidden units per layer")("lr", examples::number(&o.lr, 1e-12, 1e3, "lr"),
                                "Adam learning rate")(
      "points", examples::number(&o.points, std::size_t{2}, std::size_t{100000000}, "points"),
      "points of the generated curve")("noise", examples::number(&o.noise, 0.0, 1e6, "noise"),
                                       "noise deviation of the generated curve")(
      "seed",
      examples::number(&o.seed, decltype(o.seed){0}, std::numeric_limits<decltype(o.seed)>::max(),
                       "seed"),
      "random seed")("threads", examples::number(&o.threads, 1, 1024, "threads"), "BLAS threads")(
      "plot",
      po::value(&o.plot)->notifier([](const std::string& p) { examples::check_plot_path(p); }),
      "plot the error and the fit to this .png or .svg");
  return examples::run_program("regression", argc, argv, desc, [&] { return run(o); });
}
