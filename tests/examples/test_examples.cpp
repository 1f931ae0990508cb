// Smoke tests: every example runs on a small slice of data and learns (its loss falls).
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "nn/datasets.hpp"
#include "nn/npz.hpp"

namespace fs = std::filesystem;

namespace {

struct Result {
  int status;
  std::string output;
};

/// Runs an example with arguments, capturing stdout and stderr.
Result run(const std::string& example, const std::string& args) {
  const std::string cmd =
      std::string(AD_BINARY_DIR) + "/examples/" + example + " " + args + " 2>&1";
  Result r{-1, {}};
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) return r;
  char buffer[4096];
  std::size_t n;
  while ((n = fread(buffer, 1, sizeof buffer, pipe)) > 0) r.output.append(buffer, n);
  const int status = pclose(pipe);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::string temp(const std::string& name) {
  const std::string dir = std::string(AD_BINARY_DIR) + "/tests/examples_out";
  fs::create_directories(dir);
  return dir + "/" + name;
}

/// Column `column` of every data row of a CSV file.
std::vector<double> csv_column(const std::string& path, std::size_t column) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  std::vector<double> out;
  while (std::getline(in, line)) {
    std::istringstream row(line);
    std::string cell;
    for (std::size_t c = 0; c <= column; ++c) std::getline(row, cell, ',');
    out.push_back(std::stod(cell));
  }
  return out;
}

/// Every number that follows `prefix` in the text.
std::vector<double> numbers_after(const std::string& text, const std::string& prefix) {
  std::vector<double> out;
  std::regex re(prefix + "([-+0-9.eE]+)");
  for (std::sregex_iterator it(text.begin(), text.end(), re), end; it != end; ++it)
    out.push_back(std::stod((*it)[1]));
  return out;
}

const std::string fashion_data = "/usr/share/datasets/fashion-mnist";

}  // namespace

BOOST_AUTO_TEST_SUITE(examples)

BOOST_AUTO_TEST_CASE(fashion_mnist_mlp_learns) {
  BOOST_REQUIRE_MESSAGE(
      fs::exists(fashion_data + "/train-images-idx3-ubyte.gz"),
      "Fashion-MNIST missing: scripts/install-deps installs dataset-fashion-mnist");
  const std::string csv = temp("mlp.csv"), plot = temp("mlp.png");
  auto r = run("fashion_mnist",
               "--limit 600 --test-limit 200 --epochs 2 --batch-size 30 --quiet "
               "--metrics-csv " +
                   csv + " --plot " + plot);
  BOOST_TEST_MESSAGE(r.output);
  BOOST_REQUIRE(r.status == 0);
  auto loss = csv_column(csv, 1);
  BOOST_REQUIRE(loss.size() == 2u);
  BOOST_TEST(loss[0] < std::log(10.0));  // below the loss of a uniform guess
  BOOST_TEST(loss[1] < loss[0]);
  BOOST_TEST(r.output.find("confusion matrix") != std::string::npos);
  BOOST_TEST(r.output.find("Ankle boot") != std::string::npos);
  if (r.output.find("gnuplot is not installed") == std::string::npos) BOOST_TEST(fs::exists(plot));
}

BOOST_AUTO_TEST_CASE(fashion_mnist_cnn_learns_and_resumes) {
  const std::string csv = temp("cnn.csv"), ckpt = temp("cnn.npz");
  fs::remove(csv);
  auto first = run("fashion_mnist",
                   "--model cnn --limit 300 --test-limit 100 --epochs 1 "
                   "--batch-size 30 --quiet --metrics-csv " +
                       csv + " --checkpoint " + ckpt);
  BOOST_TEST_MESSAGE(first.output);
  BOOST_REQUIRE(first.status == 0);
  auto resumed = run("fashion_mnist",
                     "--model cnn --limit 300 --test-limit 100 --epochs 2 "
                     "--batch-size 30 --quiet --metrics-csv " +
                         csv + " --checkpoint " + ckpt + " --resume");
  BOOST_TEST_MESSAGE(resumed.output);
  BOOST_REQUIRE(resumed.status == 0);
  BOOST_TEST(resumed.output.find("resumed from") != std::string::npos);
  BOOST_TEST(resumed.output.find("epoch 1/2") == std::string::npos);  // not run again
  auto loss = csv_column(csv, 1);
  BOOST_REQUIRE(loss.size() == 2u);
  BOOST_TEST(loss[0] < std::log(10.0));
  BOOST_TEST(loss[1] < loss[0]);
}

BOOST_AUTO_TEST_CASE(fashion_mnist_bad_input) {
  auto r = run("fashion_mnist", "--data-dir " + temp("no_such_folder") + " --epochs 1");
  BOOST_TEST(r.status == 1);
  BOOST_TEST(r.output.find("train-images-idx3-ubyte") != std::string::npos);
  BOOST_TEST(run("fashion_mnist", "--model rnn --limit 10").status == 1);
  BOOST_TEST(run("fashion_mnist", "--bogus").status == 2);
  auto help = run("fashion_mnist", "--help");
  BOOST_TEST(help.status == 0);
  BOOST_TEST(help.output.find("--data-dir") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(options_are_range_checked_when_parsed) {
  // Each of these once ran: --batch-size -5 as 2^64 - 5 ("test accuracy 0.0000", exit 0),
  // --epochs -1 practically forever, --epochs 0 into the scheduler.
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"fashion_mnist", "--batch-size -5"}, {"fashion_mnist", "--epochs -1"},
      {"fashion_mnist", "--epochs 0"},      {"fashion_mnist", "--lr nan"},
      {"fashion_mnist", "--lr -0.1"},       {"fashion_mnist", "--momentum 1.5"},
      {"fashion_mnist", "--threads 0"},     {"fashion_mnist", "--epochs 3x"},
      {"fashion_mnist", "--limit 1e3"},     {"regression", "--points 1"},
      {"regression", "--lr 1e400"},         {"saddle_point", "--steps -3"},
      {"gradcheck_custom", "--batch 0"}};
  for (const auto& [example, args] : bad) {
    BOOST_TEST_CONTEXT(example << " " << args) {
      auto r = run(example, args);
      BOOST_TEST(r.status == 2);
      const std::string option = args.substr(0, args.find(' '));
      BOOST_TEST(r.output.find(option + " must be") != std::string::npos, r.output);
    }
  }
}

BOOST_AUTO_TEST_CASE(plot_paths_are_checked_when_parsed) {
  // Once: a .jpg got PNG data, and an unwritable path made gnuplot write the PNG to stdout,
  // failing only after the whole run.
  for (const std::string example : {"fashion_mnist", "char_lm", "regression", "saddle_point"}) {
    BOOST_TEST_CONTEXT(example) {
      auto ext = run(example, "--plot " + temp("plot.jpg"));
      BOOST_TEST(ext.status == 2);
      BOOST_TEST(ext.output.find("--plot: '" + temp("plot.jpg") + "' must end in .png or .svg") !=
                 std::string::npos);
      auto dir = run(example, "--plot " + temp("no_such_dir/plot.png"));
      BOOST_TEST(dir.status == 2);
      BOOST_TEST(dir.output.find("--plot: cannot write") != std::string::npos);
      BOOST_TEST(dir.output.find("does not exist") != std::string::npos);
    }
  }
}

BOOST_AUTO_TEST_CASE(fashion_mnist_resume_refuses_another_optimizer) {
  const std::string ckpt = temp("switch.npz");
  auto first =
      run("fashion_mnist", "--limit 200 --test-limit 50 --epochs 1 --quiet --checkpoint " + ckpt);
  BOOST_REQUIRE(first.status == 0);
  auto adam = run("fashion_mnist",
                  "--limit 200 --test-limit 50 --epochs 2 --quiet --optimizer "
                  "adam --resume --checkpoint " +
                      ckpt);
  BOOST_TEST(adam.status == 1);
  BOOST_TEST(adam.output.find("SGD optimizer, not of Adam") != std::string::npos, adam.output);
  auto reset = run("fashion_mnist",
                   "--limit 200 --test-limit 50 --epochs 2 --quiet --optimizer "
                   "adam --resume --reset-optimizer --checkpoint " +
                       ckpt);
  BOOST_TEST(reset.status == 0, reset.output);
  BOOST_TEST(reset.output.find("optimizer starts afresh") != std::string::npos);
  // An unwritable --metrics-csv is found before the first epoch trains.
  auto unwritable = run("fashion_mnist",
                        "--limit 200 --test-limit 50 --epochs 1 --quiet "
                        "--metrics-csv " +
                            temp("no/folder/m.csv"));
  BOOST_TEST(unwritable.status == 1);
  BOOST_TEST(unwritable.output.find("epoch 1/1") == std::string::npos);
  BOOST_TEST(unwritable.output.find("no/folder") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(regression_fits_the_curve_and_a_csv) {
  auto r = run("regression", "--epochs 40");
  BOOST_TEST_MESSAGE(r.output);
  BOOST_REQUIRE(r.status == 0);
  auto e = numbers_after(r.output, "E = ½Σ\\(y − ŷ\\)² = ");
  BOOST_REQUIRE(e.size() >= 2u);
  BOOST_TEST(e.back() < 0.2 * e.front());
  const std::string csv = temp("table.csv");
  {
    std::ofstream out(csv);
    out << "a,b,target\n";
    for (int i = 0; i < 60; ++i)
      out << i % 7 << "," << i % 5 << "," << 2.0 * (i % 7) - (i % 5) << "\n";
  }
  auto c = run("regression", "--csv " + csv + " --target target --epochs 60");
  BOOST_TEST_MESSAGE(c.output);
  BOOST_REQUIRE(c.status == 0);
  auto ec = numbers_after(c.output, "E = ½Σ\\(y − ŷ\\)² = ");
  BOOST_REQUIRE(ec.size() >= 2u);
  BOOST_TEST(ec.back() < 0.2 * ec.front());
  auto both = run("regression", "--dataset diabetes --csv " + csv + " --target target");
  BOOST_TEST(both.status == 1);
  BOOST_TEST(both.output.find("--csv and --dataset both say what data to fit") !=
             std::string::npos);
  auto bad = run("regression", "--csv " + csv + " --target nope");
  BOOST_TEST(bad.status == 1);
  BOOST_TEST(bad.output.find("no column 'nope'") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(regression_without_a_unique_least_squares_fit) {
  // The network trains; the least-squares baseline, which has no unique solution, is skipped with
  // its cause.
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"a,b,y\n1,2,3\n", "1 training sample for 3 coefficients"},
      {"a,b,y\n1,5,3\n2,5,1\n3,5,4\n4,5,2\n", "input column 2 is constant"},
      {"a,b,y\n1,2,3\n2,4,1\n3,6,4\n4,8,2\n",
       "the input columns and the intercept depend on each other (rank 2 of 3)"},
      {"a,b,y\n1,2,3\n1,2,3\n1,2,3\n", "input column 1 is constant"},
  };
  for (std::size_t k = 0; k < cases.size(); ++k) {
    const std::string csv = temp("singular" + std::to_string(k) + ".csv");
    std::ofstream(csv) << cases[k].first;
    auto r = run("regression", "--csv " + csv + " --target y --epochs 3");
    BOOST_TEST_MESSAGE(r.output);
    BOOST_TEST(r.status == 0, "case " << k);
    BOOST_TEST(r.output.find("least squares (linear, the floor): skipped, no unique fit: " +
                             cases[k].second) != std::string::npos,
               "case " << k);
  }
}

BOOST_AUTO_TEST_CASE(regression_on_the_diabetes_data_reaches_the_linear_floor) {
  if (!std::filesystem::exists(std::string(ad::nn::datasets::sklearn_data_dir) +
                               "/diabetes_target.csv.gz")) {
    BOOST_TEST_MESSAGE("python3-sklearn is not installed: skipped");
    return;
  }
  auto r = run("regression", "--dataset diabetes --patience 20 --hidden 16");
  BOOST_TEST_MESSAGE(r.output);
  BOOST_REQUIRE(r.status == 0);
  BOOST_TEST(r.output.find("284 training samples, 70 validating, 88 held out") !=
             std::string::npos);
  BOOST_TEST(r.output.find("stopped after epoch") != std::string::npos);
  // Held out: the network's error against the least-squares fit of the same training part.
  auto rmse = numbers_after(r.output, "RMSE ");
  BOOST_REQUIRE(rmse.size() ==
                3u);  // least squares on training; network and least squares held out
  BOOST_TEST(rmse[1] < 1.1 * rmse[2]);
  BOOST_TEST(rmse[2] > 40.0);  // the floor is far above zero: the data is noisy
  auto fraction = run("regression", "--dataset diabetes --test-fraction 0.95");
  BOOST_TEST(fraction.status == 2);
  BOOST_TEST(fraction.output.find("--test-fraction must be") != std::string::npos);
  auto unknown = run("regression", "--dataset iris");
  BOOST_TEST(unknown.status == 1);
  BOOST_TEST(unknown.output.find("'iris' is not curve or diabetes") != std::string::npos);
}

#ifdef AD_WITH_ONNX
BOOST_AUTO_TEST_CASE(fashion_mnist_exports_and_onnx_run_runs_it) {
  const std::string model = temp("mlp.onnx"), graph = temp("mlp.dot"), out = temp("mlp_out.npz");
  auto r = run("fashion_mnist", "--limit 300 --test-limit 100 --epochs 1 --quiet --export-onnx " +
                                    model + " --graph " + graph);
  BOOST_TEST_MESSAGE(r.output);
  BOOST_REQUIRE(r.status == 0);
  BOOST_TEST(r.output.find("ONNX model written to") != std::string::npos);
  std::ifstream dot(graph);
  const std::string text((std::istreambuf_iterator<char>(dot)), std::istreambuf_iterator<char>());
  BOOST_TEST(text.find("linear\nactivation=relu") != std::string::npos);
  // The exported model, imported again, gives the trained model's outputs on the test images.
  auto again =
      run("onnx_run", model + " --input x=" + model + ".expected.npz --output " + out + " --grad");
  BOOST_TEST_MESSAGE(again.output);
  BOOST_REQUIRE(again.status == 0);
  BOOST_TEST(again.output.find("output: shape (100,10)") != std::string::npos);
  BOOST_TEST(again.output.find("7 gradients of sum(output)") != std::string::npos);
  const auto expected = ad::nn::npz::load(model + ".expected.npz");
  const auto got = ad::nn::npz::load(out);
  BOOST_REQUIRE(got.size() == 8u);
  const auto want = ad::nn::npz::to_array<ad::Array<float>>(expected.at(1).second, "output", model);
  const auto have = ad::nn::npz::to_array<ad::Array<float>>(got.at(0).second, "output", out);
  BOOST_REQUIRE(want.shape() == have.shape());
  for (std::size_t i = 0; i < want.size(); ++i)
    BOOST_TEST(std::abs(want.data()[i] - have.data()[i]) <= 1e-5 * (1 + std::abs(want.data()[i])));
  // Bad input names what is wrong.
  auto missing = run("onnx_run", model);
  BOOST_TEST(missing.status == 1);
  BOOST_TEST(missing.output.find("input 'x' is missing: give --input x=FILE.npy") !=
             std::string::npos);
  auto unknown = run("onnx_run", model + " --input y=" + model + ".expected.npz");
  BOOST_TEST(unknown.status == 1);
  BOOST_TEST(unknown.output.find("the model has no input 'y' (its inputs: x)") !=
             std::string::npos);
  auto not_a_model = run("onnx_run", graph + " --input x=" + model + ".expected.npz");
  BOOST_TEST(not_a_model.status == 1);
  BOOST_TEST(not_a_model.output.find("is not an ONNX model") != std::string::npos);
}
#endif

BOOST_AUTO_TEST_CASE(char_lm_learns_a_text) {
  // A text with structure to learn: words of a small vocabulary in a fixed cycle.
  const std::string dir = temp("char_text");
  std::filesystem::create_directories(dir);
  {
    std::ofstream out(dir + "/words");
    const char* words[] = {"the ", "cat ", "sat ", "on ", "a ", "mat\n"};
    for (int i = 0; i < 1500; ++i) out << words[i % 6];
    std::ofstream(dir + "/index.dat") << "not text";  // skipped, as the fortunes' .dat files
  }
  for (const std::string model : {"lstm", "transformer"}) {
    BOOST_TEST_CONTEXT(model) {
      auto r = run("char_lm", "--data-dir " + dir + " --model " + model +
                                  " --epochs 4 --seq-len 16 --batch-size 16 --embed 8 --hidden 16 "
                                  "--lr 0.01 --sample 40 --prompt 'the ' --threads 1 --plot " +
                                  temp("char_" + model + ".png"));
      BOOST_TEST_MESSAGE(r.output);
      BOOST_REQUIRE(r.status == 0);
      BOOST_TEST(r.output.find("(11 distinct)") != std::string::npos);
      auto ppl = numbers_after(r.output, "validation perplexity ");
      BOOST_REQUIRE(ppl.size() == 4u);
      BOOST_TEST(ppl.back() < 0.5 * ppl.front());
      BOOST_TEST(ppl.back() < 3.0);  // 11 symbols: uniform guessing is 11
      BOOST_TEST(r.output.find("sampled at temperature 0.8:\nthe ") != std::string::npos);
    }
  }
  // Resuming on a text of other bytes (as many distinct ones) is refused, naming them.
  const std::string other = temp("char_text_other");
  std::filesystem::create_directories(other);
  {
    std::ofstream out(other + "/words");
    const char* words[] = {"thx ", "cat ", "sat ", "on ", "a ", "mat\n"};  // 'x' for 'e'
    for (int i = 0; i < 1500; ++i) out << words[i % 6];
  }
  const std::string ck = temp("char_vocab.npz");
  std::remove(ck.c_str());
  auto first = run("char_lm", "--data-dir " + dir +
                                  " --epochs 1 --seq-len 16 --batch-size 16 "
                                  "--embed 8 --hidden 16 --sample 0 --checkpoint " +
                                  ck);
  BOOST_REQUIRE(first.status == 0);
  auto resumed = run("char_lm", "--data-dir " + other +
                                    " --epochs 2 --seq-len 16 --batch-size 16 "
                                    "--embed 8 --hidden 16 --sample 0 --resume --checkpoint " +
                                    ck);
  BOOST_TEST_MESSAGE(resumed.output);
  BOOST_TEST(resumed.status == 1);
  BOOST_TEST(resumed.output.find("was trained on a vocabulary of 11 bytes, this text has 11 (only "
                                 "in the text: 'x'; only in the checkpoint: 'e')") !=
             std::string::npos);
  auto same = run("char_lm", "--data-dir " + dir +
                                 " --epochs 2 --seq-len 16 --batch-size 16 "
                                 "--embed 8 --hidden 16 --sample 0 --resume --checkpoint " +
                                 ck);
  BOOST_TEST(same.status == 0);
  BOOST_TEST(same.output.find("resumed from") != std::string::npos);
  auto missing = run("char_lm", "--data-dir " + temp("no_such_dir"));
  BOOST_TEST(missing.status == 1);
  BOOST_TEST(missing.output.find("is not a folder") != std::string::npos);
  auto heads = run("char_lm", "--data-dir " + dir + " --model transformer --hidden 10 --heads 4");
  BOOST_TEST(heads.status == 1);
  BOOST_TEST(heads.output.find("--heads (4) must divide --hidden (10)") != std::string::npos);
  // Messages that name what to change: the part of the text too short for --seq-len, and a
  // model too large for memory (not under AddressSanitizer, which stops at such a request).
  auto long_seq = run("char_lm", "--data-dir " + dir + " --seq-len 2000");
  BOOST_TEST(long_seq.status == 1);
  BOOST_TEST(long_seq.output.find("the validation part of the text (its last --val-fraction 0.1) "
                                  "has 525 bytes, fewer than one sequence of --seq-len 2000") !=
             std::string::npos);
#if !defined(__SANITIZE_ADDRESS__)
  auto huge = run("char_lm", "--data-dir " + dir + " --hidden 100000 --embed 1");
  BOOST_TEST(huge.status == 1);
  BOOST_TEST(huge.output.find("making the lstm model (--hidden 100000, --embed 1, --layers 1): out "
                              "of memory: an array of 160000000000 bytes") != std::string::npos);
  BOOST_TEST(huge.output.find("lower --hidden, --embed or --layers") != std::string::npos);
#endif
  auto len = run("char_lm", "--seq-len 1");
  BOOST_TEST(len.status == 2);
  BOOST_TEST(len.output.find("--seq-len must be") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(saddle_point_escapes) {
  const std::string csv = temp("saddle.csv"), plot = temp("saddle.png");
  auto r = run("saddle_point", "--csv " + csv + " --plot " + plot);
  BOOST_TEST_MESSAGE(r.output);
  BOOST_REQUIRE(r.status == 0);  // the program checks that the Hessian escape lowers f
  BOOST_TEST(r.output.find("a saddle point, not a minimum") != std::string::npos);
  BOOST_TEST(r.output.find("all positive: a minimum") != std::string::npos);
  BOOST_TEST(fs::exists(csv));
  // A folder as --csv is refused before the run, naming it, and leaves no temporary; '' writes
  // none; an escape that falls short says so.
  const std::string folder = temp("saddle_dir");
  fs::create_directories(folder);
  auto dir = run("saddle_point", "--csv " + folder + " --plot ''");
  BOOST_TEST(dir.status == 2);
  BOOST_TEST(dir.output.find("--csv: '" + folder + "' is a directory") != std::string::npos);
  BOOST_TEST(!fs::exists(folder + ".tmp"));
  auto none = run("saddle_point", "--csv '' --plot ''");
  BOOST_TEST(none.status == 0);
  BOOST_TEST(none.output.find("trajectories written") == std::string::npos);
  auto zero = run("saddle_point", "--escape 0");
  BOOST_TEST(zero.status == 2);
  BOOST_TEST(zero.output.find("--escape must be") != std::string::npos);
  auto tiny = run("saddle_point", "--escape 1e-9 --csv '' --plot ''");
  BOOST_TEST(tiny.status == 1);
  BOOST_TEST(tiny.output.find("did not get away from the saddles") != std::string::npos);
  for (const auto& e : fs::directory_iterator(fs::current_path()))
    BOOST_TEST(e.path().extension() != ".tmp", e.path());
}

BOOST_AUTO_TEST_CASE(gradcheck_custom_catches_the_mistake) {
  auto r = run("gradcheck_custom", "--hidden 8 --batch 4");
  BOOST_TEST_MESSAGE(r.output);
  BOOST_REQUIRE(r.status == 0);  // the right backward passes, the wrong one fails
  BOOST_TEST(r.output.find("gradcheck PASSED") != std::string::npos);
  BOOST_TEST(r.output.find("gradcheck FAILED") != std::string::npos);
  BOOST_TEST(r.output.find("op %3 `swish` in `1.1`") != std::string::npos);
  BOOST_TEST(r.output.find("check_op FAILED: gradient") != std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()
