#include "nn/trainer.hpp"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "autodiff/index.hpp"
#include "autodiff/ops.hpp"
#include "nn/atomic_write.hpp"
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

/// Class indices of a batch's targets (N) or (N, 1), each checked to be a class in
/// [0, classes): a bad one throws naming the sample it came from in `set` ("training", ...).
template <class T>
Index labels_of(const Batch<T>& batch, std::size_t classes, const std::string& set) {
  const std::size_t n = batch.inputs.shape()[0];
  if (batch.targets.size() != n)
    fail("Trainer: classification needs one class index per sample, the ", set,
         " targets have shape ", shape_str(batch.targets.shape()), " for ", n, " samples");
  Array<T> flat = batch.targets.value();
  flat.reshape({n});
  for (std::size_t i = 0; i < n; ++i) {
    const T v = flat(i);
    if (!(v >= 0 && v < static_cast<T>(classes) && v == std::floor(v)))
      fail("Trainer: the label of ", set, " sample ", batch.samples.at(i), " is ", v,
           ", not a class index in [0, ", classes, ") (row ", i, " of its batch)");
  }
  return Index::from_values(flat, "Trainer: labels");
}

/// The number of classes of classification outputs (N, K), or 0 when they are not (N, K) (the
/// loss then says what is wrong).
template <class T>
std::size_t classes_of(const Variable<T>& output) {
  return output.dim() == 2 ? output.shape()[1] : 0;
}

/// The metrics CSV's columns after the first, "epoch": the one place that defines the file's
/// layout. write_metrics_csv writes them; resume reads them back by the header's names.
const std::pair<const char*, double EpochMetrics::*> metrics_columns[] = {
    {"train_loss", &EpochMetrics::train_loss},
    {"train_accuracy", &EpochMetrics::train_accuracy},
    {"val_loss", &EpochMetrics::val_loss},
    {"val_accuracy", &EpochMetrics::val_accuracy},
    {"seconds", &EpochMetrics::seconds},
    {"samples_per_second", &EpochMetrics::samples_per_second},
    {"lr", &EpochMetrics::lr}};

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
  check_before_training(train, validation);
  using Progress = TrainerOptions::Progress;
  progress_ = options_.progress;
  if (progress_ == Progress::automatic)
    progress_ = (!options_.log || options_.log == &std::cout) && ::isatty(STDOUT_FILENO)
                    ? Progress::bar
                    : Progress::lines;
  std::vector<EpochMetrics> ran;
  stopped_early_ = false;
  for (std::size_t epoch = epochs_done_; epoch < options_.epochs; ++epoch) {
    EpochMetrics m = train_epoch(train, epoch);
    if (validation) {
      Evaluation e = evaluate(*validation);
      m.val_loss = e.loss;
      m.val_accuracy = e.accuracy;
    }
    ++epochs_done_;
    history_.push_back(m);
    ran.push_back(m);
    log_epoch(m, validation != nullptr);
    monitor(m, validation != nullptr);
    write_outputs();
    if (on_epoch_end) on_epoch_end(m);
    if (options_.patience > 0 && stale_epochs_ >= options_.patience) {
      stopped_early_ = true;
      if (progress_ != TrainerOptions::Progress::none && is_root())
        log() << "early stop after epoch " << m.epoch << ": no improvement for " << stale_epochs_
              << " epochs (best: epoch " << best_epoch_ << ", loss " << best_loss_ << ")\n";
      break;
    }
  }
  if (options_.keep_best) restore_best();
  return ran;
}

template <class T>
void Trainer<T>::monitor(const EpochMetrics& m, bool validation) {
  const double loss = validation ? m.val_loss : m.train_loss;
  if (loss < best_loss_ - options_.min_delta) {
    best_loss_ = loss;
    best_epoch_ = m.epoch;
    stale_epochs_ = 0;
    if (options_.keep_best) {
      Best b;
      for (const auto& p : model_.parameters()) b.parameters.push_back(p.value());
      for (const auto& [name, buffer] : model_.named_buffers()) b.buffers.push_back(*buffer);
      for (const auto& [name, state] : model_.named_states()) b.states.push_back(*state);
      best_ = std::move(b);
    }
    if (!options_.best_checkpoint.empty() && is_root())
      save_checkpoint(options_.best_checkpoint, model_);
  } else {
    ++stale_epochs_;
  }
  if (plateau_) plateau_->step(loss);
}

template <class T>
void Trainer<T>::restore_best() {
  if (best_) {
    auto parameters = model_.parameters();
    for (std::size_t i = 0; i < parameters.size(); ++i) {
      Array<T>& live = parameters[i].mutable_value();
      std::copy(best_->parameters[i].begin(), best_->parameters[i].end(), live.begin());
    }
    std::size_t i = 0;
    for (const auto& [name, buffer] : model_.named_buffers()) *buffer = best_->buffers[i++];
    i = 0;
    for (const auto& [name, state] : model_.named_states()) *state = best_->states[i++];
  } else if (best_epoch_ > 0 && !options_.best_checkpoint.empty()) {
    load_checkpoint(options_.best_checkpoint, model_);  // the best epoch came before a resume
  } else if (best_epoch_ > 0 && best_epoch_ < epochs_done_) {
    fail("Trainer: keep_best: the best epoch (", best_epoch_,
         ") came before the resume and no best_checkpoint was saved");
  }
}

template <class T>
void Trainer<T>::check_before_training(const DataLoader<T>& train,
                                       const DataLoader<T>* validation) const {
  if (train.batches() == 0)
    fail("Trainer::fit: the training set has no batch (", train.samples(), " samples, batch size ",
         train.options().batch_size, train.options().drop_last ? ", drop_last" : "", ")");
  if (validation && validation->samples() == 0)
    fail("Trainer::fit: the ", options_.validation_name, " set is empty");
  if (!(options_.min_delta >= 0))
    fail("Trainer::fit: min_delta is ", options_.min_delta, "; it must be >= 0");
  if (plateau_ && scheduler_)
    fail("Trainer::fit: a scheduler and a plateau both set the rates; use one");
  if (!is_root()) return;
  if (!options_.checkpoint.empty()) check_writable(options_.checkpoint, "Trainer: checkpoint");
  if (!options_.best_checkpoint.empty())
    check_writable(options_.best_checkpoint, "Trainer: best checkpoint");
  if (!options_.metrics_csv.empty()) check_writable(options_.metrics_csv, "Trainer: metrics CSV");
}

template <class T>
void Trainer<T>::combine(double& loss_sum, std::size_t& seen, std::size_t& correct) const {
  if (!collective_) return;
  double figures[3] = {loss_sum, static_cast<double>(seen), static_cast<double>(correct)};
  collective_->sum(figures, 3);
  loss_sum = figures[0];
  seen = static_cast<std::size_t>(figures[1]);
  correct = static_cast<std::size_t>(figures[2]);
}

template <class T>
EpochMetrics Trainer<T>::train_epoch(const DataLoader<T>& train, std::size_t epoch) {
  model_.train();
  EpochMetrics m;
  m.epoch = epoch + 1;
  // The rate this epoch trains at (with a per-batch schedule, at its first batch).
  m.lr = optimizer_.groups().empty() ? 0 : optimizer_.groups()[0].lr;
  StateSnapshot<T> snapshot(model_);
  double loss_sum = 0;
  std::size_t seen = 0, correct = 0, b = 0;
  const auto start = Clock::now();
  auto last_draw = start - std::chrono::seconds(1);
  // A failed batch (NaN or infinite loss or gradient) stops training before the optimizer
  // step, with the model's buffers and states put back and no gradient left behind.
  auto stop = [&](const std::string& why) {
    snapshot.restore();
    optimizer_.zero_grad();
    model_.zero_grad();
    if (progress_ == TrainerOptions::Progress::bar && is_root()) log() << "\n";
    throw TrainingError("training stopped at epoch " + std::to_string(epoch + 1) + ", batch " +
                        std::to_string(b + 1) + ": " + why +
                        "; the model keeps its weights, buffers and states from before this "
                        "batch");
  };
  const std::size_t accumulate = std::max<std::size_t>(options_.accumulate, 1);
  const std::size_t batches = train.batches();
  std::string bad_loss;  // in a data-parallel run the stop waits for every process to agree
  for (const Batch<T>& batch : train.epoch(epoch)) {
    // A step: zero the gradients, backward of `accumulate` batches, then the seam and the step.
    const bool first_of_step = b % accumulate == 0;
    const bool last_of_step = (b + 1) % accumulate == 0 || b + 1 == batches;
    if (first_of_step) {
      optimizer_.zero_grad();
      snapshot.take();
      bad_loss.clear();
    }
    const std::size_t count = batch.inputs.shape()[0];
    Variable<T> output = model_(batch.inputs);
    Index labels;
    if (options_.classification && classes_of(output))
      labels = labels_of(batch, classes_of(output), "training");
    // An empty shard (a tail batch smaller than the processes) still runs backward, with a zero
    // loss, so that every process meets the same collectives (SyncBatchNorm's, the gradients').
    Variable<T> loss = count ? loss_(output, batch.targets) : sum(output) * 0.0;
    const double value = static_cast<double>(loss.item());
    if (!std::isfinite(value)) {
      const std::string why =
          std::string("the loss is ") + (std::isnan(value) ? "NaN" : "infinite");
      if (!collective_) stop(why);
      if (bad_loss.empty()) bad_loss = why;
    }
    // The share of this batch in the step: 1/accumulate, times its share of the global batch.
    const double share = (batch.global_size ? double(count) / double(batch.global_size) : 1.0) /
                         static_cast<double>(accumulate);
    if (share != 1.0) loss = loss * share;
    if (before_backward) before_backward(last_of_step);
    loss.backward();
    if (last_of_step) step(stop, bad_loss);

    loss_sum += value * static_cast<double>(count);
    seen += count;
    if (labels.size() > 0) {
      auto predicted = argmax_rows(output.value());
      for (std::size_t i = 0; i < count; ++i) correct += predicted[i] == labels[i];
    }
    ++b;
    if (on_batch_end) on_batch_end(epoch + 1, b, value);
    const auto now = Clock::now();
    if (progress_ == TrainerOptions::Progress::bar && is_root() &&
        (seconds_between(last_draw, now) > 0.1 || b == batches)) {
      last_draw = now;
      draw_progress(epoch, b, batches, seen, loss_sum, seconds_between(start, now));
    }
  }
  if (scheduler_ && !options_.schedule_per_batch) scheduler_->step();
  combine(loss_sum, seen, correct);
  m.seconds = seconds_between(start, Clock::now());
  m.train_loss = loss_sum / static_cast<double>(seen);
  if (options_.classification) m.train_accuracy = double(correct) / static_cast<double>(seen);
  m.samples_per_second = static_cast<double>(seen) / std::max(m.seconds, 1e-9);
  return m;
}

template <class T>
void Trainer<T>::step(const std::function<void(const std::string&)>& stop,
                      const std::string& bad_loss) {
  if (on_gradients) on_gradients();
  if (collective_) {  // every process stops, or none
    double bad = bad_loss.empty() ? 0 : 1;
    collective_->sum(&bad, 1);
    if (bad > 0) stop(bad_loss.empty() ? "the loss is not finite on another process" : bad_loss);
  }
  for (const auto& [name, p] : model_.named_parameters()) {
    if (!p.has_grad()) continue;
    for (T g : p.grad().value())
      if (!std::isfinite(g)) stop("the gradient of '" + name + "' is not finite");
  }
  if (options_.clip_grad_norm > 0) clip_grad_norm(optimizer_.parameters(), options_.clip_grad_norm);
  optimizer_.step();
  if (scheduler_ && options_.schedule_per_batch) scheduler_->step();
}

template <class T>
void Trainer<T>::draw_progress(std::size_t epoch, std::size_t b, std::size_t batches,
                               std::size_t seen, double loss_sum, double elapsed) const {
  const int width = 30;
  const int filled = static_cast<int>(width * b / batches);
  log() << "\repoch " << epoch + 1 << "/" << options_.epochs << " [" << std::string(filled, '=')
        << (filled < width ? ">" : "") << std::string(std::max(0, width - filled - 1), ' ') << "] "
        << b << "/" << batches << "  " << static_cast<long>(seen / std::max(elapsed, 1e-9))
        << " samples/s  loss " << std::fixed << std::setprecision(4) << loss_sum / seen << "  ETA "
        << format_seconds(elapsed / b * (batches - b)) << "   " << std::flush;
  log().unsetf(std::ios::fixed);
}

template <class T>
void Trainer<T>::log_epoch(const EpochMetrics& m, bool validation) const {
  using Progress = TrainerOptions::Progress;
  if (progress_ == Progress::none || !is_root()) return;
  if (progress_ == Progress::bar) log() << "\n";
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

template <class T>
void Trainer<T>::write_outputs() const {
  // The checkpoint first (it is what a resume needs), then the metrics; a failure of one does
  // not keep the other from being written, and both are reported.
  if (!is_root()) return;
  std::string errors;
  auto attempt = [&](const std::string& path, const std::function<void()>& write) {
    if (path.empty()) return;
    try {
      write();
    } catch (const std::exception& e) {
      errors += (errors.empty() ? "" : "; ") + std::string(e.what());
    }
  };
  attempt(options_.checkpoint, [&] { save(options_.checkpoint); });
  attempt(options_.metrics_csv, [&] { write_metrics_csv(); });
  if (!errors.empty()) fail(errors);
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
  if (data.samples() == 0) fail("Trainer::evaluate: the dataset is empty");
  for (const Batch<T>& batch : data.epoch(0)) {
    Variable<T> output = model_(batch.inputs);
    Index labels;
    if (options_.classification && classes_of(output))
      labels = labels_of(batch, classes_of(output), options_.validation_name);
    const std::size_t count = batch.inputs.shape()[0];
    if (count) loss_sum += static_cast<double>(loss_(output, batch.targets).item()) * count;
    seen += count;
    if (labels.size() > 0) {
      auto predicted = argmax_rows(output.value());
      for (std::size_t i = 0; i < count; ++i) correct += predicted[i] == labels[i];
      if (keep_predictions) {
        e.predictions.insert(e.predictions.end(), predicted.begin(), predicted.end());
        e.labels.insert(e.labels.end(), labels.data(), labels.data() + labels.size());
      }
    }
  }
  model_.train(was_training);
  combine(loss_sum, seen, correct);
  e.loss = loss_sum / static_cast<double>(seen);
  if (options_.classification) e.accuracy = double(correct) / static_cast<double>(seen);
  return e;
}

template <class T>
void Trainer<T>::write_metrics_csv() const {
  write_atomically(
      options_.metrics_csv,
      [&](const std::string& tmp) {
        std::ofstream out(tmp);
        out << std::setprecision(9) << "epoch";
        for (const auto& [name, field] : metrics_columns) out << "," << name;
        out << "\n";
        for (const auto& m : history_) {
          out << m.epoch;
          for (const auto& [name, field] : metrics_columns) out << "," << m.*field;
          out << "\n";
        }
        if (!out.flush()) fail("Trainer: cannot write the metrics to '", tmp, "'");
      },
      "Trainer: metrics CSV");
}

template <class T>
void Trainer<T>::save(const std::string& path) const {
  Meta meta{{"epochs_done", static_cast<double>(epochs_done_)}};
  if (scheduler_) meta["scheduler_step"] = static_cast<double>(scheduler_->steps());
  meta["best_loss"] = best_loss_;
  meta["best_epoch"] = static_cast<double>(best_epoch_);
  meta["stale_epochs"] = static_cast<double>(stale_epochs_);
  if (plateau_) plateau_->save(meta, "plateau_");
  for (const auto& [key, value] : options_.meta) meta["data_" + key] = value;
  save_checkpoint(path, model_, &optimizer_, meta);
}

template <class T>
void Trainer<T>::resume(const std::string& path, bool reset_optimizer) {
  // A whole number in [0, limit], as a meta value must be to count epochs or steps.
  auto count = [&](const Meta& meta, const char* key, double limit) -> std::uint64_t {
    const double v = meta.at(key);
    if (!(v >= 0 && v <= limit && v == std::floor(v)))
      fail("Trainer::resume: '", path, "': meta/", key, " is ", v, ", not a whole number in [0, ",
           limit, "]");
    return static_cast<std::uint64_t>(v);
  };
  const double most = 9007199254740992.0;  // 2^53: every count below it is exact in a double
  LoadOptions lo;
  lo.reset_optimizer = reset_optimizer;
  lo.check_meta = [&](const Meta& meta) {  // before the model is touched
    if (!meta.count("epochs_done")) fail("Trainer::resume: '", path, "' has no meta/epochs_done");
    const std::uint64_t epochs = count(meta, "epochs_done", most);
    if (epochs > options_.epochs)
      fail("Trainer::resume: '", path, "': meta/epochs_done is ", epochs, ", more than the ",
           options_.epochs, " epochs to train");
    if (meta.count("scheduler_step")) count(meta, "scheduler_step", most);
    if (meta.count("best_epoch")) count(meta, "best_epoch", static_cast<double>(epochs));
    if (meta.count("stale_epochs")) count(meta, "stale_epochs", static_cast<double>(epochs));
    if (meta.count("best_loss") && std::isnan(meta.at("best_loss")))
      fail("Trainer::resume: '", path, "': meta/best_loss is NaN");
    if (options_.check_meta) {
      Meta data;
      for (const auto& [key, value] : meta)
        if (key.rfind("data_", 0) == 0) data[key.substr(5)] = value;
      options_.check_meta(data);
    }
    for (const auto& [key, value] : options_.meta) {
      auto it = meta.find("data_" + key);
      if (it == meta.end())
        fail("Trainer::resume: '", path, "' has no meta/data_", key,
             " (it was saved for other data, or without it)");
      if (!(it->second == value))
        fail("Trainer::resume: '", path, "': meta/data_", key, " is ", it->second,
             ", this run's is ", value, " (the checkpoint was saved for other data)");
    }
    if (plateau_ && meta.count("plateau_factor")) plateau_->load(meta, "plateau_");
  };
  Meta plateau_before;  // put back if the checkpoint is refused after the plateau took its part
  if (plateau_) plateau_->save(plateau_before, "");
  Meta meta;
  try {
    meta = load_checkpoint(path, model_, &optimizer_, lo);
  } catch (...) {
    if (plateau_) plateau_->load(plateau_before, "");
    throw;
  }
  epochs_done_ = count(meta, "epochs_done", most);
  if (scheduler_ && meta.count("scheduler_step"))
    scheduler_->set_step(count(meta, "scheduler_step", most));
  // Early stopping and keep_best go on from where they were (checkpoints without these keys
  // start them afresh).
  best_loss_ =
      meta.count("best_loss") ? meta.at("best_loss") : std::numeric_limits<double>::infinity();
  best_epoch_ = meta.count("best_epoch") ? count(meta, "best_epoch", most) : 0;
  stale_epochs_ = meta.count("stale_epochs") ? count(meta, "stale_epochs", most) : 0;
  best_.reset();
  // Keep the metrics of the epochs already done, so the CSV stays whole: rows up to the epochs
  // done, each cell under the column its header names.
  history_.clear();
  std::ifstream in(options_.metrics_csv);
  std::string line;
  if (options_.metrics_csv.empty() || !in || !std::getline(in, line)) return;
  // The field of each column, by the header's names ("epoch" first; an unknown one is skipped).
  std::vector<double EpochMetrics::*> layout;
  std::istringstream header(line);
  std::string name;
  std::getline(header, name, ',');
  if (name != "epoch") return;
  while (std::getline(header, name, ',')) {
    double EpochMetrics::*field = nullptr;
    for (const auto& [column, f] : metrics_columns)
      if (name == column) field = f;
    layout.push_back(field);
  }
  while (std::getline(in, line)) {
    std::istringstream row(line);
    EpochMetrics m;
    std::string cell;
    if (!std::getline(row, cell, ',')) continue;
    const double epoch = std::strtod(cell.c_str(), nullptr);
    if (!(epoch >= 1 && epoch <= static_cast<double>(epochs_done_))) continue;
    m.epoch = static_cast<std::size_t>(epoch);
    std::size_t i = 0;
    for (; i < layout.size() && std::getline(row, cell, ','); ++i)
      if (layout[i]) m.*layout[i] = std::strtod(cell.c_str(), nullptr);
    if (i == layout.size()) history_.push_back(m);
  }
}

template class Trainer<float>;
template class Trainer<double>;
template std::vector<std::size_t> argmax_rows(const Array<float>&);
template std::vector<std::size_t> argmax_rows(const Array<double>&);

}  // namespace ad::nn
