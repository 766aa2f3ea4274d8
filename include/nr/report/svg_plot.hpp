// nr/report/svg_plot.hpp — small line and scatter plots written as standalone SVG.
//
// The reproduction figures (learning vs forgetting, singular-value spectra, training curves) are
// written as SVG so they can be viewed in any browser with no plotting dependency. A plot is a
// list of series, each drawn as a polyline, as markers, or both, on linear axes with "nice" tick
// values, a title, axis labels and a legend. Text is XML-escaped, so the output always parses.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

namespace nr {

struct SvgSeries {
  std::string label;
  std::vector<std::pair<double, double>> points;  // (x, y)
  bool line = true;
  bool markers = false;
  std::string color;  // empty: taken from the palette
};

inline std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default:
        if (static_cast<unsigned char>(c) >= 0x20 || c == '\n' || c == '\t') out += c;  // drop control bytes
    }
  }
  return out;
}

// Tick positions covering [lo, hi] with steps of 1, 2 or 5 times a power of ten.
inline std::vector<double> nice_ticks(double lo, double hi, int target = 6) {
  if (!(hi > lo)) hi = lo + 1.0;
  const double raw = (hi - lo) / std::max(1, target);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  std::vector<double> t;
  for (double v = std::ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) t.push_back(std::abs(v) < step * 1e-9 ? 0.0 : v);
  return t;
}

struct SvgPlot {
  std::string title, xlabel, ylabel;
  std::vector<SvgSeries> series;
  int width = 720, height = 480;

  std::string render() const {
    static const char* palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"};
    double x0 = std::numeric_limits<double>::infinity(), x1 = -x0, y0 = x0, y1 = -x0;
    for (const SvgSeries& s : series)
      for (auto [x, y] : s.points)
        if (std::isfinite(x) && std::isfinite(y)) {
          x0 = std::min(x0, x); x1 = std::max(x1, x);
          y0 = std::min(y0, y); y1 = std::max(y1, y);
        }
    if (!std::isfinite(x0)) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
    const double px = (x1 - x0) * 0.05 + 1e-12, py = (y1 - y0) * 0.05 + 1e-12;
    x0 -= px; x1 += px; y0 -= py; y1 += py;
    const double left = 70, right = width - 170.0, top = 40, bottom = height - 55.0;
    auto X = [&](double x) { return left + (x - x0) / (x1 - x0) * (right - left); };
    auto Y = [&](double y) { return bottom - (y - y0) / (y1 - y0) * (bottom - top); };

    std::string svg = fmt::format(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" viewBox=\"0 0 {} {}\" "
        "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
        width, height, width, height);
    svg += fmt::format("<text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{}</text>\n", (left + right) / 2,
                       xml_escape(title));
    for (double t : nice_ticks(x0, x1)) {
      svg += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{0:.1f}\" y2=\"{2:.1f}\" stroke=\"#ddd\"/>\n", X(t), top, bottom);
      svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{:g}</text>\n", X(t), bottom + 16, t);
    }
    for (double t : nice_ticks(y0, y1)) {
      svg += fmt::format("<line x1=\"{1:.1f}\" y1=\"{0:.1f}\" x2=\"{2:.1f}\" y2=\"{0:.1f}\" stroke=\"#ddd\"/>\n", Y(t), left, right);
      svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\">{:g}</text>\n", left - 6, Y(t) + 4, t);
    }
    svg += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"black\"/>\n", left, top,
                       right - left, bottom - top);
    svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", (left + right) / 2, height - 15,
                       xml_escape(xlabel));
    svg += fmt::format("<text transform=\"translate(18,{}) rotate(-90)\" text-anchor=\"middle\">{}</text>\n",
                       (top + bottom) / 2, xml_escape(ylabel));
    for (size_t i = 0; i < series.size(); ++i) {
      const SvgSeries& s = series[i];
      const std::string color = s.color.empty() ? palette[i % 8] : s.color;
      if (s.line && s.points.size() > 1) {
        std::string pts;
        for (auto [x, y] : s.points)
          if (std::isfinite(x) && std::isfinite(y)) pts += fmt::format("{:.1f},{:.1f} ", X(x), Y(y));
        svg += fmt::format("<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\" points=\"{}\"/>\n", color, pts);
      }
      if (s.markers || s.points.size() == 1)
        for (auto [x, y] : s.points)
          if (std::isfinite(x) && std::isfinite(y))
            svg += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"4\" fill=\"{}\"/>\n", X(x), Y(y), color);
      const double ly = top + 10 + 18.0 * static_cast<double>(i);
      svg += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{}\"/>\n", right + 12, ly - 9, color);
      svg += fmt::format("<text x=\"{}\" y=\"{}\">{}</text>\n", right + 30, ly + 1, xml_escape(s.label));
    }
    svg += "</svg>\n";
    return svg;
  }
};

}  // namespace nr
