// chainswap's metrics in the Prometheus text format: the families, their
// names, types and HELP texts, rendered from Figures (fs/figures.h). Both
// `chainswap stats --prometheus` and the daemon's metrics file
// (metrics_file=, fs/metrics_writer.h) print exactly this;
// docs/OPERATIONS.md ("Metrics") lists every family.
//
// Every sample carries the label `backing` (the backing directory), so the
// files of several mounts can sit in one node_exporter textfile directory;
// per-chain families add `chain`, per-file ones `chain` and `file`. Families
// that come from the running engine (journal, queue, counters, the sticky
// error) appear only while the figures are live (chainswap_up 1).
//
// Thread-safety: a pure function.
#pragma once

#include <string>
#include <vector>

#include "fs/figures.h"

namespace chainswap {

// Appends the metrics of `f` to *out; returns the exposition writer's
// problems (empty: everything was written; tests check it).
std::vector<std::string> RenderMetrics(const Figures& f, std::string* out);

// The text of a stopped daemon's metrics file: chainswap_up 0 and nothing
// else (the catalog is no longer watched; `chainswap stats --prometheus`
// still reads it).
std::string RenderDown(const std::string& backing);

}  // namespace chainswap
