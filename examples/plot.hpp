// Plots for the examples, drawn by gnuplot (Debian's gnuplot-nox) through gnuplot-iostream.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "nn/trainer.hpp"

namespace examples {

/// True when the gnuplot program can be run.
bool gnuplot_available();

/// Throws, naming the option, unless `path` ends in .png or .svg (the formats drawn) and can be
/// written (its folder exists and takes a new file); an empty path (no plot) passes. The
/// programs check their --plot so when the options are parsed, before any work.
void check_plot_path(const std::string& path, const std::string& option = "--plot");

/// One curve: a title, its (x, y) points and a gnuplot style ("linespoints", "lines", "points").
struct Series {
  std::string title;
  std::vector<std::pair<double, double>> points;
  std::string style = "linespoints";
};

/// One panel of a figure.
struct Panel {
  std::string xlabel, ylabel;
  std::vector<Series> series;
  bool log_y = false;
};

/// Side-by-side panels, written to `path` (.svg with the svg terminal, anything else as PNG with
/// pngcairo), atomically. Returns false, after saying why on stderr, when gnuplot is missing;
/// throws when gnuplot fails.
bool plot_panels(const std::string& path, const std::string& title,
                 const std::vector<Panel>& panels);

/// Loss and accuracy per epoch of a training run.
bool plot_training(const std::string& path, const std::string& title,
                   const std::vector<ad::nn::EpochMetrics>& metrics);

/// Trajectories over the contours of a function of two variables sampled on a grid
/// (values[i][j] at (xs[i], ys[j])).
bool plot_contours(const std::string& path, const std::string& title, const std::vector<double>& xs,
                   const std::vector<double>& ys, const std::vector<std::vector<double>>& values,
                   const std::vector<Series>& trajectories);

}  // namespace examples
