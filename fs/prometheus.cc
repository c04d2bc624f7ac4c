#include "fs/prometheus.h"

#include <charconv>
#include <cmath>

namespace chainswap {

namespace {

bool NameChar(char c, bool first, bool colon_ok) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_') return true;
  if (colon_ok && c == ':') return true;
  return !first && c >= '0' && c <= '9';
}

// Length of the valid UTF-8 sequence at s[i], or 0 when it is not one
// (overlong forms, surrogates and code points above U+10FFFF are invalid).
size_t Utf8SequenceLength(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  if (c < 0x80) return 1;
  size_t n;
  uint32_t cp;
  if ((c & 0xE0) == 0xC0) n = 2, cp = c & 0x1F;
  else if ((c & 0xF0) == 0xE0) n = 3, cp = c & 0x0F;
  else if ((c & 0xF8) == 0xF0) n = 4, cp = c & 0x07;
  else return 0;
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b(i + k) & 0x3F);
  }
  static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

// Escapes `s` into *out; `quote`: also the double quote (label values).
void Escape(std::string_view s, bool quote, std::string* out) {
  out->reserve(out->size() + s.size());
  for (size_t i = 0; i < s.size();) {
    const size_t n = Utf8SequenceLength(s, i);
    if (n == 0) {
      out->append("\xEF\xBF\xBD");  // U+FFFD REPLACEMENT CHARACTER
      ++i;
      continue;
    }
    const char c = s[i];
    if (c == '\\') out->append("\\\\");
    else if (c == '\n') out->append("\\n");
    else if (c == '"' && quote) out->append("\\\"");
    else out->append(s.substr(i, n));
    i += n;
  }
}

}  // namespace

bool ValidMetricName(std::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i)
    if (!NameChar(name[i], i == 0, /*colon_ok=*/true)) return false;
  return true;
}

bool ValidLabelName(std::string_view name) {
  if (name.empty() || name.substr(0, 2) == "__") return false;
  for (size_t i = 0; i < name.size(); ++i)
    if (!NameChar(name[i], i == 0, /*colon_ok=*/false)) return false;
  return true;
}

std::string EscapeLabelValue(std::string_view value) {
  std::string out;
  Escape(value, /*quote=*/true, &out);
  return out;
}

std::string EscapeHelp(std::string_view help) {
  std::string out;
  Escape(help, /*quote=*/false, &out);
  return out;
}

std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

bool ExpositionWriter::Family(std::string_view name, MetricType type, std::string_view help) {
  open_ = true;
  current_.clear();
  series_.clear();
  const std::string n(name);
  if (!ValidMetricName(name)) {
    problems_.push_back("invalid metric name '" + n + "'");
    return false;
  }
  if (families_.count(name)) {
    problems_.push_back("family " + n + " opened twice (its samples must be together)");
    return false;
  }
  const bool total = name.size() > 6 && name.substr(name.size() - 6) == "_total";
  if (type == MetricType::kCounter && !total) {
    problems_.push_back("counter " + n + " must be named *_total");
    return false;
  }
  families_.insert(n);
  current_ = n;
  out_->append("# HELP ").append(n).append(" ");
  Escape(help, /*quote=*/false, out_);
  out_->append("\n# TYPE ").append(n).append(type == MetricType::kCounter ? " counter\n" : " gauge\n");
  return true;
}

void ExpositionWriter::Sample(std::initializer_list<Label> labels, uint64_t value) {
  WriteSample(labels.begin(), labels.size(), std::to_string(value));
}

void ExpositionWriter::Sample(std::initializer_list<Label> labels, double value) {
  WriteSample(labels.begin(), labels.size(), FormatValue(value));
}

void ExpositionWriter::Sample(const std::vector<Label>& labels, uint64_t value) {
  WriteSample(labels.data(), labels.size(), std::to_string(value));
}

void ExpositionWriter::Sample(const std::vector<Label>& labels, double value) {
  WriteSample(labels.data(), labels.size(), FormatValue(value));
}

void ExpositionWriter::WriteSample(const Label* labels, size_t n, std::string_view value) {
  if (!open_) {
    problems_.push_back("sample before any family");
    return;
  }
  if (current_.empty()) return;  // its family was refused (already reported)
  std::string line = current_;
  std::set<std::string_view> names;
  for (size_t i = 0; i < n; ++i) {
    const Label& l = labels[i];
    if (!ValidLabelName(l.name) || !names.insert(l.name).second) {
      problems_.push_back("invalid or repeated label name '" + std::string(l.name) + "' in " + current_);
      return;
    }
    line.append(i == 0 ? "{" : ",").append(l.name).append("=\"");
    Escape(l.value, /*quote=*/true, &line);
    line.append("\"");
  }
  if (n > 0) line.append("}");
  if (!series_.insert(line).second) {
    problems_.push_back("repeated series " + line);
    return;
  }
  out_->append(line).append(" ").append(value).append("\n");
}

}  // namespace chainswap
