// For benchmarks that print a summary table after the run: a console reporter
// that also keeps each run's CPU time per iteration, in nanoseconds, by name.
// CPU time: stable on a shared machine, and equal to real time for the
// single-threaded, syscall-free loops it is used with.
#ifndef WSGUARD_BENCH_SUMMARY_HPP
#define WSGUARD_BENCH_SUMMARY_HPP

#include <benchmark/benchmark.h>

#include <map>
#include <string>
#include <vector>

namespace wsguard_bench {

class summary_reporter : public benchmark::ConsoleReporter {
public:
    std::map<std::string, double> ns_per_iteration;

    void ReportRuns(const std::vector<Run>& runs) override {
        for (const Run& run : runs) {
            if (run.run_type == Run::RT_Iteration && run.iterations > 0) {
                ns_per_iteration[run.benchmark_name()] = run.GetAdjustedCPUTime() *
                    (run.time_unit == benchmark::kNanosecond ? 1.0
                     : run.time_unit == benchmark::kMicrosecond ? 1e3
                     : run.time_unit == benchmark::kMillisecond ? 1e6 : 1e9);
            }
        }
        ConsoleReporter::ReportRuns(runs);
    }

    // The time of the run named exactly `name` ("BM_x/5"), or 0 if it did not run.
    double ns(const std::string& name) const {
        const auto it = ns_per_iteration.find(name);
        return it == ns_per_iteration.end() ? 0.0 : it->second;
    }
};

}  // namespace wsguard_bench

#endif
