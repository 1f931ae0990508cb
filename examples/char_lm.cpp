// A character-level language model trained on real text: the fortune cookies of Debian's
// `fortunes` package (about 2.5 MB of quotations, jokes and definitions). The text is read as
// bytes; its last tenth is the validation part. An LSTM (the default) or a small causal
// transformer (--model transformer) learns to predict each byte from the ones before; every epoch
// prints the training loss and the validation perplexity exp(mean cross-entropy per byte), and at
// the end the model writes text, sampled with a temperature.
#include <boost/program_options.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <random>

#include "autodiff/autodiff.hpp"
#include "cli.hpp"
#include "export.hpp"
#include "models.hpp"
#include "nn/nn.hpp"
#include "plot.hpp"

namespace nn = ad::nn;
namespace po = boost::program_options;
namespace fs = std::filesystem;
using F = ad::Variable<float>;

namespace {

/// Where Debian's fortunes package puts its files.
const char* const fortunes_dir = "/usr/share/games/fortunes";

struct Options {
  std::string model = "lstm", data_dir = fortunes_dir, checkpoint, metrics_csv, plot,
              prompt = "The ", export_onnx, graph;
  std::size_t epochs = 5, seq_len = 64, batch = 64, embed = 64, hidden = 128, layers = 1, heads = 4,
              limit = 0, sample = 300;
  double lr = 2e-3, val_fraction = 0.1, temperature = 0.8;
  std::uint64_t seed = 1;
  int threads = ad::default_num_threads();
  bool resume = false;
};

/// The text files of a fortunes folder (not the .dat indexes, not the .u8 links), in name
/// order, one after the other; at most `limit` bytes (0: all).
std::string read_corpus(const std::string& dir, std::size_t limit) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw ad::Error("'" + dir + "' is not a folder" +
                    (dir == fortunes_dir ? " (sudo apt-get install fortunes provides it)" : ""));
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const fs::path& p = entry.path();
    if (entry.is_symlink() || !entry.is_regular_file() || p.extension() == ".dat") continue;
    files.push_back(p);
  }
  std::sort(files.begin(), files.end());
  std::string text;
  for (const auto& p : files) {
    std::ifstream in(p, std::ios::binary);
    if (!in) throw ad::Error("cannot read '" + p.string() + "'");
    text.append(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    if (limit && text.size() >= limit) {
      text.resize(limit);
      break;
    }
  }
  if (text.size() < 1000)
    throw ad::Error("'" + dir + "' holds " + std::to_string(text.size()) +
                    " bytes of text; at least 1000 are needed");
  return text;
}

/// The bytes that occur, numbered in byte order.
struct Vocabulary {
  std::vector<unsigned char> bytes;  // index → byte
  std::array<int, 256> index{};      // byte → index (−1: absent)
  explicit Vocabulary(const std::string& text) {
    std::array<bool, 256> seen{};
    for (unsigned char c : text) seen[c] = true;
    index.fill(-1);
    for (int b = 0; b < 256; ++b)
      if (seen[b]) {
        index[b] = static_cast<int>(bytes.size());
        bytes.push_back(static_cast<unsigned char>(b));
      }
  }
  std::size_t size() const { return bytes.size(); }
};

/// Non-overlapping windows of `len` bytes as inputs and the bytes one further as targets, both as
/// vocabulary indices (N, len).
/// `what` names the text in errors.
std::shared_ptr<nn::Dataset<float>> windows(const std::string& text, const Vocabulary& v,
                                            std::size_t len, const std::string& what) {
  const std::size_t n = text.size() > len ? (text.size() - 1) / len : 0;
  if (n == 0)
    throw ad::Error(what + " has " + std::to_string(text.size()) +
                    " bytes, fewer than one sequence of --seq-len " + std::to_string(len) +
                    " and the byte after it");
  ad::Array<float> x = ad::Array<float>::from_shape({n, len});
  ad::Array<float> y = ad::Array<float>::from_shape({n, len});
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t t = 0; t < len; ++t) {
      x(i, t) = static_cast<float>(v.index[static_cast<unsigned char>(text[i * len + t])]);
      y(i, t) = static_cast<float>(v.index[static_cast<unsigned char>(text[i * len + t + 1])]);
    }
  return std::make_shared<nn::Dataset<float>>(std::move(x), std::move(y));
}

/// `o.sample` bytes drawn one at a time from softmax(logits / temperature) of the last position,
/// after the prompt. Each new byte costs one position of the model, not the whole context: the
/// LSTM carries its state; the transformer keeps the keys and values of the positions it has seen
/// (when its seq_len positions are full, it starts again from the last half of them). Writes the
/// bytes per second to `report`.
std::string sample(nn::Module<float>& model, const Vocabulary& v, const Options& o,
                   nn::Generator& rng, std::ostream& report) {
  ad::NoGradGuard no_grad;
  model.eval();
  std::vector<float> context;
  for (unsigned char c : o.prompt)
    if (v.index[c] >= 0) context.push_back(static_cast<float>(v.index[c]));
  if (context.empty()) context.push_back(0.0f);
  auto* lstm = dynamic_cast<examples::LstmModel*>(&model);
  auto* transformer = dynamic_cast<examples::TransformerModel*>(&model);
  nn::RecurrentState<float> state;
  std::vector<nn::AttentionCache<float>> caches;
  // The logits of the last of `tokens`, which follow what the state or caches hold.
  auto next_logits = [&](const float* tokens, std::size_t count) {
    ad::Array<float> x = ad::Array<float>::from_shape({1, count});
    std::copy(tokens, tokens + count, x.data());
    const ad::Array<float> logits = lstm ? lstm->forward(F(std::move(x)), state).value()
                                         : transformer->forward(F(std::move(x)), caches).value();
    return std::vector<float>(logits.end() - static_cast<long>(v.size()), logits.end());
  };
  auto restart = [&] {  // the transformer's window: the last seq_len/2 bytes, from empty caches
    const std::size_t keep = std::min(context.size(), std::max<std::size_t>(1, o.seq_len / 2));
    for (auto& c : caches) c.clear();
    return next_logits(context.data() + context.size() - keep, keep);
  };
  if (!lstm && !transformer) ad::fail("char_lm: sampling needs the LSTM or the transformer model");
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<float> logits = lstm ? next_logits(context.data(), context.size()) : restart();
  std::string out = o.prompt;
  for (std::size_t i = 0; i < o.sample; ++i) {
    std::vector<double> p(v.size());
    const double top = *std::max_element(logits.begin(), logits.end());
    for (std::size_t k = 0; k < v.size(); ++k) p[k] = std::exp((logits[k] - top) / o.temperature);
    const std::size_t next = std::discrete_distribution<std::size_t>(p.begin(), p.end())(rng);
    context.push_back(static_cast<float>(next));
    out.push_back(static_cast<char>(v.bytes[next]));
    if (i + 1 == o.sample) break;
    logits = transformer && caches[0].length() >= o.seq_len ? restart()
                                                            : next_logits(&context.back(), 1);
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  report << "sampled " << o.sample << " bytes at " << static_cast<long>(o.sample / seconds)
         << " bytes/s\n";
  return out;
}

int run(const Options& o) {
  ad::set_num_threads(o.threads);
  if (o.model != "lstm" && o.model != "transformer")
    throw ad::Error("--model must be lstm or transformer, not '" + o.model + "'");
  if (o.model == "transformer" && o.hidden % o.heads != 0)
    throw ad::Error("--heads (" + std::to_string(o.heads) + ") must divide --hidden (" +
                    std::to_string(o.hidden) + ")");
  const std::string text = read_corpus(o.data_dir, o.limit);
  const Vocabulary vocab(text);
  // The last part is the validation text: contiguous, so no window overlaps the training text.
  const auto split =
      static_cast<std::size_t>(static_cast<double>(text.size()) * (1 - o.val_fraction));
  auto train_data =
      windows(text.substr(0, split), vocab, o.seq_len, "the training part of the text");
  auto val_data = windows(text.substr(split), vocab, o.seq_len,
                          "the validation part of the text (its last --val-fraction " +
                              examples::text(o.val_fraction) + ")");
  nn::LoaderOptions lo;
  lo.batch_size = o.batch;
  lo.seed = o.seed;
  nn::DataLoader<float> train(train_data, lo);
  lo.shuffle = false;
  nn::DataLoader<float> val(val_data, lo);

  nn::Generator rng(o.seed);
  std::shared_ptr<nn::Module<float>> model;
  try {
    if (o.model == "lstm")
      model = std::make_shared<examples::LstmModel>(vocab.size(), o.embed, o.hidden, o.layers, rng);
    else
      model = std::make_shared<examples::TransformerModel>(vocab.size(), o.hidden, o.heads,
                                                           o.layers, o.seq_len, rng);
  } catch (const std::bad_alloc& e) {
    throw ad::Error("making the " + o.model + " model (--hidden " + std::to_string(o.hidden) +
                    ", --embed " + std::to_string(o.embed) + ", --layers " +
                    std::to_string(o.layers) + "): " + e.what() +
                    "; lower --hidden, --embed or --layers");
  }
  nn::AdamOptions ao;
  ao.lr = o.lr;
  nn::Adam<float> opt(model->parameters(), ao);
  nn::Scheduler<float> scheduler(opt, std::make_shared<nn::CosineSchedule>(o.epochs, 0.1));
  examples::check_export_paths(o.export_onnx, o.graph);
  nn::TrainerOptions to;
  to.epochs = o.epochs;
  to.classification = false;
  to.validation_name = "validation";
  to.clip_grad_norm = 1.0;
  to.checkpoint = o.checkpoint;
  to.metrics_csv = o.metrics_csv;
  // The vocabulary goes into the checkpoints (32 bytes a number, exact in a double): resuming on
  // a text of other bytes would make the embedding rows stand for other characters.
  for (std::size_t k = 0; k < 8; ++k) {
    std::uint32_t bits = 0;
    for (std::size_t b = 0; b < 32; ++b)
      if (vocab.index[32 * k + b] >= 0) bits |= std::uint32_t{1} << b;
    to.meta["vocabulary_" + std::to_string(k)] = bits;
  }
  to.check_meta = [&](const nn::Meta& saved) {
    auto show = [](std::size_t b) {
      if (b >= 32 && b < 127) return "'" + std::string(1, static_cast<char>(b)) + "'";
      const char* hex = "0123456789abcdef";
      return std::string("\\x") + hex[b >> 4] + hex[b & 15];
    };
    std::string text_only, checkpoint_only;
    std::size_t count = 0;
    for (std::size_t k = 0; k < 8; ++k) {
      auto it = saved.find("vocabulary_" + std::to_string(k));
      if (it == saved.end()) return;  // not a char_lm checkpoint: the trainer says so
      const auto bits = static_cast<std::uint32_t>(it->second);
      for (std::size_t b = 0; b < 32; ++b) {
        const bool in_checkpoint = bits >> b & 1u, in_text = vocab.index[32 * k + b] >= 0;
        count += in_checkpoint;
        if (in_text && !in_checkpoint) text_only += " " + show(32 * k + b);
        if (in_checkpoint && !in_text) checkpoint_only += " " + show(32 * k + b);
      }
    }
    if (!text_only.empty() || !checkpoint_only.empty())
      throw ad::Error("--resume: '" + o.checkpoint + "' was trained on a vocabulary of " +
                      std::to_string(count) + " bytes, this text has " +
                      std::to_string(vocab.size()) + " (" +
                      (text_only.empty() ? "" : "only in the text:" + text_only) +
                      (!text_only.empty() && !checkpoint_only.empty() ? "; " : "") +
                      (checkpoint_only.empty() ? "" : "only in the checkpoint:" + checkpoint_only) +
                      "): its embedding rows would stand for other characters");
  };
  // Mean cross-entropy per byte of the batch (B·L predictions).
  nn::Trainer<float> trainer(
      *model, opt,
      [](const F& logits, const F& y) {
        return nn::cross_entropy(logits, ad::reshape(y, ad::Shape{y.size()}));
      },
      to);
  trainer.set_scheduler(&scheduler);
  std::cout << "char_lm: " << o.model << " (" << model->parameter_count() << " parameters), "
            << text.size() << " bytes of " << o.data_dir << " (" << vocab.size() << " distinct), "
            << train_data->size() << " training and " << val_data->size()
            << " validation sequences of " << o.seq_len << ", batch " << o.batch << ", Adam lr "
            << o.lr << " (cosine), " << o.threads << " thread(s)\n";
  if (o.resume) {
    if (o.checkpoint.empty()) throw ad::Error("--resume needs --checkpoint PATH");
    trainer.resume(o.checkpoint);
    std::cout << "resumed from '" << o.checkpoint << "' after epoch " << trainer.epochs_done()
              << "\n";
  }
  trainer.on_epoch_end = [&](const nn::EpochMetrics& m) {
    std::cout << "epoch " << m.epoch << ": validation perplexity " << std::exp(m.val_loss)
              << " (train " << std::exp(m.train_loss) << "), "
              << static_cast<double>(train_data->size() * o.seq_len) / m.seconds << " bytes/s, "
              << m.seconds << " s\n";
  };
  trainer.fit(train, &val);
  if (!o.plot.empty()) {
    examples::Series tr{"training", {}}, va{"validation", {}};
    for (const auto& m : trainer.history()) {
      tr.points.emplace_back(m.epoch, std::exp(m.train_loss));
      va.points.emplace_back(m.epoch, std::exp(m.val_loss));
    }
    if (examples::plot_panels(o.plot, "char_lm (" + o.model + ")",
                              {{"epoch", "perplexity per byte", {tr, va}}}))
      std::cout << "plot written to '" << o.plot << "'\n";
  }
  if (!o.export_onnx.empty() || !o.graph.empty()) {
    // The model on the first validation sequences (at most 16): (B, L) byte indices.
    const auto first = val_data->slice(0, std::min<std::size_t>(16, val_data->size()));
    ad::Array<float> x = ad::Array<float>::from_shape(first.inputs().shape());
    std::copy(first.inputs().begin(), first.inputs().end(), x.begin());
    examples::export_model(*model, F(std::move(x)), o.export_onnx, o.graph, std::cout);
  }
  if (o.sample) {
    nn::Generator draw(o.seed + 7);
    const std::string text = sample(*model, vocab, o, draw, std::cout);
    std::cout << "\nsampled at temperature " << o.temperature << ":\n" << text << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  po::options_description desc(
      "char_lm: a character-level language model on the fortunes of Debian's fortunes package\n"
      "Options");
  using examples::number;
  using std::size_t;
  desc.add_options()("help,h", "show this help")("model", po::value(&o.model),
                                                 "lstm (default) or transformer")(
      "data-dir", po::value(&o.data_dir), "folder of text files (default: the fortunes)")(
      "epochs", number(&o.epochs, size_t{1}, size_t{100000}, "epochs"), "epochs")(
      "seq-len", number(&o.seq_len, size_t{2}, size_t{100000}, "seq-len"),
      "bytes per training sequence (and the sampling context)")(
      "batch-size", number(&o.batch, size_t{1}, size_t{1000000}, "batch-size"),
      "sequences per batch")("embed", number(&o.embed, size_t{1}, size_t{100000}, "embed"),
                             "LSTM: embedding size")(
      "hidden", number(&o.hidden, size_t{1}, size_t{100000}, "hidden"),
      "LSTM hidden size, or the transformer's width")(
      "layers", number(&o.layers, size_t{1}, size_t{1000}, "layers"),
      "LSTM layers or transformer blocks")(
      "heads", number(&o.heads, size_t{1}, size_t{1000}, "heads"), "transformer: attention heads")(
      "lr", number(&o.lr, 1e-12, 1e3, "lr"), "Adam learning rate (cosine to a tenth)")(
      "limit", number(&o.limit, size_t{0}, size_t{1} << 40, "limit"),
      "use only the first N bytes of text (0: all)")(
      "val-fraction", number(&o.val_fraction, 0.01, 0.9, "val-fraction"),
      "the last part of the text that validates")(
      "sample", number(&o.sample, size_t{0}, size_t{1000000}, "sample"),
      "bytes to write at the end (0: none)")(
      "temperature", number(&o.temperature, 1e-3, 1e3, "temperature"), "sampling temperature")(
      "prompt", po::value(&o.prompt), "text the sample starts from")(
      "seed",
      number(&o.seed, decltype(o.seed){0}, std::numeric_limits<decltype(o.seed)>::max(), "seed"),
      "seed of the weights, the shuffling and the sampling")(
      "threads", number(&o.threads, 1, 1024, "threads"), "threads")(
      "checkpoint", po::value(&o.checkpoint), "save model and optimizer here after every epoch")(
      "resume", po::bool_switch(&o.resume), "continue from --checkpoint")(
      "metrics-csv", po::value(&o.metrics_csv), "write the metrics per epoch to this CSV")(
      "plot",
      po::value(&o.plot)->notifier([](const std::string& p) { examples::check_plot_path(p); }),
      "plot the perplexity per epoch to this .png or .svg")(
      "export-onnx", po::value(&o.export_onnx),
      "after training, write the model as an ONNX model (opset 17) to this file, with its output "
      "on the first validation sequences beside it (FILE.expected.npz)")(
      "graph", po::value(&o.graph), "after training, draw the model's ops to this Graphviz file");
  return examples::run_program("char_lm", argc, argv, desc, [&] { return run(o); });
}
