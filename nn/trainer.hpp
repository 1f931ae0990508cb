// The training loop: epochs of mini-batch updates, evaluation, progress, metrics, checkpoints.
#pragma once

#include <functional>
#include <iosfwd>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "nn/checkpoint.hpp"
#include "nn/collective.hpp"
#include "nn/data.hpp"
#include "nn/module.hpp"
#include "nn/optim.hpp"
#include "nn/schedule.hpp"

namespace ad::nn {

/// Thrown when training cannot go on (a NaN or infinite loss or gradient); the message names the
/// epoch and the batch.
class TrainingError : public Error {
 public:
  /// An error with its message.
  using Error::Error;
};

/// What one epoch gave. Accuracies are NaN unless the trainer classifies; validation figures are
/// NaN without a validation set.
struct EpochMetrics {
  std::size_t epoch = 0;  ///< 1-based
  double train_loss = 0;  ///< mean over the epoch's samples
  double train_accuracy = std::numeric_limits<double>::quiet_NaN();  ///< over the epoch's samples
  double val_loss = std::numeric_limits<double>::quiet_NaN();        ///< on the validation set
  double val_accuracy = std::numeric_limits<double>::quiet_NaN();    ///< on the validation set
  double seconds = 0;             ///< training time of the epoch (without evaluation)
  double samples_per_second = 0;  ///< training throughput
  double lr = 0;  ///< learning rate of the first group the epoch trained at (at its first batch)
};

/// How a Trainer trains.
struct TrainerOptions {
  /// Total number of epochs; fit() runs the ones not done yet (see resume()).
  std::size_t epochs = 1;
  /// Outputs are logits (N, K) and targets class indices: accuracy is reported.
  bool classification = true;
  /// How the validation set is named in the log ("val", "test", ...).
  std::string validation_name = "val";
  /// A CSV of the metrics, rewritten atomically after every epoch ("" for none).
  std::string metrics_csv;
  /// A checkpoint saved atomically after every epoch ("" for none).
  std::string checkpoint;
  /// Progress: a bar updated in place on a terminal, else one line per epoch.
  enum class Progress {
    automatic,                       ///< a bar when the log is a terminal, else lines
    bar,                             ///< a bar updated in place
    lines,                           ///< one line per epoch
    none                             ///< nothing
  } progress = Progress::automatic;  ///< how progress is shown
  std::ostream* log = nullptr;       ///< default std::cout
  /// Batches whose gradients add up before one optimizer step (each batch's loss is divided by
  /// it, so the step sees their mean); the epoch's last, shorter group steps too.
  std::size_t accumulate = 1;
  /// Clip the global gradient norm to this value (0: no clipping).
  double clip_grad_norm = 0;
  /// Step the scheduler after every batch instead of every epoch.
  bool schedule_per_batch = false;
  /// Early stopping: fit() ends after this many epochs in a row without an improvement of the
  /// monitored loss (the validation loss, or the training loss without a validation set) by more
  /// than min_delta. 0: it never stops early.
  std::size_t patience = 0;
  /// What counts as an improvement of the monitored loss (for patience and keep_best), >= 0.
  double min_delta = 0;
  /// When fit() ends (early or not), the model gets back the weights, buffers and states of the
  /// epoch with the best monitored loss.
  bool keep_best = false;
  /// Where the best epoch's model is saved (atomically) whenever the monitored loss improves
  /// ("": nowhere). With keep_best, fit() loads it when the best epoch came before a resume.
  std::string best_checkpoint;
  /// Numbers saved with every checkpoint under meta/ (what the data was: a vocabulary, say), and
  /// checked on resume: a checkpoint whose values differ, or lack one, is refused with an error
  /// naming the key (check_meta may say more, before).
  Meta meta;
  /// Called on resume with the checkpoint's meta values before anything is loaded; it throws to
  /// refuse them (with a message that says what differs).
  std::function<void(const Meta&)> check_meta;
};

/// Trains a model. A run is reproducible: the same seeds give bit-identical weights on the same
/// machine and thread count, and a run resumed from a checkpoint continues exactly.
template <class T = float>
class Trainer {
 public:
  /// The loss of an output against its targets.
  using Loss = std::function<Variable<T>(const Variable<T>& output, const Variable<T>& target)>;

  /// Trains `model` with `optimizer` on `loss`.
  Trainer(Module<T>& model, Optimizer<T>& optimizer, Loss loss, TrainerOptions options = {});

  /// A learning-rate scheduler stepped every epoch (or batch).
  void set_scheduler(Scheduler<T>* scheduler) { scheduler_ = scheduler; }
  /// Called after every batch with (epoch, batch, loss) and after every epoch with its metrics.
  std::function<void(std::size_t, std::size_t, double)> on_batch_end;
  std::function<void(const EpochMetrics&)> on_epoch_end;  ///< (see on_batch_end)
  /// The seam between backward and the optimizer step. Each step runs: backward of every batch
  /// of the step (options.accumulate of them), then on_gradients (the gradients are complete:
  /// the place to average them across processes, as distributed/ does, or to inspect or change
  /// them), then the check that they are finite, clipping (options.clip_grad_norm), the
  /// optimizer step and the scheduler. A trainer that syncs or accumulates needs no copy of fit.
  std::function<void()> on_gradients;
  /// Called before every backward pass with whether it is the last of its optimizer step (with
  /// accumulation, the earlier ones must not be averaged across processes yet).
  std::function<void(bool)> before_backward;
  /// A ReduceLROnPlateau stepped after every epoch with the monitored loss (the validation loss,
  /// or the training loss without a validation set); its state goes into the checkpoint.
  void set_plateau(ReduceLROnPlateau<T>* plateau) { plateau_ = plateau; }
  /// Makes the trainer one process of a data-parallel run: every process trains on its shard of
  /// each global batch (LoaderOptions::shard) and runs forward and backward for every batch, even
  /// an empty shard; each loss is weighted by its share of the global batch, so that summing the
  /// gradients (on_gradients) gives the global batch's; the epoch's figures are summed over the
  /// processes; a NaN stop is agreed by all; only the root prints and writes the metrics and the
  /// checkpoint. (distributed/ sets it up.)
  void set_collective(Collective* collective) { collective_ = collective; }

  /// Trains until options.epochs epochs are done; returns the metrics of the epochs it ran.
  /// Before the first batch it checks that the training set has a batch, that a validation set
  /// given is not empty, and that the metrics CSV and checkpoint paths can be written. With
  /// classification, a label that is not a class index throws, naming the sample.
  /// After every epoch the checkpoint is saved, then the metrics written; a failure of one does
  /// not keep the other from being written.
  /// On a NaN or infinite loss or gradient it throws TrainingError before the optimizer step, so
  /// the model keeps the last good weights, and its buffers and states (BatchNorm's running
  /// statistics, dropout's stream) are put back as they were before the failed batch.
  std::vector<EpochMetrics> fit(const DataLoader<T>& train,
                                const DataLoader<T>* validation = nullptr);

  /// What evaluate() measured.
  struct Evaluation {
    /// Mean loss.
    double loss = 0;
    /// Accuracy (NaN unless classifying).
    double accuracy = std::numeric_limits<double>::quiet_NaN();
    std::vector<std::size_t> predictions;  ///< predicted classes, when asked (classification)
    std::vector<std::size_t> labels;       ///< true classes, when asked (classification)
  };
  /// Mean loss (and accuracy) over a dataset in evaluation mode, without recording; an empty
  /// dataset throws (its mean would be 0/0).
  Evaluation evaluate(const DataLoader<T>& data, bool keep_predictions = false);

  /// Epochs trained so far (with those of a resumed checkpoint).
  std::size_t epochs_done() const { return epochs_done_; }
  /// The epoch (1-based) with the best monitored loss so far, 0 before the first.
  std::size_t best_epoch() const { return best_epoch_; }
  /// Its monitored loss (+∞ before the first epoch).
  double best_loss() const { return best_loss_; }
  /// Whether the last fit() ended early (options.patience).
  bool stopped_early() const { return stopped_early_; }
  /// The metrics of every epoch done.
  const std::vector<EpochMetrics>& history() const { return history_; }
  /// Saves model, optimizer, epochs done and scheduler step.
  void save(const std::string& path) const;
  /// Loads what save() wrote; fit() then continues after the saved epoch. The meta values are
  /// checked (epochs done and scheduler step: whole numbers from 0, epochs done at most
  /// options.epochs). With reset_optimizer the optimizer starts afresh instead of loading its
  /// state (needed to switch optimizers; otherwise a mismatch is an error).
  void resume(const std::string& path, bool reset_optimizer = false);

 private:
  void check_before_training(const DataLoader<T>& train, const DataLoader<T>* validation) const;
  EpochMetrics train_epoch(const DataLoader<T>& train, std::size_t epoch);
  /// The seam and the step: on_gradients, the finite check (`stop` throws), clipping, the
  /// optimizer and a per-batch scheduler.
  void step(const std::function<void(const std::string&)>& stop, const std::string& bad_loss);
  /// Sums the figures over the processes of a data-parallel run (nothing alone).
  void combine(double& loss_sum, std::size_t& seen, std::size_t& correct) const;
  bool is_root() const { return !collective_ || collective_->is_root(); }
  void draw_progress(std::size_t epoch, std::size_t b, std::size_t batches, std::size_t seen,
                     double loss_sum, double elapsed) const;
  void log_epoch(const EpochMetrics& m, bool validation) const;
  void write_outputs() const;
  void write_metrics_csv() const;
  std::ostream& log() const;

  Module<T>& model_;
  Optimizer<T>& optimizer_;
  Loss loss_;
  TrainerOptions options_;
  /// After an epoch: the best loss and the stale count, the best copy, the plateau.
  void monitor(const EpochMetrics& m, bool validation);
  /// At the end of fit() with keep_best: the best epoch's model back.
  void restore_best();

  Scheduler<T>* scheduler_ = nullptr;
  ReduceLROnPlateau<T>* plateau_ = nullptr;
  std::size_t epochs_done_ = 0;
  double best_loss_ = std::numeric_limits<double>::infinity();
  std::size_t best_epoch_ = 0;
  std::size_t stale_epochs_ = 0;  ///< epochs since the best
  bool stopped_early_ = false;
  /// The best epoch's parameters, buffers and states (keep_best; empty until an epoch improves).
  struct Best {
    std::vector<Array<T>> parameters, buffers;
    std::vector<StateArray> states;
  };
  std::optional<Best> best_;
  std::vector<EpochMetrics> history_;
  TrainerOptions::Progress progress_ = TrainerOptions::Progress::lines;  ///< resolved by fit()
  Collective* collective_ = nullptr;
};

/// Index of the largest entry of each row of (N, K) scores.
template <class T>
std::vector<std::size_t> argmax_rows(const Array<T>& scores);

}  // namespace ad::nn
