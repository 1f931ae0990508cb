// Reading data files: the IDX format of MNIST and Fashion-MNIST (gzip-compressed or raw), and
// CSV tables of numbers with a header row.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "nn/data.hpp"

namespace ad::nn::datasets {

/// Where Debian's dataset-fashion-mnist package puts the four .gz IDX files.
inline const char* const fashion_mnist_dir = "/usr/share/datasets/fashion-mnist";

/// An IDX file of unsigned bytes (images, magic 0x00000803, or labels, 0x00000801), read through
/// a gzip decompressor when it starts with the gzip magic. Throws naming the file when it is
/// missing, is not IDX, holds another element type, or its size does not match its dimensions.
Array<std::uint8_t> read_idx(const std::string& path);

/// One split of MNIST or Fashion-MNIST: images (N, 28, 28) as bytes, labels (N).
struct ImageSplit {
  /// The images (N, rows, columns).
  Array<std::uint8_t> images;
  /// Their labels (N).
  Array<float> labels;
};

/// Reads <dir>/{train,t10k}-{images-idx3,labels-idx1}-ubyte, with or without .gz. Checks that the
/// images are 28x28, the labels 1-D, and that their counts agree; a missing file in the default
/// folder comes with the apt-get hint.
ImageSplit load_mnist(const std::string& dir, bool train);

/// A Dataset of flattened images (N, 784) kept as bytes and scaled by 1/255 per batch, or
/// (N, 1, 28, 28) for convolutions; at most `limit` images (0: all).
std::shared_ptr<Dataset<std::uint8_t>> mnist_dataset(const ImageSplit& split, bool as_images,
                                                     std::size_t limit = 0);

/// A CSV table of numbers: the header's column names and the rows.
struct CsvTable {
  /// The header's column names.
  std::vector<std::string> columns;
  Array<double> values;  ///< (rows, columns)
};

/// Reads a CSV file with a header row; every other row must have as many fields, each a number.
/// Errors name the file and the line (and the column for a non-number).
CsvTable read_csv(const std::string& path);

/// A Dataset whose targets (N, 1) are the column `target` and whose inputs are the other columns.
std::shared_ptr<Dataset<float>> csv_dataset(const CsvTable& table, const std::string& target);

/// Where Debian's python3-sklearn package keeps scikit-learn's small data sets.
inline const char* const sklearn_data_dir = "/usr/lib/python3/dist-packages/sklearn/datasets/data";

/// The diabetes data of Efron, Hastie, Johnstone and Tibshirani, "Least Angle Regression" (2004),
/// as scikit-learn ships it (<dir>/diabetes_data_raw.csv.gz and diabetes_target.csv.gz, the
/// original, unscaled values): 442 patients, columns age, sex, bmi, bp, s1 ... s6 and "target"
/// (disease progression one year later). Each line of both files is checked (10 numbers, then 1,
/// and as many lines in both); errors name the file and the line; a missing file in the default
/// folder comes with the apt-get hint.
CsvTable load_diabetes(const std::string& dir = sklearn_data_dir);

}  // namespace ad::nn::datasets
