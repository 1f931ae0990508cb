// Losses. Prediction and target must have the same shape: none of them broadcasts silently (a
// (N, 1) prediction against a (N) target is an error, not an (N, N) loss).
#pragma once

#include <vector>

#include "autodiff/index.hpp"
#include "autodiff/variable.hpp"

namespace ad::nn {

/// How per-element (or per-sample) losses are combined.
enum class Reduction {
  none,      // keep them
  sum,       // Σ
  mean,      // Σ / count
  half_sum,  // ½ Σ: with mse_loss, the classic E = ½ Σ (y − ŷ)²
};

/// Mean squared error (y − ŷ)², reduced. The classic E = ½ Σ (y − ŷ)² is
/// mse_loss(pred, target, Reduction::half_sum).
template <class T>
Variable<T> mse_loss(const Variable<T>& prediction, const Variable<T>& target,
                     Reduction reduction = Reduction::mean);

/// The classic cross-entropy on probabilities, E = −Σ y·log(ŷ + δ) with δ = 1e-7, for targets of
/// the prediction's shape (one-hot or soft). sum gives E exactly; mean divides by the number of
/// samples (rows); none gives one value per sample.
template <class T>
Variable<T> probability_cross_entropy(const Variable<T>& probabilities, const Variable<T>& target,
                                      Reduction reduction = Reduction::mean);
/// The same for class-index targets: E = −Σ_i log(ŷ_i,label_i + δ).
template <class T>
Variable<T> probability_cross_entropy(const Variable<T>& probabilities, const Index& labels,
                                      Reduction reduction = Reduction::mean);

/// Options of cross_entropy and nll_loss.
template <class T>
struct CrossEntropyOptions {
  /// How per-sample losses combine.
  Reduction reduction = Reduction::mean;
  /// ε: the target puts 1 − ε + ε/K on the label and ε/K on every class.
  double label_smoothing = 0.0;
  /// One weight per class (empty: all 1). With mean, the result is Σ w_label·loss / Σ w_label.
  std::vector<double> class_weights;
};

/// Softmax cross-entropy on logits (N, K) with class-index labels, fused and stable (log-sum-exp;
/// gradient softmax − onehot).
template <class T>
Variable<T> cross_entropy(const Variable<T>& logits, const Index& labels,
                          const CrossEntropyOptions<T>& options = {});
/// The same with labels held as T values (integers in [0, K)), as a DataLoader gives them.
template <class T>
Variable<T> cross_entropy(const Variable<T>& logits, const Variable<T>& labels,
                          const CrossEntropyOptions<T>& options = {});

/// Negative log-likelihood of log-probabilities (N, K): −log_probs[i, label_i], reduced
/// (label smoothing is not used).
template <class T>
Variable<T> nll_loss(const Variable<T>& log_probs, const Index& labels,
                     const CrossEntropyOptions<T>& options = {});

/// Binary cross-entropy on logits z with targets y in [0, 1]: softplus(z) − z·y, stable for any z.
template <class T>
Variable<T> binary_cross_entropy_with_logits(const Variable<T>& logits, const Variable<T>& target,
                                             Reduction reduction = Reduction::mean);

}  // namespace ad::nn
