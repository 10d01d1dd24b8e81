// origin_policy::check against the allowlists people write by hand: one
// anchored std::regex per pattern tried in turn, and a linear scan of exact
// strings. Allowlists of 1, 10, 100 and 10,000 patterns (half exact, half
// wildcards); queries mix allowed and refused origins. After the run a table
// prints the time per check and the ratios.
#include <wsguard.hpp>

#include <benchmark/benchmark.h>

#include "bench_summary.hpp"

#include <cstdio>
#include <map>
#include <regex>
#include <string>
#include <vector>

namespace {

// Pattern i: even -> https://app<i>.example.com, odd -> https://*.t<i>.example.net
std::vector<std::string> make_patterns(int n) {
    std::vector<std::string> patterns;
    for (int i = 0; i < n; ++i) {
        patterns.push_back(i % 2 == 0 ? "https://app" + std::to_string(i) + ".example.com"
                                      : "https://*.t" + std::to_string(i) + ".example.net");
    }
    return patterns;
}

// Half allowed (spread over the list, so scans do real work), half refused
// (the look-alikes a hand-written check gets wrong, and plain strangers).
std::vector<std::string> make_queries(int n) {
    std::vector<std::string> queries;
    for (int k = 0; k < 8; ++k) {
        const int i = static_cast<int>(static_cast<long>(n) * k / 8);
        if (i % 2 == 0) queries.push_back("https://app" + std::to_string(i) + ".example.com");
        else queries.push_back("https://chat.t" + std::to_string(i) + ".example.net");
    }
    queries.push_back("https://evil.example.org");
    queries.push_back("https://app0.example.com.evil.org");
    queries.push_back("http://app0.example.com");
    queries.push_back("https://evilapp0.example.com");
    queries.push_back("https://a.b.c.attacker.example.net");
    queries.push_back("https://t1.example.net");
    queries.push_back("https://www.google.com");
    queries.push_back("null");
    return queries;
}

// What people write: escape the dots, anchor, [a-z0-9-]+\. for the wildcard.
std::string to_regex(const std::string& pattern) {
    std::string re;
    for (std::size_t i = 0; i < pattern.size(); ++i) {
        if (pattern.compare(i, 2, "*.") == 0) {
            re += "([a-z0-9-]+\\.)+";
            ++i;
        } else if (pattern[i] == '.') {
            re += "\\.";
        } else {
            re += pattern[i];
        }
    }
    return "^" + re + "$";
}

struct regex_allowlist {
    std::vector<std::regex> patterns;
    bool allowed(const std::string& origin) const {
        for (const std::regex& re : patterns) {
            if (std::regex_match(origin, re)) return true;
        }
        return false;
    }
};

struct linear_allowlist {
    std::vector<std::string> exact;
    bool allowed(const std::string& origin) const {
        for (const std::string& s : exact) {
            if (s == origin) return true;
        }
        return false;
    }
};

void BM_wsguard(benchmark::State& state) {
    const int n = static_cast<int>(state.range(0));
    const auto policy = wsguard::origin_policy::create(make_patterns(n));
    if (!policy) {
        state.SkipWithError(policy.error().c_str());
        return;
    }
    const std::vector<std::string> queries = make_queries(n);
    std::size_t q = 0;
    long allowed = 0;
    for (auto _ : state) {
        const wsguard::decision d = policy->check(queries[q]);
        benchmark::DoNotOptimize(d);
        allowed += d.allowed();
        q = (q + 1) & 15;
    }
    state.counters["allowed_fraction"] = static_cast<double>(allowed) / static_cast<double>(state.iterations());
}

void BM_std_regex(benchmark::State& state) {
    const int n = static_cast<int>(state.range(0));
    regex_allowlist list;
    for (const std::string& p : make_patterns(n)) list.patterns.emplace_back(to_regex(p));
    const std::vector<std::string> queries = make_queries(n);
    std::size_t q = 0;
    long allowed = 0;
    for (auto _ : state) {
        const bool ok = list.allowed(queries[q]);
        benchmark::DoNotOptimize(ok);
        allowed += ok;
        q = (q + 1) & 15;
    }
    state.counters["allowed_fraction"] = static_cast<double>(allowed) / static_cast<double>(state.iterations());
}

void BM_linear_exact(benchmark::State& state) {
    // Exact strings only: a linear scan cannot express the wildcards, so it
    // answers fewer origins; it is the floor of "just compare strings".
    const int n = static_cast<int>(state.range(0));
    linear_allowlist list;
    list.exact = make_patterns(n);
    const std::vector<std::string> queries = make_queries(n);
    std::size_t q = 0;
    for (auto _ : state) {
        const bool ok = list.allowed(queries[q]);
        benchmark::DoNotOptimize(ok);
        q = (q + 1) & 15;
    }
}

BENCHMARK(BM_wsguard)->Arg(1)->Arg(10)->Arg(100)->Arg(10000);
BENCHMARK(BM_std_regex)->Arg(1)->Arg(10)->Arg(100);
// 10,000 regexes take about a millisecond per check: a capped run suffices.
BENCHMARK(BM_std_regex)->Arg(10000)->Iterations(64);
BENCHMARK(BM_linear_exact)->Arg(1)->Arg(10)->Arg(100)->Arg(10000);

}  // namespace

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    wsguard_bench::summary_reporter reporter;
    benchmark::RunSpecifiedBenchmarks(&reporter);

    std::printf("\nOrigin check, CPU ns per check (16 queries rotating, half allowed)\n");
    std::printf("%10s %12s %14s %14s %14s %14s\n", "patterns", "wsguard", "std::regex", "linear exact",
                "regex/wsguard", "linear/wsguard");
    for (const char* n : {"1", "10", "100", "10000"}) {
        const auto find = [&](const std::string& prefix) {
            for (const auto& entry : reporter.ns_per_iteration) {
                if (entry.first.rfind(prefix + "/" + n, 0) == 0) return entry.second;
            }
            return 0.0;
        };
        const double ours = find("BM_wsguard"), re = find("BM_std_regex"), lin = find("BM_linear_exact");
        if (ours <= 0) continue;
        std::printf("%10s %12.1f %14.1f %14.1f %13.0fx %13.1fx\n", n, ours, re, lin, re / ours, lin / ours);
    }
    benchmark::Shutdown();
    return 0;
}
