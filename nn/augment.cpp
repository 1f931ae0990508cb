#include "nn/augment.hpp"

#include <algorithm>
#include <random>

namespace ad::nn::augment {

namespace {

/// Planes, height and width of a (..., H, W) sample; `op` names the error.
void image_sizes(const Shape& shape, const char* op, std::size_t& planes, std::size_t& h,
                 std::size_t& w) {
  if (shape.size() < 2)
    fail(op, ": a sample of shape ", shape_str(shape), " is not an image (..., H, W)");
  h = shape[shape.size() - 2];
  w = shape.back();
  planes = 1;
  for (std::size_t d = 0; d + 2 < shape.size(); ++d) planes *= shape[d];
}

}  // namespace

template <class T>
typename DataLoader<T>::Transform random_crop(std::size_t padding) {
  return [padding](T* x, const Shape& shape, Generator& rng) {
    std::size_t planes, h, w;
    image_sizes(shape, "random_crop", planes, h, w);
    const auto pad = static_cast<std::ptrdiff_t>(padding);
    std::uniform_int_distribution<std::ptrdiff_t> shift(-pad, pad);
    const std::ptrdiff_t dy = shift(rng), dx = shift(rng);
    if (dy == 0 && dx == 0) return;
    std::vector<T> plane(h * w);
    const auto H = static_cast<std::ptrdiff_t>(h), W = static_cast<std::ptrdiff_t>(w);
    for (std::size_t p = 0; p < planes; ++p) {
      T* img = x + p * h * w;
      std::copy(img, img + h * w, plane.begin());
      // Output (i, j) reads input (i + dy, j + dx), zero outside.
      for (std::ptrdiff_t i = 0; i < H; ++i)
        for (std::ptrdiff_t j = 0; j < W; ++j) {
          const std::ptrdiff_t si = i + dy, sj = j + dx;
          img[i * W + j] = si >= 0 && si < H && sj >= 0 && sj < W ? plane[si * W + sj] : T(0);
        }
    }
  };
}

template <class T>
typename DataLoader<T>::Transform horizontal_flip(double p) {
  if (!(p >= 0 && p <= 1)) fail("horizontal_flip: probability ", p, " is not in [0, 1]");
  return [p](T* x, const Shape& shape, Generator& rng) {
    std::size_t planes, h, w;
    image_sizes(shape, "horizontal_flip", planes, h, w);
    if (!std::bernoulli_distribution(p)(rng)) return;
    for (std::size_t r = 0; r < planes * h; ++r) std::reverse(x + r * w, x + (r + 1) * w);
  };
}

template <class T>
typename DataLoader<T>::Transform compose(
    std::vector<typename DataLoader<T>::Transform> transforms) {
  for (const auto& t : transforms)
    if (!t) fail("compose: a transform is null");
  return [transforms = std::move(transforms)](T* x, const Shape& shape, Generator& rng) {
    for (const auto& t : transforms) t(x, shape, rng);
  };
}

template typename DataLoader<float>::Transform random_crop<float>(std::size_t);
template typename DataLoader<double>::Transform random_crop<double>(std::size_t);
template typename DataLoader<float>::Transform horizontal_flip<float>(double);
template typename DataLoader<double>::Transform horizontal_flip<double>(double);
template typename DataLoader<float>::Transform compose<float>(
    std::vector<typename DataLoader<float>::Transform>);
template typename DataLoader<double>::Transform compose<double>(
    std::vector<typename DataLoader<double>::Transform>);

}  // namespace ad::nn::augment
