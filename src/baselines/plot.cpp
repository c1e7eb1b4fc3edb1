// SVG line plots written by hand: fixed canvas, plot area on the left, legend on the right, the x
// axis in log2 with a tick at every power of two, the y axis with "nice" 1/2/2.5/5 × 10^k steps.
#include "strata/baselines/plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "strata/core/units.h"

namespace strata::baselines {
namespace {

constexpr double kWidth = 760, kHeight = 440;
constexpr double kLeft = 72, kRight = 560, kTop = 44, kBottom = 384;  // the plot area
constexpr const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                   "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

std::string escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string number(double x) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.1f", x);
  return buffer;
}

std::string tick_label(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%g", value);
  return buffer;
}

std::string text(double x, double y, const std::string& anchor, const std::string& content,
                 const std::string& extra = "") {
  return "<text x=\"" + number(x) + "\" y=\"" + number(y) + "\" text-anchor=\"" + anchor + "\"" + extra + ">" +
         escape(content) + "</text>\n";
}

std::string line(double x1, double y1, double x2, double y2, const std::string& style) {
  return "<line x1=\"" + number(x1) + "\" y1=\"" + number(y1) + "\" x2=\"" + number(x2) + "\" y2=\"" + number(y2) +
         "\" " + style + "/>\n";
}

// The smallest step of the form {1, 2, 2.5, 5} × 10^k giving at most five intervals up to `top`.
double nice_step(double top) {
  const double raw = top / 5;
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0}) {
    if (m * magnitude >= raw * (1 - 1e-12)) return m * magnitude;
  }
  return 10 * magnitude;
}

Status check(const LinePlot& plot) {
  if (plot.series.empty()) return make_error("", "plot.series", "nothing to plot");
  for (size_t i = 0; i < plot.series.size(); ++i) {
    for (size_t j = 0; j < plot.series[i].points.size(); ++j) {
      const PlotPoint& p = plot.series[i].points[j];
      const std::string field = "plot.series[" + std::to_string(i) + "].points[" + std::to_string(j) + "]";
      if (!std::isfinite(p.x) || p.x <= 0) return make_error("", field + ".x", "must be positive, got " + tick_label(p.x));
      if (p.feasible && (!std::isfinite(p.y) || p.y < 0)) {
        return make_error("", field + ".y", "must be a non-negative number, got " + tick_label(p.y));
      }
    }
  }
  return Status::ok();
}

}  // namespace

Expected<std::string> render_svg(const LinePlot& plot) {
  STRATA_RETURN_IF_ERROR(check(plot));
  double min_x = INFINITY, max_x = 0, max_y = 0;
  for (const PlotSeries& s : plot.series) {
    for (const PlotPoint& p : s.points) {
      min_x = std::min(min_x, p.x);
      max_x = std::max(max_x, p.x);
      if (p.feasible) max_y = std::max(max_y, p.y);
    }
  }
  if (max_x == 0) min_x = max_x = 1;  // series without points: an empty frame from 1 to 2
  double lo = std::floor(std::log2(min_x)), hi = std::ceil(std::log2(max_x));
  if (hi <= lo) hi = lo + 1;
  const double step = nice_step(max_y > 0 ? max_y : 1);
  const double top = step * std::ceil((max_y > 0 ? max_y : 1) / step - 1e-9);
  auto px = [&](double x) { return kLeft + (std::log2(x) - lo) / (hi - lo) * (kRight - kLeft); };
  auto py = [&](double y) { return kBottom - y / top * (kBottom - kTop); };

  std::string svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + number(kWidth) + "\" height=\"" +
                    number(kHeight) + "\" viewBox=\"0 0 " + number(kWidth) + " " + number(kHeight) +
                    "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  svg += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  svg += text((kLeft + kRight) / 2, 24, "middle", plot.title, " font-size=\"15\" font-weight=\"bold\"");
  // Grid, ticks and labels.
  for (double e = lo; e <= hi + 1e-9; e += 1) {
    const double x = kLeft + (e - lo) / (hi - lo) * (kRight - kLeft);
    svg += line(x, kTop, x, kBottom, "stroke=\"#e0e0e0\"");
    svg += line(x, kBottom, x, kBottom + 5, "stroke=\"black\"");
    svg += text(x, kBottom + 19, "middle", tick_label(std::exp2(e)));
  }
  for (double y = 0; y <= top * (1 + 1e-9); y += step) {
    svg += line(kLeft, py(y), kRight, py(y), "stroke=\"#e0e0e0\"");
    svg += line(kLeft - 5, py(y), kLeft, py(y), "stroke=\"black\"");
    svg += text(kLeft - 8, py(y) + 4, "end", tick_label(y));
  }
  svg += line(kLeft, kBottom, kRight, kBottom, "stroke=\"black\"");
  svg += line(kLeft, kTop, kLeft, kBottom, "stroke=\"black\"");
  svg += text((kLeft + kRight) / 2, kBottom + 40, "middle", plot.x_label + " (log2 scale)");
  svg += text(18, (kTop + kBottom) / 2, "middle", plot.y_label,
              " transform=\"rotate(-90 18 " + number((kTop + kBottom) / 2) + ")\"");
  // One line per series, markers on feasible points, crosses on the axis where it ran out of memory.
  bool any_oom = false;
  for (size_t i = 0; i < plot.series.size(); ++i) {
    const std::string color = kColors[i % std::size(kColors)];
    std::vector<PlotPoint> points = plot.series[i].points;
    std::stable_sort(points.begin(), points.end(), [](const PlotPoint& a, const PlotPoint& b) { return a.x < b.x; });
    std::string path;
    for (const PlotPoint& p : points) {
      if (!p.feasible) continue;
      path += (path.empty() ? "M" : " L") + number(px(p.x)) + " " + number(py(p.y));
    }
    svg += "<g class=\"series\" data-name=\"" + escape(plot.series[i].name) + "\">\n";
    if (!path.empty()) svg += "<path d=\"" + path + "\" fill=\"none\" stroke=\"" + color + "\" stroke-width=\"2\"/>\n";
    for (const PlotPoint& p : points) {
      if (p.feasible) {
        svg += "<circle cx=\"" + number(px(p.x)) + "\" cy=\"" + number(py(p.y)) + "\" r=\"3.5\" fill=\"" + color +
               "\"/>\n";
      } else {
        any_oom = true;
        const double x = px(p.x), y = kBottom - 6;
        svg += "<path class=\"oom\" d=\"M" + number(x - 5) + " " + number(y - 5) + " L" + number(x + 5) + " " +
               number(y + 5) + " M" + number(x - 5) + " " + number(y + 5) + " L" + number(x + 5) + " " +
               number(y - 5) + "\" stroke=\"" + color + "\" stroke-width=\"2.5\"/>\n";
      }
    }
    svg += "</g>\n";
    // Legend entry.
    const double ly = kTop + 8 + 20 * double(i);
    svg += line(kRight + 18, ly, kRight + 44, ly, "stroke=\"" + color + "\" stroke-width=\"2\"");
    svg += text(kRight + 52, ly + 4, "start", plot.series[i].name);
  }
  if (any_oom) {
    svg += text(kRight + 18, kTop + 12 + 20 * double(plot.series.size()), "start", "\u00d7 on the axis: out of memory");
  }
  svg += "</svg>\n";
  return svg;
}

Status check_plot_path(const std::string& path) {
  const std::string suffix = ".svg";
  const bool is_svg = path.size() > suffix.size() && path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0;
  if (!is_svg) {
    return make_error(path, "plot", "only .svg plots can be written (PNG needs a rasteriser this build does not have)");
  }
  return Status::ok();
}

Status write_plot(const LinePlot& plot, const std::string& path) {
  STRATA_RETURN_IF_ERROR(check_plot_path(path));
  STRATA_ASSIGN_OR_RETURN(std::string svg, render_svg(plot));
  return write_file_atomically(path, svg);
}

}  // namespace strata::baselines
