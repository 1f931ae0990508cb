// Gradient descent and saddle points. On f(x, y) = x² − y², plain gradient descent started on the
// stable direction (y = 0) converges to the saddle at the origin, where every gradient is zero,
// and stalls. The Hessian from the tape (second-order reverse mode) shows a negative eigenvalue
// there, and a step along its eigenvector escapes. Momentum (which stays on y = 0) and small noise
// (which escapes, slowly) are compared. The same is then done in 4 dimensions on
// f(w) = ½ wᵀAw + ¼‖w‖⁴, whose saddle at 0 has two negative curvature directions and whose
// minima lie along the most negative one.
#include <boost/program_options.hpp>

#include <xtensor-blas/xlinalg.hpp>
#include <xtensor/xview.hpp>

#include <cmath>
#include <fstream>
#include <iomanip>
#include <iostream>

#include "autodiff/autodiff.hpp"
#include "cli.hpp"
#include "nn/atomic_write.hpp"
#include "nn/init.hpp"
#include "plot.hpp"

namespace po = boost::program_options;
using V = ad::Variable<double>;
using A = ad::Array<double>;

namespace {

struct Options {
  double lr = 0.1, momentum = 0.9, noise = 1e-3, escape = 1e-2;
  std::size_t steps = 60;
  std::uint64_t seed = 3;
  std::string plot = "saddle_point.png", csv = "saddle_point.csv";
};

/// f(x, y) = x² − y², written as a function of one 2-vector.
V saddle_2d(const V& p) {
  V x = ad::slice(p, 0, 0, 1), y = ad::slice(p, 0, 1, 2);
  return ad::sum(x * x - y * y);
}

A gradient(const std::function<V(const V&)>& f, const A& at) {
  V p(at, true);
  return ad::grad(f(p), {p})[0].value();
}

double value(const std::function<V(const V&)>& f, const A& at) {
  ad::NoGradGuard no_grad;
  return f(V(at)).item();
}

double length(const A& a) {
  return std::sqrt(double(xt::sum(a * a)()));
}

/// Symmetric eigen-decomposition (LAPACK through xtensor-blas): eigenvalues ascending, and the
/// eigenvectors as columns.
std::pair<A, A> eigen(const A& h) {
  xt::xarray<double> sym = h;
  auto [values, vectors] = xt::linalg::eigh(sym);
  return {A(values), A(vectors)};
}

/// Runs gradient descent (optionally with momentum and noise) from `start`, recording the path.
std::vector<A> descend(const std::function<V(const V&)>& f, A start, std::size_t steps, double lr,
                       double momentum, double noise, ad::nn::Generator& rng) {
  std::normal_distribution<double> gauss(0.0, noise);
  std::vector<A> path{start};
  A velocity = xt::zeros<double>(start.shape());
  A p = start;
  for (std::size_t t = 0; t < steps; ++t) {
    A g = gradient(f, p);
    if (noise > 0)
      for (auto& v : g) v += gauss(rng);
    velocity = momentum * velocity - lr * g;
    p = p + velocity;
    path.push_back(p);
  }
  return path;
}

std::string point_str(const A& p) {
  std::ostringstream os;
  os << std::showpos << std::scientific << std::setprecision(2) << "(";
  for (std::size_t i = 0; i < p.size(); ++i) os << (i ? ", " : "") << p(i);
  return os.str() + ")";
}

void report(const std::string& name, const std::function<V(const V&)>& f,
            const std::vector<A>& path) {
  const A& end = path.back();
  std::cout << "  " << std::left << std::setw(26) << name << std::right << " ends at "
            << point_str(end) << ", f = " << std::setw(10) << std::setprecision(4) << value(f, end)
            << ", |grad f| = " << std::scientific << std::setprecision(2)
            << length(gradient(f, end)) << std::defaultfloat << "\n";
}

/// The second-order test: at a point where the gradient vanishes, the Hessian's eigenvalues tell
/// a minimum (all positive) from a saddle (some negative). Returns the most negative eigenpair.
std::pair<double, A> classify(const std::function<V(const V&)>& f, const A& at) {
  A h = ad::hessian(f, at);
  auto [values, vectors] = eigen(h);
  std::cout << "  Hessian at " << point_str(at) << " (from the tape, second-order reverse mode):\n";
  for (std::size_t i = 0; i < h.shape()[0]; ++i) {
    std::cout << "    [";
    for (std::size_t j = 0; j < h.shape()[1]; ++j)
      std::cout << std::setw(8) << std::setprecision(4) << h(i, j);
    std::cout << " ]\n";
  }
  std::cout << "  eigenvalues:";
  for (double v : values) std::cout << " " << std::setprecision(4) << v;
  const bool saddle = values(0) < -1e-8;
  std::cout << (saddle ? "  -> a negative eigenvalue: a saddle point, not a minimum\n"
                       : "  -> all positive: a minimum\n");
  A direction = xt::view(vectors, xt::all(), 0);
  return {values(0), direction};
}

int run(const Options& o) {
  ad::nn::Generator rng(o.seed);
  std::function<V(const V&)> f = saddle_2d;
  std::cout << "1. f(x, y) = x² − y², gradient descent (lr " << o.lr << ") from (1, 0), on the "
            << "stable direction:\n";
  const A start{1.0, 0.0};
  auto plain = descend(f, start, o.steps, o.lr, 0.0, 0.0, rng);
  for (std::size_t t : {std::size_t(0), std::size_t(5), std::size_t(10), std::size_t(20), o.steps})
    if (t <= o.steps)
      std::cout << "  step " << std::setw(3) << t << ": " << point_str(plain[t])
                << "  |grad f| = " << std::scientific << std::setprecision(2)
                << length(gradient(f, plain[t])) << std::defaultfloat << "\n";
  std::cout << "  -> every gradient vanishes: plain gradient descent has stalled.\n\n";

  auto [lambda, direction] = classify(f, plain.back());
  std::cout << "\n2. Escaping: a step of " << o.escape << " along the eigenvector "
            << point_str(direction) << " of eigenvalue " << lambda
            << ", then gradient descent again (results in 3):\n";
  A kicked = plain.back() + o.escape * direction;
  auto escaped = descend(f, kicked, 30, o.lr, 0.0, 0.0, rng);
  std::vector<A> hessian_path = plain;
  hessian_path.insert(hessian_path.end(), escaped.begin(), escaped.end());
  auto with_momentum = descend(f, start, o.steps, o.lr, o.momentum, 0.0, rng);
  auto with_noise = descend(f, start, o.steps, o.lr, 0.0, o.noise, rng);
  std::cout << "\n3. After " << o.steps << " steps from (1, 0):\n";
  report("plain gradient descent", f, plain);
  report("momentum " + std::to_string(o.momentum).substr(0, 4), f, with_momentum);
  report("noise, deviation " + std::to_string(o.noise).substr(0, 6), f, with_noise);
  report("Hessian escape (+30 steps)", f, hessian_path);
  std::cout << "  Momentum starts with exactly zero gradient along y and stays on y = 0; noise\n"
            << "  escapes only once it has grown by chance, the Hessian escapes at once.\n";

  // 4-D: A = Q diag(2, 1, −0.5, −1) Qᵀ with a fixed rotation Q; start in the stable subspace.
  std::cout << "\n4. In 4 dimensions: f(w) = ½ wᵀAw + ¼‖w‖⁴, eigenvalues of A (2, 1, −0.5, −1) in "
               "a rotated basis:\n";
  A random = xt::zeros<double>({4, 4});
  ad::nn::init::normal(random, 0.0, 1.0, rng);
  auto [q, r] = xt::linalg::qr(xt::xarray<double>(random));
  const A lambdas{2.0, 1.0, -0.5, -1.0};
  A a = xt::zeros<double>({4, 4});
  for (std::size_t i = 0; i < 4; ++i)
    for (std::size_t j = 0; j < 4; ++j)
      for (std::size_t k = 0; k < 4; ++k) a(i, j) += q(i, k) * lambdas(k) * q(j, k);
  std::function<V(const V&)> g = [a](const V& w) {
    V aw = ad::matmul(ad::reshape(w, {1, 4}), V(a));
    V sq = ad::sum(w * w);
    return ad::sum(ad::reshape(aw, {4}) * w) * 0.5 + sq * sq * 0.25;
  };
  A w0 = xt::view(q, xt::all(), 0) * 0.8 + xt::view(q, xt::all(), 1) * 0.6;
  auto path4 = descend(g, w0, 150, o.lr, 0.0, 0.0, rng);
  report("gradient descent", g, path4);
  auto [lambda4, direction4] = classify(g, path4.back());
  auto out = descend(g, path4.back() + o.escape * direction4, 150, o.lr, 0.0, 0.0, rng);
  std::cout << "  escape along the eigenvector of " << lambda4 << ":\n";
  report("Hessian escape", g, out);
  classify(g, out.back());
  const double minimum = -0.25;  // at ‖w‖ = 1 along the eigenvector of −1
  std::cout << "  (the minimum along the eigenvalue −1 is f = " << minimum << ")\n";

  // Trajectories of part 1 as CSV, and over the contours of f as a picture.
  if (!o.csv.empty()) {
    ad::nn::write_atomically(
        o.csv,
        [&](const std::string& temporary) {
          std::ofstream csv(temporary);
          csv << "method,step,x,y,f\n";
          auto rows = [&](const std::string& name, const std::vector<A>& path) {
            for (std::size_t t = 0; t < path.size(); ++t)
              csv << name << "," << t << "," << path[t](0) << "," << path[t](1) << ","
                  << value(f, path[t]) << "\n";
          };
          rows("gradient_descent", plain);
          rows("momentum", with_momentum);
          rows("noise", with_noise);
          rows("hessian_escape", hessian_path);
          csv.flush();
          if (!csv) throw ad::Error("cannot write '" + temporary + "'");
        },
        "--csv");
    std::cout << "\ntrajectories written to '" << o.csv << "'\n";
  }
  if (!o.plot.empty()) {
    std::vector<double> xs, ys;
    for (int i = 0; i <= 60; ++i) xs.push_back(-1.2 + 2.4 * i / 60);
    ys = xs;
    std::vector<std::vector<double>> grid(xs.size(), std::vector<double>(ys.size()));
    for (std::size_t i = 0; i < xs.size(); ++i)
      for (std::size_t j = 0; j < ys.size(); ++j) grid[i][j] = xs[i] * xs[i] - ys[j] * ys[j];
    auto series = [](const std::string& name, const std::vector<A>& path) {
      examples::Series s{name, {}, "linespoints pt 7 ps 0.5 lw 1.5"};
      for (const auto& p : path)
        if (std::abs(p(0)) <= 1.2 && std::abs(p(1)) <= 1.2) s.points.emplace_back(p(0), p(1));
      return s;
    };
    if (examples::plot_contours(
            o.plot, "f(x, y) = x^2 - y^2", xs, ys, grid,
            {series("gradient descent", plain), series("momentum", with_momentum),
             series("noise", with_noise), series("Hessian escape", escaped)}))
      std::cout << "plot written to '" << o.plot << "'\n";
  }
  // The demonstration's outcome is the exit status: say why when the escape fell short.
  if (lambda < 0 && value(f, hessian_path.back()) < -0.1 && value(g, out.back()) < -0.2) return 0;
  std::cerr << "saddle_point: the escape step of " << o.escape
            << " did not get away from the saddles (f = " << value(f, hessian_path.back())
            << " in 2-D, " << value(g, out.back())
            << " in 4-D, after the steps that follow it); a larger --escape is needed\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  po::options_description desc(
      "saddle_point: gradient descent stalls at a saddle; the Hessian from the tape escapes it\n"
      "Options");
  desc.add_options()("help,h", "show this help")("lr", examples::number(&o.lr, 1e-12, 10.0, "lr"),
                                                 "learning rate")(
      "steps",
      examples::number(&o.steps, decltype(o.steps){1}, decltype(o.steps){10000000}, "steps"),
      "gradient steps")("momentum", examples::number(&o.momentum, 0.0, 0.9999, "momentum"),
                        "momentum of the comparison")(
      "noise", examples::number(&o.noise, 0.0, 1e3, "noise"), "deviation of the gradient noise")(
      "escape", examples::number(&o.escape, 1e-12, 1e3, "escape"), "length of the escape step")(
      "seed",
      examples::number(&o.seed, decltype(o.seed){0}, std::numeric_limits<decltype(o.seed)>::max(),
                       "seed"),
      "random seed")("csv",
                     po::value(&o.csv)->default_value(o.csv)->notifier([](const std::string& p) {
                       if (!p.empty()) ad::nn::check_writable(p, "--csv");
                     }),
                     "where to write the trajectories ('' for none)")(
      "plot", po::value(&o.plot)->default_value(o.plot)->notifier([](const std::string& p) {
        examples::check_plot_path(p);
      }),
      "where to plot them (.png or .svg; '' for none)");
  return examples::run_program("saddle_point", argc, argv, desc, [&] { return run(o); });
}
