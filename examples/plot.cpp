#include "plot.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>

#include <unistd.h>

#include <gnuplot-iostream.h>

#include "nn/atomic_write.hpp"

namespace examples {

namespace {

std::string terminal_for(const std::string& path, int width, int height) {
  const bool svg = path.size() > 4 && path.compare(path.size() - 4, 4, ".svg") == 0;
  const std::string size = " size " + std::to_string(width) + "," + std::to_string(height);
  return svg ? "set terminal svg" + size + " dynamic font 'sans,11'\n"
             : "set terminal pngcairo" + size + " font 'sans,10'\n";
}

/// Runs a gnuplot script that writes `tmp`, then renames it to `path`.
template <class Script>
bool draw(const std::string& path, int width, int height, Script script) {
  if (!gnuplot_available()) {
    std::cerr << "gnuplot is not installed (apt-get install gnuplot-nox): no plot written to '"
              << path << "'\n";
    return false;
  }
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  {
    Gnuplot gp("gnuplot");
    gp << terminal_for(path, width, height) << "set output '" << tmp << "'\n";
    script(gp);
    gp << "unset output\n";
  }  // closing the pipe waits for gnuplot to finish
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw std::runtime_error("gnuplot did not write '" + tmp + "'");
  }
  return true;
}

}  // namespace

bool gnuplot_available() {
  return std::system("command -v gnuplot >/dev/null 2>&1") == 0;
}

void check_plot_path(const std::string& path, const std::string& option) {
  if (path.empty()) return;
  auto ends_with = [&](const char* ext) {
    const std::size_t n = std::strlen(ext);
    return path.size() > n && path.compare(path.size() - n, n, ext) == 0;
  };
  if (!ends_with(".png") && !ends_with(".svg"))
    throw ad::Error(option + ": '" + path + "' must end in .png or .svg (the formats drawn)");
  ad::nn::check_writable(path, option);
}

bool plot_panels(const std::string& path, const std::string& title,
                 const std::vector<Panel>& panels) {
  return draw(path, 500 * static_cast<int>(panels.size()), 420, [&](Gnuplot& gp) {
    gp << "set multiplot layout 1," << panels.size() << " title '" << title << "'\n";
    gp << "set grid\nset key top right\n";
    for (const auto& panel : panels) {
      gp << "set xlabel '" << panel.xlabel << "'\nset ylabel '" << panel.ylabel << "'\n"
         << (panel.log_y ? "set logscale y\n" : "unset logscale y\n") << "plot ";
      for (std::size_t i = 0; i < panel.series.size(); ++i)
        gp << (i ? ", " : "") << "'-' with " << panel.series[i].style << " title '"
           << panel.series[i].title << "'";
      gp << "\n";
      for (const auto& s : panel.series) gp.send1d(s.points);
    }
    gp << "unset multiplot\n";
  });
}

bool plot_training(const std::string& path, const std::string& title,
                   const std::vector<ad::nn::EpochMetrics>& metrics) {
  Series train_loss{"train loss", {}}, val_loss{"test loss", {}};
  Series train_acc{"train accuracy", {}}, val_acc{"test accuracy", {}};
  for (const auto& m : metrics) {
    const double e = static_cast<double>(m.epoch);
    train_loss.points.emplace_back(e, m.train_loss);
    if (!std::isnan(m.val_loss)) val_loss.points.emplace_back(e, m.val_loss);
    if (!std::isnan(m.train_accuracy)) train_acc.points.emplace_back(e, m.train_accuracy);
    if (!std::isnan(m.val_accuracy)) val_acc.points.emplace_back(e, m.val_accuracy);
  }
  std::vector<Panel> panels{{"epoch", "loss", {train_loss}}};
  if (!val_loss.points.empty()) panels[0].series.push_back(val_loss);
  if (!train_acc.points.empty()) panels.push_back({"epoch", "accuracy", {train_acc}});
  if (!val_acc.points.empty()) panels.back().series.push_back(val_acc);
  return plot_panels(path, title, panels);
}

bool plot_contours(const std::string& path, const std::string& title, const std::vector<double>& xs,
                   const std::vector<double>& ys, const std::vector<std::vector<double>>& values,
                   const std::vector<Series>& trajectories) {
  // Contour lines go into a table first, then are drawn in 2-D under the trajectories.
  const std::string table = path + ".contours-" + std::to_string(::getpid());
  const bool drawn = draw(path, 640, 720, [&](Gnuplot& gp) {
    gp << "set contour base\nset cntrparam levels 15\nunset surface\nset view map\n";
    gp << "set table '" << table << "'\nsplot '-' with lines notitle\n";
    std::vector<std::vector<std::tuple<double, double, double>>> grid(xs.size());
    for (std::size_t i = 0; i < xs.size(); ++i)
      for (std::size_t j = 0; j < ys.size(); ++j) grid[i].emplace_back(xs[i], ys[j], values[i][j]);
    gp.send2d(grid);
    gp << "unset table\n";
    gp << "set title '" << title << "'\nset xlabel 'x'\nset ylabel 'y'\nset size ratio -1\n";
    gp << "set xrange [" << xs.front() << ":" << xs.back() << "]\nset yrange [" << ys.front() << ":"
       << ys.back() << "]\nset key outside below\n";
    gp << "plot '" << table << "' with lines lc rgb '#bbbbbb' notitle";
    for (const auto& t : trajectories)
      gp << ", '-' with " << t.style << " title '" << t.title << "'";
    gp << "\n";
    for (const auto& t : trajectories) gp.send1d(t.points);
  });
  std::remove(table.c_str());
  return drawn;
}

}  // namespace examples
