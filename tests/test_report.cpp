// Reports: the SVG writer (output parses as XML, text escaped, nice ticks) and the singular-value
// spectra of Figure 3.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "nr/report/svg_plot.hpp"

TEST_CASE("nice ticks are round numbers covering the range", "[report][svg]") {
  const std::vector<double> t = nr::nice_ticks(0.63, 1.18);
  REQUIRE(t.size() >= 3);
  CHECK(t.front() >= 0.63);
  CHECK(t.back() <= 1.18);
  CHECK(t[1] - t[0] == Approx(0.1));
}

TEST_CASE("the SVG output is well-formed XML with escaped text", "[report][svg]") {
  nr::SvgPlot p;
  p.title = "Learning <vs> forgetting & \"quotes\"";
  p.xlabel = "en-ood BPB";
  p.ylabel = "fr BPB";
  p.series.push_back({"neutral residues", {{1.0, 2.0}, {1.1, 1.8}}, true, true, ""});
  p.series.push_back({"backbone", {{0.9, 3.0}}, false, true, "#000"});
  p.series.push_back({"empty", {}, true, false, ""});
  const std::string svg = p.render();
  CHECK(svg.find("&lt;vs&gt; forgetting &amp; &quot;quotes&quot;") != std::string::npos);
  CHECK(svg.find("neutral residues") != std::string::npos);
  CHECK(svg.find("<polyline") != std::string::npos);
  if (std::system("python3 -c 'import xml.dom.minidom' >/dev/null 2>&1") != 0) {
    WARN("skipped the XML parse: python3 is not available");
    return;
  }
  const auto file = std::filesystem::temp_directory_path() / ("nr-test-" + std::to_string(::getpid()) + ".svg");
  std::ofstream(file) << svg;
  const std::string cmd = "python3 -c 'import sys, xml.dom.minidom; xml.dom.minidom.parse(sys.argv[1])' " + file.string();
  CHECK(std::system(cmd.c_str()) == 0);
  std::filesystem::remove(file);
}

#include "nr/report/spectrum.hpp"

TEST_CASE("normalised singular values of a known matrix", "[report][spectrum]") {
  // diag(3, 1) rotated: singular values 3 and 1 -> normalised 1 and 1/3.
  const float c = 0.6f, s = 0.8f;
  nr::Tensor w = nr::Tensor::from_vector({3 * c, -s, 3 * s, c}, nr::Shape{2, 2});
  const std::vector<double> v = nr::normalized_singular_values(w);
  REQUIRE(v.size() == 2);
  CHECK(v[0] == Approx(1.0));
  CHECK(v[1] == Approx(1.0 / 3.0).epsilon(1e-5));
  CHECK(nr::normalized_singular_values(nr::Tensor::zeros(nr::Shape{3, 2})) == std::vector<double>{0.0, 0.0});
  REQUIRE_THROWS_AS(nr::normalized_singular_values(nr::Tensor::zeros(nr::Shape{3})), nr::ShapeError);
}
