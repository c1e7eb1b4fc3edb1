// A dependency-free SVG line plot for the weak-scaling figures (`strata compare --plot`): one line
// per method over a log2 x axis (GPUs), a linear y axis from zero, ticks, a legend, and a cross on
// the x axis where a method ran out of memory, as in the Alpa paper's Figure 7.
#pragma once

#include <string>
#include <vector>

#include "strata/core/status.h"

namespace strata::baselines {

struct PlotPoint {
  double x = 0;           // > 0 (the x axis is log2)
  double y = 0;           // >= 0 when feasible
  bool feasible = true;   // false: drawn as a cross on the x axis ("OOM")
};

struct PlotSeries {
  std::string name;
  std::vector<PlotPoint> points;  // any order; lines join feasible points in x order
};

struct LinePlot {
  std::string title;
  std::string x_label = "#GPUs";
  std::string y_label;
  std::vector<PlotSeries> series;
};

// The SVG text. Errors (naming the field): no series, a non-positive or non-finite x, a negative
// or non-finite feasible y.
Expected<std::string> render_svg(const LinePlot& plot);

// Writes render_svg to `path`, which must end in ".svg": PNG would need a rasteriser, which this
// build does not have, so "out.png" is an Error naming the path and saying so.
Status write_plot(const LinePlot& plot, const std::string& path);
// The path check of write_plot alone, to refuse a .png before a long run.
Status check_plot_path(const std::string& path);

}  // namespace strata::baselines
