// Data augmentation for images: per-sample loader transforms (DataLoader::set_transform), each
// drawing from the generator the loader seeds per sample and epoch.
#pragma once

#include <cstddef>
#include <vector>

#include "nn/data.hpp"

namespace ad::nn::augment {

/// A random crop of the image padded by `padding` zeros on every side, back at its size (as
/// torchvision's RandomCrop(size, padding)): the image moves by dy, dx drawn uniformly from
/// [−padding, padding], the uncovered border zero. Samples are (..., H, W): every leading plane
/// (channel) moves alike. A sample of fewer than 2 axes throws.
template <class T>
typename DataLoader<T>::Transform random_crop(std::size_t padding);

/// Mirrors (..., H, W) left to right with probability p.
template <class T>
typename DataLoader<T>::Transform horizontal_flip(double p = 0.5);

/// The transforms one after the other.
template <class T>
typename DataLoader<T>::Transform compose(
    std::vector<typename DataLoader<T>::Transform> transforms);

}  // namespace ad::nn::augment
