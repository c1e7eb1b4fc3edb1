// The SVG plot: geometry of markers (log2 x, linear y from zero), ticks, legend, OOM crosses,
// escaping, input errors, and the .svg-only writer.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <regex>

#include <unistd.h>

#include "strata/baselines/plot.h"
#include "strata/core/units.h"

namespace strata::baselines {
namespace {

struct Circle {
  double x, y;
};

std::vector<Circle> circles(const std::string& svg) {
  std::vector<Circle> out;
  const std::regex re("<circle cx=\"([0-9.]+)\" cy=\"([0-9.]+)\"");
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), re); it != std::sregex_iterator(); ++it) {
    out.push_back({std::stod((*it)[1]), std::stod((*it)[2])});
  }
  return out;
}

int count(const std::string& text, const std::string& needle) {
  int n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

LinePlot weak_scaling() {
  LinePlot plot;
  plot.title = "GPT weak scaling";
  plot.y_label = "TFLOP/s per GPU";
  plot.series.push_back({"Strata", {{1, 10}, {4, 9}, {64, 8}, {16, 8.5}}});
  plot.series.push_back({"Data <parallel> & co", {{1, 10}, {4, 7}, {16, 0, false}, {64, 0, false}}});
  return plot;
}

TEST(Plot, MarkersSitOnLog2XAndLinearY) {
  auto svg = render_svg(weak_scaling());
  ASSERT_TRUE(svg.is_ok()) << svg.error().message();
  const std::vector<Circle> c = circles(*svg);
  ASSERT_EQ(c.size(), 6u);  // 4 + 2 feasible points
  // Series 0 sorted by x: 1, 4, 16, 64 -> equal log2 spacing of 2 between 1 and 4, 4 and 16, 16 and 64.
  EXPECT_NEAR(c[1].x - c[0].x, c[2].x - c[1].x, 0.11);
  EXPECT_NEAR(c[2].x - c[1].x, c[3].x - c[2].x, 0.11);
  EXPECT_LT(c[0].x, c[3].x);
  // y: 10 is the highest point (smallest cy); the y axis starts at zero, so 8 sits at 4/5 of 10's height.
  const double base = 384;  // the plot area's bottom
  EXPECT_LT(c[0].y, c[1].y);
  EXPECT_NEAR((base - c[3].y) / (base - c[0].y), 0.8, 0.01);  // 64 GPUs: y = 8
  EXPECT_NEAR((base - c[2].y) / (base - c[0].y), 0.85, 0.01);  // 16 GPUs: y = 8.5
  // The second series' feasible points share x with the first's.
  EXPECT_NEAR(c[4].x, c[0].x, 1e-9);
  EXPECT_NEAR(c[5].x, c[1].x, 1e-9);
}

TEST(Plot, TicksLegendOomAndEscaping) {
  const std::string svg = *render_svg(weak_scaling());
  for (const char* tick : {">1<", ">2<", ">4<", ">8<", ">16<", ">32<", ">64<"}) EXPECT_NE(svg.find(tick), std::string::npos) << tick;
  EXPECT_EQ(svg.find(">128<"), std::string::npos);
  // y ticks: max 10 -> step 2 -> 0, 2, ..., 10.
  for (const char* tick : {">0<", ">6<", ">10<"}) EXPECT_NE(svg.find(tick), std::string::npos) << tick;
  EXPECT_EQ(svg.find(">12<"), std::string::npos);
  EXPECT_EQ(count(svg, "class=\"oom\""), 2);
  EXPECT_NE(svg.find("out of memory"), std::string::npos);
  EXPECT_NE(svg.find(">Data &lt;parallel&gt; &amp; co<"), std::string::npos);
  EXPECT_NE(svg.find(">GPT weak scaling<"), std::string::npos);
  EXPECT_NE(svg.find(">TFLOP/s per GPU<"), std::string::npos);
  EXPECT_EQ(svg.rfind("</svg>\n"), svg.size() - 7);
  // A plot with no OOM point has no OOM note.
  LinePlot all_fit = weak_scaling();
  all_fit.series.pop_back();
  EXPECT_EQ(render_svg(all_fit)->find("out of memory"), std::string::npos);
}

TEST(Plot, BadInputNamesTheField) {
  LinePlot empty;
  EXPECT_EQ(render_svg(empty).error().message(), "plot.series: nothing to plot");
  LinePlot bad_x = weak_scaling();
  bad_x.series[1].points[2].x = 0;
  EXPECT_EQ(render_svg(bad_x).error().message(), "plot.series[1].points[2].x: must be positive, got 0");
  LinePlot bad_y = weak_scaling();
  bad_y.series[0].points[1].y = -1;
  EXPECT_EQ(render_svg(bad_y).error().message(), "plot.series[0].points[1].y: must be a non-negative number, got -1");
}

TEST(Plot, WritesSvgAndRejectsPng) {
  const auto dir = std::filesystem::temp_directory_path() / ("strata_plot_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string svg_path = (dir / "out.svg").string();
  ASSERT_TRUE(write_plot(weak_scaling(), svg_path).is_ok());
  EXPECT_EQ(*read_text_file(svg_path), *render_svg(weak_scaling()));
  const std::string png_path = (dir / "out.png").string();
  Status png = write_plot(weak_scaling(), png_path);
  ASSERT_FALSE(png.is_ok());
  EXPECT_EQ(png.error().message(),
            png_path + ": plot: only .svg plots can be written (PNG needs a rasteriser this build does not have)");
  EXPECT_FALSE(std::filesystem::exists(png_path));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace strata::baselines
