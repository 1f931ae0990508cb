#include "nn/trainer.hpp"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "nn/checkpoint.hpp"

namespace ad::nn {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

std::string format_seconds(double s) {
  std::ostringstream os;
  if (s >= 60)
    os << static_cast<long>(s) / 60 << "m" << std::setw(2) << std::setfill('0')
       << static_cast<long>(s) % 60 << "s";
  else
    os << std::fixed << std::setprecision(1) << s << "s";
  return os.str();
}

/// Class indices of targets (N) or (N, 1).
template <class T>
std::vector<std::size_t> labels_of(const Variable<T>& targets) {
  std::vector<std::size_t> labels(targets.size());
  for (std::size_t i = 0; i < labels.size(); ++i)
    labels[i] = static_cast<std::size_t>(targets.value().data()[i]);
  return labels;
}

/// The model's buffers and states (running statistics, random stream positions) as they were
/// before a batch, to put back when the batch fails: with the weights (which the optimizer has
/// not touched yet) they are the model's state, and nothing of the failed batch may survive.
template <class T>
class StateSnapshot {
 public:
  explicit StateSnapshot(const Module<T>& model) {
    for (const auto& [name, b] : model.named_buffers()) buffers_.emplace_back(b, *b);
    for (const auto& [name, s] : model.named_states()) states_.emplace_back(s, *s);
  }
  void take() {
    for (auto& [live, copy] : buffers_) copy = *live;
    for (auto& [live, copy] : states_) copy = *live;
  }
  void restore() {
    for (auto& [live, copy] : buffers_) *live = copy;
    for (auto& [live, copy] : states_) *live = copy;
  }

 private:
  std::vector<std::pair<Array<T>*, Array<T>>> buffers_;
  std::vector<std::pair<StateArray*, StateArray>> states_;
};

}  // namespace

template <class T>
std::vector<std::size_t> argmax_rows(const Array<T>& scores) {
  if (scores.dimension() != 2)
    fail("argmax_rows: scores must be (N, K), got ", shape_str(scores.shape()));
  const std::size_t n = scores.shape()[0], k = scores.shape()[1];
  std::vector<std::size_t> out(n);
  for (std::size_t i = 0; i < n; ++i) {
    const T* row = scores.data() + i * k;
    out[i] = static_cast<std::size_t>(std::max_element(row, row + k) - row);
  }
  return out;
}

template <class T>
Trainer<T>::Trainer(Module<T>& model, Optimizer<T>& optimizer, Loss loss, TrainerOptions options)
    : model_(model), optimizer_(optimizer), loss_(std::move(loss)), options_(std::move(options)) {
  if (!loss_) fail("Trainer: no loss function");
}

template <class T>
std::ostream& Trainer<T>::log() const {
  return options_.log ? *options_.log : std::cout;
}

template <class T>
std::vector<EpochMetrics> Trainer<T>::fit(const DataLoader<T>& train,
                                          const DataLoader<T>* validation) {
  using Progress = TrainerOptions::Progress;
  Progress progress = options_.progress;
  if (progress == Progress::automatic)
    progress = (!options_.log || options_.log == &std::cout) && ::isatty(STDOUT_FILENO)
                   ? Progress::bar
                   : Progress::lines;
  std::vector<EpochMetrics> ran;
  const std::size_t batches = train.batches();
  StateSnapshot<T> snapshot(model_);
  for (std::size_t epoch = epochs_done_; epoch < options_.epochs; ++epoch) {
    model_.train();
    EpochMetrics m;
    m.epoch = epoch + 1;
    double loss_sum = 0;
    std::size_t seen = 0, correct = 0;
    // The rate this epoch trains at (with a per-batch schedule, at its first batch).
    m.lr = optimizer_.groups().empty() ? 0 : optimizer_.groups()[0].lr;
    auto last_draw = Clock::now() - std::chrono::seconds(1);
    const auto start = Clock::now();
    std::size_t b = 0;
    // A failed batch (NaN or infinite loss or gradient) stops training before the optimizer
    // step, with the model's buffers and states put back and no gradient left behind.
    auto stop = [&](const std::string& why) {
      snapshot.restore();
      optimizer_.zero_grad();
      model_.zero_grad();
      if (progress == Progress::bar) log() << "\n";
      throw TrainingError("training stopped at epoch " + std::to_string(epoch + 1) + ", batch " +
                          std::to_string(b + 1) + ": " + why +
                          "; the model keeps its weights, buffers and states from before this "
                          "batch");
    };
    for (const Batch<T>& batch : train.epoch(epoch)) {
      optimizer_.zero_grad();
      snapshot.take();
      Variable<T> output = model_(batch.inputs);
      Variable<T> loss = loss_(output, batch.targets);
      const double value = static_cast<double>(loss.item());
      if (!std::isfinite(value))
        stop(std::string("the loss is ") + (std::isnan(value) ? "NaN" : "infinite"));
      loss.backward();
      for (const auto& [name, p] : model_.named_parameters()) {
        if (!p->has_grad()) continue;
        for (T g : p->grad().value())
          if (!std::isfinite(g)) stop("the gradient of '" + name + "' is not finite");
      }
      if (options_.clip_grad_norm > 0)
        clip_grad_norm(optimizer_.parameters(), options_.clip_grad_norm);
      optimizer_.step();
      if (scheduler_ && options_.schedule_per_batch) scheduler_->step();

      const std::size_t count = batch.inputs.shape()[0];
      loss_sum += value * static_cast<double>(count);
      seen += count;
      if (options_.classification) {
        auto predicted = argmax_rows(output.value());
        auto labels = labels_of(batch.targets);
        for (std::size_t i = 0; i < count; ++i) correct += predicted[i] == labels[i];
      }
      ++b;
      if (on_batch_end) on_batch_end(epoch + 1, b, value);
      const auto now = Clock::now();
      if (progress == Progress::bar && (seconds_between(last_draw, now) > 0.1 || b == batches)) {
        last_draw = now;
        const double elapsed = seconds_between(start, now);
        const int width = 30;
        const int filled = static_cast<int>(width * b / batches);
        log() << "\repoch " << epoch + 1 << "/" << options_.epochs << " ["
              << std::string(filled, '=') << (filled < width ? ">" : "")
              << std::string(std::max(0, width - filled - 1), ' ') << "] " << b << "/" << batches
              << "  " << static_cast<long>(seen / std::max(elapsed, 1e-9)) << " samples/s  loss "
              << std::fixed << std::setprecision(4) << loss_sum / seen << "  ETA "
              << format_seconds(elapsed / b * (batches - b)) << "   " << std::flush;
        log().unsetf(std::ios::fixed);
      }
    }
    if (scheduler_ && !options_.schedule_per_batch) scheduler_->step();
    m.seconds = seconds_between(start, Clock::now());
    m.train_loss = loss_sum / std::max<std::size_t>(seen, 1);
    if (options_.classification)
      m.train_accuracy = double(correct) / std::max<std::size_t>(seen, 1);
    m.samples_per_second = seen / std::max(m.seconds, 1e-9);
    if (validation) {
      Evaluation e = evaluate(*validation);
      m.val_loss = e.loss;
      m.val_accuracy = e.accuracy;
    }
    ++epochs_done_;
    history_.push_back(m);
    ran.push_back(m);
    if (progress != Progress::none) {
      if (progress == Progress::bar) log() << "\n";
      std::ostringstream line;
      line << std::fixed << std::setprecision(4) << "epoch " << m.epoch << "/" << options_.epochs
           << ": train loss " << m.train_loss;
      if (options_.classification) line << ", train accuracy " << m.train_accuracy;
      if (validation) {
        line << ", " << options_.validation_name << " loss " << m.val_loss;
        if (options_.classification)
          line << ", " << options_.validation_name << " accuracy " << m.val_accuracy;
      }
      line << std::setprecision(0) << ", " << m.samples_per_second << " samples/s"
           << std::setprecision(2) << ", " << m.seconds << " s";
      log() << line.str() << std::endl;
    }
    if (!options_.metrics_csv.empty()) write_metrics_csv();
    if (!options_.checkpoint.empty()) save(options_.checkpoint);
    if (on_epoch_end) on_epoch_end(m);
  }
  return ran;
}

template <class T>
typename Trainer<T>::Evaluation Trainer<T>::evaluate(const DataLoader<T>& data,
                                                     bool keep_predictions) {
  NoGradGuard no_grad;
  const bool was_training = model_.is_training();
  model_.eval();
  Evaluation e;
  double loss_sum = 0;
  std::size_t seen = 0, correct = 0;
  for (const Batch<T>& batch : data.epoch(0)) {
    Variable<T> output = model_(batch.inputs);
    const std::size_t count = batch.inputs.shape()[0];
    loss_sum += static_cast<double>(loss_(output, batch.targets).item()) * count;
    seen += count;
    if (options_.classification) {
      auto predicted = argmax_rows(output.value());
      auto labels = labels_of(batch.targets);
      for (std::size_t i = 0; i < count; ++i) correct += predicted[i] == labels[i];
      if (keep_predictions) {
        e.predictions.insert(e.predictions.end(), predicted.begin(), predicted.end());
        e.labels.insert(e.labels.end(), labels.begin(), labels.end());
      }
    }
  }
  model_.train(was_training);
  e.loss = loss_sum / std::max<std::size_t>(seen, 1);
  if (options_.classification) e.accuracy = double(correct) / std::max<std::size_t>(seen, 1);
  return e;
}

template <class T>
void Trainer<T>::write_metrics_csv() const {
  const std::string& path = options_.metrics_csv;
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  {
    std::ofstream out(tmp);
    out << "epoch,train_loss,train_accuracy,val_loss,val_accuracy,seconds,samples_per_second,lr\n";
    out << std::setprecision(9);
    for (const auto& m : history_)
      out << m.epoch << "," << m.train_loss << "," << m.train_accuracy << "," << m.val_loss << ","
          << m.val_accuracy << "," << m.seconds << "," << m.samples_per_second << "," << m.lr
          << "\n";
    if (!out.flush()) {
      std::remove(tmp.c_str());
      fail("Trainer: cannot write the metrics to '", tmp, "'");
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    fail("Trainer: cannot rename '", tmp, "' to '", path, "'");
  }
}

template <class T>
void Trainer<T>::save(const std::string& path) const {
  Meta meta{{"epochs_done", static_cast<double>(epochs_done_)}};
  if (scheduler_) meta["scheduler_step"] = static_cast<double>(scheduler_->steps());
  save_checkpoint(path, model_, &optimizer_, meta);
}

template <class T>
void Trainer<T>::resume(const std::string& path) {
  Meta meta = load_checkpoint(path, model_, &optimizer_);
  auto it = meta.find("epochs_done");
  if (it == meta.end()) fail("Trainer::resume: '", path, "' has no meta/epochs_done");
  epochs_done_ = static_cast<std::size_t>(it->second);
  auto step = meta.find("scheduler_step");
  if (scheduler_ && step != meta.end())
    scheduler_->set_step(static_cast<std::uint64_t>(step->second));
  // Keep the metrics of the epochs already done, so the CSV stays whole.
  history_.clear();
  std::ifstream in(options_.metrics_csv);
  std::string line;
  if (!options_.metrics_csv.empty() && in && std::getline(in, line)) {
    while (std::getline(in, line)) {
      std::istringstream row(line);
      EpochMetrics m;
      std::string cell;
      std::vector<double> v;
      while (std::getline(row, cell, ',')) v.push_back(std::strtod(cell.c_str(), nullptr));
      if (v.size() != 8 || v[0] > epochs_done_) continue;
      m.epoch = static_cast<std::size_t>(v[0]);
      m.train_loss = v[1], m.train_accuracy = v[2], m.val_loss = v[3], m.val_accuracy = v[4];
      m.seconds = v[5], m.samples_per_second = v[6], m.lr = v[7];
      history_.push_back(m);
    }
  }
}

template class Trainer<float>;
template class Trainer<double>;
template std::vector<std::size_t> argmax_rows(const Array<float>&);
template std::vector<std::size_t> argmax_rows(const Array<double>&);

}  // namespace ad::nn
