#include "nn/loss.hpp"

#include <cmath>

#include "autodiff/ops.hpp"

namespace ad::nn {

namespace {

template <class T>
void check_same_shape(const Variable<T>& prediction, const Variable<T>& target, const char* op) {
  if (!same_shape(prediction.shape(), target.shape()))
    fail(op, ": prediction ", shape_str(prediction.shape()), " and target ",
         shape_str(target.shape()),
         " differ in shape; reshape one of them (losses never broadcast silently)");
}

template <class T>
Variable<T> reduce(const Variable<T>& losses, Reduction reduction) {
  switch (reduction) {
    case Reduction::none:
      return losses;
    case Reduction::sum:
      return sum(losses);
    case Reduction::mean:
      return mean(losses);
    case Reduction::half_sum:
      return sum(losses) * 0.5;
  }
  fail("loss: unknown reduction");
}

/// Reduces per-sample losses with optional class weights.
template <class T>
Variable<T> reduce_weighted(const Variable<T>& losses, const Index& labels,
                            const CrossEntropyOptions<T>& o, std::size_t classes, const char* op) {
  if (o.class_weights.empty()) return reduce(losses, o.reduction);
  if (o.class_weights.size() != classes)
    fail(op, ": ", o.class_weights.size(), " class weights for ", classes, " classes");
  Array<T> w = Array<T>::from_shape({labels.size()});
  double total = 0;
  for (std::size_t i = 0; i < labels.size(); ++i) {
    w(i) = static_cast<T>(o.class_weights[labels[i]]);
    total += o.class_weights[labels[i]];
  }
  Variable<T> weighted = losses * Variable<T>(std::move(w));
  if (o.reduction == Reduction::mean) return sum(weighted) / total;
  return reduce(weighted, o.reduction);
}

/// Logits or probabilities (N, K) with N labels, each a class in [0, K).
template <class T>
void check_logits(const Variable<T>& logits, const Index& labels, const char* op) {
  if (logits.dim() != 2) fail(op, ": input must be (N, K), got ", shape_str(logits.shape()));
  if (labels.shape().size() != 1 || logits.shape()[0] != labels.size())
    fail(op, ": labels of shape ", shape_str(labels.shape()), " for an input of shape ",
         shape_str(logits.shape()), " (one label per row)");
  labels.check_below(logits.shape()[1], op, std::to_string(logits.shape()[1]) + " classes", true);
}

/// The labels as an (N, 1) column, for gather.
inline Index column(const Index& labels) {
  Array<std::size_t> v = labels.values();
  v.reshape({labels.size(), 1});
  return Index(std::move(v));
}

}  // namespace

template <class T>
Variable<T> mse_loss(const Variable<T>& prediction, const Variable<T>& target,
                     Reduction reduction) {
  check_same_shape(prediction, target, "mse_loss");
  if (reduction == Reduction::none) return square(prediction - target);
  // One fused op, scaled for the reductions other than the sum.
  const double scale = reduction == Reduction::sum        ? 1.0
                       : reduction == Reduction::half_sum ? 0.5
                                                          : 1.0 / prediction.size();
  return squared_distance(prediction, target, scale);
}

template <class T>
Variable<T> probability_cross_entropy(const Variable<T>& probabilities, const Variable<T>& target,
                                      Reduction reduction) {
  check_same_shape(probabilities, target, "probability_cross_entropy");
  if (probabilities.dim() == 0)
    fail("probability_cross_entropy: needs at least one axis, got a 0-d input");
  // −Σ_classes y·log(ŷ + δ) per sample (row), then reduced over samples.
  Variable<T> per_element = -(target * log(probabilities + 1e-7));
  Variable<T> per_sample = probabilities.dim() == 1 ? sum(per_element) : sum(per_element, {-1});
  return reduce(per_sample, reduction);
}

template <class T>
Variable<T> probability_cross_entropy(const Variable<T>& probabilities, const Index& labels,
                                      Reduction reduction) {
  check_logits(probabilities, labels, "probability_cross_entropy");
  Variable<T> picked = reshape(gather(probabilities, 1, column(labels)), Shape{labels.size()});
  return reduce(-log(picked + 1e-7), reduction);
}

template <class T>
Variable<T> cross_entropy(const Variable<T>& logits, const Index& labels,
                          const CrossEntropyOptions<T>& o) {
  check_logits(logits, labels, "cross_entropy");
  Variable<T> losses = softmax_cross_entropy(logits, labels, o.label_smoothing);
  return reduce_weighted(losses, labels, o, logits.shape()[1], "cross_entropy");
}

template <class T>
Variable<T> cross_entropy(const Variable<T>& logits, const Variable<T>& labels,
                          const CrossEntropyOptions<T>& o) {
  if (labels.dim() > 1 && !(labels.dim() == 2 && labels.shape()[1] == 1))
    fail("cross_entropy: labels must be (N) or (N, 1), got ", shape_str(labels.shape()));
  Array<T> flat = labels.value();
  flat.reshape({labels.size()});
  return cross_entropy(logits, Index::from_values(flat, "cross_entropy: labels"), o);
}

template <class T>
Variable<T> nll_loss(const Variable<T>& log_probs, const Index& labels,
                     const CrossEntropyOptions<T>& o) {
  check_logits(log_probs, labels, "nll_loss");
  Variable<T> losses = -reshape(gather(log_probs, 1, column(labels)), Shape{labels.size()});
  return reduce_weighted(losses, labels, o, log_probs.shape()[1], "nll_loss");
}

template <class T>
Variable<T> binary_cross_entropy_with_logits(const Variable<T>& logits, const Variable<T>& target,
                                             Reduction reduction) {
  check_same_shape(logits, target, "binary_cross_entropy_with_logits");
  // −y·log σ(z) − (1 − y)·log(1 − σ(z)) = softplus(z) − z·y
  return reduce(softplus(logits) - logits * target, reduction);
}

template <class T>
std::vector<const void*> losses() {
  using V = Variable<T>;
  using Options = CrossEntropyOptions<T>;
  return detail::addresses(
      &mse_loss<T>,
      static_cast<V (*)(const V&, const V&, Reduction)>(&probability_cross_entropy<T>),
      static_cast<V (*)(const V&, const Index&, Reduction)>(&probability_cross_entropy<T>),
      static_cast<V (*)(const V&, const Index&, const Options&)>(&cross_entropy<T>),
      static_cast<V (*)(const V&, const V&, const Options&)>(&cross_entropy<T>), &nll_loss<T>,
      &binary_cross_entropy_with_logits<T>);
}
template std::vector<const void*> losses<float>();
template std::vector<const void*> losses<double>();

}  // namespace ad::nn
