// The Prometheus text exposition format, version 0.0.4
// (prometheus.io/docs/instrumenting/exposition_formats/), written by hand:
// chainswap has no Prometheus client library and needs only gauges and
// counters.
//
//   ExpositionWriter w(&text);
//   w.Family("chainswap_chain_stored_bytes", MetricType::kGauge, "Bytes ...");
//   w.Sample({{"chain", "vdi-pool"}}, uint64_t{4096});
//   w.Family("chainswap_blocks_stored_total", MetricType::kCounter, "...");
//   w.Sample({}, uint64_t{7});
//
// What it guarantees, whatever the caller passes: every family has one
// `# HELP` and one `# TYPE` line before its samples, a family's samples are
// together (a sample always belongs to the family opened last), label values
// and HELP text are escaped as the format requires (label values: backslash,
// double quote, newline; HELP: backslash, newline), and label values are
// valid UTF-8 (invalid bytes, possible in file names, become U+FFFD). What it
// refuses, recording a problem and writing nothing for that family or
// sample: an invalid metric or label name, a family opened twice, a counter
// whose name does not end in `_total`, a sample before any family, a sample
// whose label set repeats an earlier one of its family. A caller checks
// problems() (tests do; the daemon logs them).
//
// Thread-safety: none; one writer per thread.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace chainswap {

enum class MetricType { kGauge, kCounter };

struct Label {
  std::string_view name;
  std::string_view value;
};

class ExpositionWriter {
 public:
  // Appends to *out (not cleared: a caller may reuse one buffer).
  explicit ExpositionWriter(std::string* out) : out_(out) {}

  // Opens a family: writes its HELP and TYPE lines. Returns false (and
  // writes nothing; its samples are dropped too) for an invalid or repeated
  // name, or a counter not named *_total.
  bool Family(std::string_view name, MetricType type, std::string_view help);
  // One sample of the family opened last. Integers are written exactly.
  void Sample(std::initializer_list<Label> labels, uint64_t value);
  void Sample(std::initializer_list<Label> labels, double value);
  void Sample(const std::vector<Label>& labels, uint64_t value);
  void Sample(const std::vector<Label>& labels, double value);

  // What was refused, one line each; empty when everything was written.
  const std::vector<std::string>& problems() const { return problems_; }

 private:
  void WriteSample(const Label* labels, size_t n, std::string_view value);

  std::string* out_;
  std::set<std::string, std::less<>> families_;  // opened so far
  std::string current_;                          // the family samples go to ("" when refused)
  std::set<std::string> series_;                 // label sets of the current family
  bool open_ = false;                            // a family was opened (even if refused)
  std::vector<std::string> problems_;
};

// [a-zA-Z_:][a-zA-Z0-9_:]*
bool ValidMetricName(std::string_view name);
// [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__" (reserved).
bool ValidLabelName(std::string_view name);
// A label value as it goes between the double quotes: invalid UTF-8
// replaced by U+FFFD, then \ -> \\, " -> \", newline -> \n.
std::string EscapeLabelValue(std::string_view value);
// HELP text: \ -> \\, newline -> \n (invalid UTF-8 replaced as above).
std::string EscapeHelp(std::string_view help);
// A sample value: the shortest text that reads back as the same double;
// NaN, +Inf, -Inf as the format spells them.
std::string FormatValue(double v);

}  // namespace chainswap
