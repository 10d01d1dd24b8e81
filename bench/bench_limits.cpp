// Rate limits against the baselines a user would otherwise write:
//   token_bucket (one atomic word, integer ns)  vs  std::mutex + double tokens
//   keyed_limiter (fixed table, seeded hash)    vs  std::unordered_map + std::mutex
//   connection_limiter / accept_gate at 90% load vs  std::unordered_map of counts + std::mutex
// Time is supplied by the benchmark in both, so neither pays for the clock.
// After the runs a summary prints baseline/wsguard ratios and the memory each
// keyed variant holds after a churn of random keys.
#include <wsguard.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace {

using clock_point = std::chrono::steady_clock::time_point;
using wsguard::address_key;

constexpr std::size_t table_capacity = 1 << 20;
constexpr std::int64_t churn_iterations = 3000000;

struct splitmix {
    std::uint64_t state;
    std::uint64_t next() noexcept {
        std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
};

address_key random_v6_key(splitmix& rng) {
    std::uint8_t v6[16] = {0x20, 0x01};
    const std::uint64_t r = rng.next();
    for (int b = 0; b < 6; ++b) v6[2 + b] = static_cast<std::uint8_t>(r >> (8 * b));
    return *address_key::from_bytes(v6, 16);
}

std::vector<address_key> hot_keys() {
    std::vector<address_key> keys;
    for (int i = 0; i < 1024; ++i) {
        const std::uint8_t v4[4] = {10, static_cast<std::uint8_t>(i >> 8), static_cast<std::uint8_t>(i), 1};
        keys.push_back(*address_key::from_bytes(v4, 4));
    }
    return keys;
}

// ---- Baseline: the bucket most code bases have -----------------------------

struct double_bucket_state {
    double tokens = 0;
    clock_point last{};
    bool started = false;
};

bool double_bucket_take(double_bucket_state& s, clock_point now, double rate, double burst) {
    if (!s.started) {
        s.tokens = burst;
        s.last = now;
        s.started = true;
    }
    const double elapsed = std::chrono::duration<double>(now - s.last).count();
    if (elapsed > 0) {
        s.tokens = std::min(burst, s.tokens + elapsed * rate);
        s.last = now;
    }
    if (s.tokens < 1.0) return false;
    s.tokens -= 1.0;
    return true;
}

struct mutex_double_bucket {
    std::mutex mutex;
    double_bucket_state state;
    bool try_acquire(clock_point now, double rate, double burst) {
        std::lock_guard<std::mutex> lock(mutex);
        return double_bucket_take(state, now, rate, burst);
    }
};

// Counts what the unordered_map really allocates (nodes and bucket arrays).
std::atomic<std::int64_t> map_bytes{0};
template <class T>
struct counting_allocator {
    using value_type = T;
    counting_allocator() = default;
    template <class U>
    counting_allocator(const counting_allocator<U>&) noexcept {}
    T* allocate(std::size_t n) {
        map_bytes += static_cast<std::int64_t>(n * sizeof(T));
        return std::allocator<T>().allocate(n);
    }
    void deallocate(T* p, std::size_t n) noexcept {
        map_bytes -= static_cast<std::int64_t>(n * sizeof(T));
        std::allocator<T>().deallocate(p, n);
    }
    template <class U>
    bool operator==(const counting_allocator<U>&) const noexcept { return true; }
    template <class U>
    bool operator!=(const counting_allocator<U>&) const noexcept { return false; }
};

struct address_hash {
    std::size_t operator()(const address_key& k) const noexcept {
        std::string_view bytes(reinterpret_cast<const char*>(&k), sizeof k);
        return std::hash<std::string_view>()(bytes);
    }
};

using baseline_map = std::unordered_map<address_key, double_bucket_state, address_hash, std::equal_to<address_key>,
                                        counting_allocator<std::pair<const address_key, double_bucket_state>>>;

struct mutex_map_limiter {
    std::mutex mutex;
    baseline_map buckets;
    bool try_acquire(const address_key& key, clock_point now, double rate, double burst) {
        std::lock_guard<std::mutex> lock(mutex);
        return double_bucket_take(buckets[key], now, rate, burst);
    }
};

// Both sides advance time by one interval per call at 1e6/s: every decision
// is a real update (the allowed path), not the cheaper refusal.
constexpr std::uint64_t single_rate = 1000000;

// ---- Single bucket -----------------------------------------------------------

void BM_wsguard_token_bucket(benchmark::State& state) {
    static wsguard::token_bucket bucket = wsguard::token_bucket::create({wsguard::rate::per_second(single_rate), 100}).value();
    clock_point now = clock_point(std::chrono::hours(1));
    std::int64_t allowed = 0;
    for (auto _ : state) {
        now += std::chrono::microseconds(1);
        allowed += bucket.try_acquire(now) ? 1 : 0;
    }
    benchmark::DoNotOptimize(allowed);
}
BENCHMARK(BM_wsguard_token_bucket)->Threads(1)->Threads(2);

void BM_baseline_mutex_double_bucket(benchmark::State& state) {
    static mutex_double_bucket bucket;
    clock_point now = clock_point(std::chrono::hours(1));
    std::int64_t allowed = 0;
    for (auto _ : state) {
        now += std::chrono::microseconds(1);
        allowed += bucket.try_acquire(now, single_rate, 100) ? 1 : 0;
    }
    benchmark::DoNotOptimize(allowed);
}
BENCHMARK(BM_baseline_mutex_double_bucket)->Threads(1)->Threads(2);

// ---- Keyed: 1,024 hot keys over a 1M-entry table ----------------------------

constexpr std::uint64_t keyed_rate = 1000;

wsguard::keyed_limiter<address_key>& hot_limiter() {
    static wsguard::keyed_limiter<address_key> limiter =
        wsguard::keyed_limiter<address_key>::create(
            {wsguard::rate::per_second(keyed_rate), 100, table_capacity}).value();
    return limiter;
}

void BM_wsguard_keyed_hot(benchmark::State& state) {
    static const std::vector<address_key> keys = hot_keys();
    auto& limiter = hot_limiter();
    clock_point now = clock_point(std::chrono::hours(1));
    std::size_t i = static_cast<std::size_t>(state.thread_index()) * 512;
    std::int64_t allowed = 0;
    for (auto _ : state) {
        now += std::chrono::microseconds(1);
        allowed += limiter.try_acquire(keys[i++ & 1023], now) ? 1 : 0;
    }
    benchmark::DoNotOptimize(allowed);
}
BENCHMARK(BM_wsguard_keyed_hot)->Threads(1)->Threads(2);

void BM_baseline_map_hot(benchmark::State& state) {
    static const std::vector<address_key> keys = hot_keys();
    static mutex_map_limiter limiter;
    clock_point now = clock_point(std::chrono::hours(1));
    std::size_t i = static_cast<std::size_t>(state.thread_index()) * 512;
    std::int64_t allowed = 0;
    for (auto _ : state) {
        now += std::chrono::microseconds(1);
        allowed += limiter.try_acquire(keys[i++ & 1023], now, keyed_rate, 100) ? 1 : 0;
    }
    benchmark::DoNotOptimize(allowed);
}
BENCHMARK(BM_baseline_map_hot)->Threads(1)->Threads(2);

// ---- Keyed: random-key churn (a flood), fixed iteration count ---------------

std::int64_t wsguard_churn_memory = 0;
std::int64_t baseline_churn_memory = 0;
std::int64_t baseline_churn_entries = 0;

void BM_wsguard_keyed_churn(benchmark::State& state) {
    auto limiter = wsguard::keyed_limiter<address_key>::create(
                       {wsguard::rate::per_second(keyed_rate), 100, table_capacity})
                       .value();
    splitmix rng{1};
    clock_point now = clock_point(std::chrono::hours(1));
    std::int64_t allowed = 0;
    for (auto _ : state) {
        now += std::chrono::nanoseconds(100);
        allowed += limiter.try_acquire(random_v6_key(rng), now) ? 1 : 0;
    }
    benchmark::DoNotOptimize(allowed);
    wsguard_churn_memory = static_cast<std::int64_t>(limiter.memory_bytes());
    state.counters["memory_MiB"] = static_cast<double>(wsguard_churn_memory) / (1 << 20);
}
BENCHMARK(BM_wsguard_keyed_churn)->Iterations(churn_iterations);

void BM_baseline_map_churn(benchmark::State& state) {
    std::int64_t bytes_before = map_bytes.load();
    std::int64_t peak = 0;
    std::int64_t entries = 0;
    {
        mutex_map_limiter limiter;
        splitmix rng{1};
        clock_point now = clock_point(std::chrono::hours(1));
        std::int64_t allowed = 0;
        for (auto _ : state) {
            now += std::chrono::nanoseconds(100);
            allowed += limiter.try_acquire(random_v6_key(rng), now, keyed_rate, 100) ? 1 : 0;
        }
        benchmark::DoNotOptimize(allowed);
        peak = map_bytes.load() - bytes_before + static_cast<std::int64_t>(sizeof limiter);
        entries = static_cast<std::int64_t>(limiter.buckets.size());
    }  // freeing the nodes happens after the timed loop
    baseline_churn_memory = peak;
    baseline_churn_entries = entries;
    state.counters["memory_MiB"] = static_cast<double>(peak) / (1 << 20);
    state.counters["entries"] = static_cast<double>(entries);
}
BENCHMARK(BM_baseline_map_churn)->Iterations(churn_iterations);

// ---- Floor: what any seeded fixed table of 1M 16-byte entries must do ---------
//
// Not a baseline a user would pick: the least work a decision under churn can
// cost here. The same keys, the same SipHash-1-3-128, one read-modify-write
// of one random cache line in a 16 MiB table; no lock, no bucket, no eviction.
// The gap between this and BM_wsguard_keyed_churn is what the limiter adds.

std::int64_t floor_table_bytes = 0;

void BM_floor_hash_and_one_line(benchmark::State& state) {
    struct alignas(64) line {
        std::uint64_t words[8];
    };
    const std::size_t lines = table_capacity / 4;  // 4 x 16-byte entries per line
    wsguard::detail::limits_table<line> table;     // the limiter's allocation: huge pages where offered
    if (!table.allocate(lines)) {
        state.SkipWithError("out of memory");
        return;
    }
    floor_table_bytes = static_cast<std::int64_t>(lines * sizeof(line));
    splitmix rng{1};
    const std::uint64_t k0 = rng.next();
    const std::uint64_t k1 = rng.next();
    for (auto _ : state) {
        const address_key key = random_v6_key(rng);
        const auto h = wsguard::detail::limits_siphash13_128(k0, k1, &key, sizeof key);
        line& l = table[static_cast<std::size_t>(((h.lo & 0xffffffffull) * lines) >> 32)];
        l.words[h.hi & 7] += 1;
    }
    benchmark::DoNotOptimize(table[0]);
}
BENCHMARK(BM_floor_hash_and_one_line)->Iterations(churn_iterations);

// ---- Connections and pending handshakes: acquire + release at 90% load ------
//
// The guard's default address table (65,536 keys) with 90% of its keys holding
// a connection; each iteration a new random key acquires and releases one.
// Baseline: what a server would otherwise write, a mutex around an
// unordered_map of counts, erased at zero, with the same capacity check.

constexpr std::size_t connection_capacity = 1 << 16;
constexpr std::size_t connection_load = connection_capacity * 9 / 10;

struct mutex_map_connections {
    std::mutex mutex;
    std::unordered_map<address_key, std::uint32_t, address_hash> counts;
    bool acquire(const address_key& key) {
        std::lock_guard<std::mutex> lock(mutex);
        const auto it = counts.find(key);
        if (it != counts.end()) {
            if (it->second >= 8) return false;
            ++it->second;
            return true;
        }
        if (counts.size() >= connection_capacity) return false;
        counts.emplace(key, 1u);
        return true;
    }
    void release(const address_key& key) {
        std::lock_guard<std::mutex> lock(mutex);
        const auto it = counts.find(key);
        if (it != counts.end() && --it->second == 0) counts.erase(it);
    }
};

struct loaded_connections {
    wsguard::connection_limiter<address_key> limiter =
        wsguard::connection_limiter<address_key>::create({8, connection_capacity}).value();
    std::vector<wsguard::connection_limiter<address_key>::permit> held;
    loaded_connections() {
        splitmix rng{99};
        for (std::size_t i = 0; i < connection_load; ++i) held.push_back(limiter.try_acquire(random_v6_key(rng)));
    }
};

struct loaded_gate {
    wsguard::accept_gate gate = wsguard::accept_gate::create(limits()).value();
    std::vector<wsguard::accept_permit> held;
    static wsguard::accept_limits limits() {
        wsguard::accept_limits l;
        l.table_capacity = connection_capacity;
        l.max_pending_total = 1u << 30;
        return l;
    }
    loaded_gate() {
        splitmix rng{99};
        const clock_point now = clock_point(std::chrono::hours(1));
        for (std::size_t i = 0; i < connection_load; ++i) held.push_back(gate.try_admit(random_v6_key(rng), now));
    }
};

mutex_map_connections& loaded_baseline() {
    static mutex_map_connections* map = [] {
        auto* m = new mutex_map_connections();
        splitmix rng{99};
        for (std::size_t i = 0; i < connection_load; ++i) m->acquire(random_v6_key(rng));
        return m;
    }();
    return *map;
}

void BM_wsguard_connection_90(benchmark::State& state) {
    static loaded_connections loaded;
    splitmix rng{1000 + static_cast<std::uint64_t>(state.thread_index())};
    std::int64_t refused = 0;
    for (auto _ : state) {
        auto permit = loaded.limiter.try_acquire(random_v6_key(rng));
        refused += permit ? 0 : 1;
    }  // the permit's destructor releases
    if (refused != 0) state.SkipWithError("a key was refused below capacity");
}
BENCHMARK(BM_wsguard_connection_90)->Threads(1)->Threads(2);

void BM_wsguard_accept_gate_90(benchmark::State& state) {
    static loaded_gate loaded;
    splitmix rng{2000 + static_cast<std::uint64_t>(state.thread_index())};
    clock_point now = clock_point(std::chrono::hours(1));
    std::int64_t refused = 0;
    for (auto _ : state) {
        now += std::chrono::nanoseconds(100);
        const wsguard::accept_permit permit = loaded.gate.try_admit(random_v6_key(rng), now);
        refused += permit ? 0 : 1;
    }
    if (refused != 0) state.SkipWithError("a client was refused below capacity");
}
BENCHMARK(BM_wsguard_accept_gate_90)->Threads(1)->Threads(2);

void BM_baseline_map_connection_90(benchmark::State& state) {
    auto& map = loaded_baseline();
    splitmix rng{1000 + static_cast<std::uint64_t>(state.thread_index())};
    std::int64_t refused = 0;
    for (auto _ : state) {
        const address_key key = random_v6_key(rng);
        if (map.acquire(key)) map.release(key);
        else ++refused;
    }
    if (refused != 0) state.SkipWithError("a key was refused below capacity");
}
BENCHMARK(BM_baseline_map_connection_90)->Threads(1)->Threads(2);

// ---- Summary --------------------------------------------------------------------

class recording_reporter : public benchmark::ConsoleReporter {
public:
    std::map<std::string, double> ns_per_op;
    void ReportRuns(const std::vector<Run>& runs) override {
        for (const Run& run : runs) {
            if (run.run_type == Run::RT_Iteration && run.iterations > 0)
                ns_per_op[run.benchmark_name()] = run.GetAdjustedCPUTime();  // default unit: ns
        }
        ConsoleReporter::ReportRuns(runs);
    }
};

void print_ratio(const recording_reporter& r, const char* what, const std::string& ours, const std::string& theirs) {
    const auto a = r.ns_per_op.find(ours);
    const auto b = r.ns_per_op.find(theirs);
    if (a == r.ns_per_op.end() || b == r.ns_per_op.end() || a->second <= 0) return;
    std::printf("  %-42s wsguard %8.1f ns   baseline %8.1f ns   baseline/wsguard %5.2fx\n", what, a->second, b->second,
                b->second / a->second);
}

}  // namespace

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    recording_reporter reporter;
    benchmark::RunSpecifiedBenchmarks(&reporter);

    std::printf("\nSummary (CPU time per decision; higher ratio = wsguard faster)\n");
    print_ratio(reporter, "single bucket, 1 thread", "BM_wsguard_token_bucket/threads:1",
                "BM_baseline_mutex_double_bucket/threads:1");
    print_ratio(reporter, "single bucket, 2 threads", "BM_wsguard_token_bucket/threads:2",
                "BM_baseline_mutex_double_bucket/threads:2");
    print_ratio(reporter, "keyed, 1024 hot keys, 1 thread", "BM_wsguard_keyed_hot/threads:1", "BM_baseline_map_hot/threads:1");
    print_ratio(reporter, "keyed, 1024 hot keys, 2 threads", "BM_wsguard_keyed_hot/threads:2", "BM_baseline_map_hot/threads:2");
    print_ratio(reporter, "connection acquire+release, 90%, 1 thr", "BM_wsguard_connection_90/threads:1",
                "BM_baseline_map_connection_90/threads:1");
    print_ratio(reporter, "connection acquire+release, 90%, 2 thr", "BM_wsguard_connection_90/threads:2",
                "BM_baseline_map_connection_90/threads:2");
    print_ratio(reporter, "accept_gate try_admit+release, 90%, 1 thr", "BM_wsguard_accept_gate_90/threads:1",
                "BM_baseline_map_connection_90/threads:1");
    print_ratio(reporter, "accept_gate try_admit+release, 90%, 2 thr", "BM_wsguard_accept_gate_90/threads:2",
                "BM_baseline_map_connection_90/threads:2");
    const std::string churn_suffix = "/iterations:" + std::to_string(churn_iterations);
    print_ratio(reporter, "keyed, random-key churn", "BM_wsguard_keyed_churn" + churn_suffix, "BM_baseline_map_churn" + churn_suffix);
    const auto churn = reporter.ns_per_op.find("BM_wsguard_keyed_churn" + churn_suffix);
    const auto floor = reporter.ns_per_op.find("BM_floor_hash_and_one_line" + churn_suffix);
    if (churn != reporter.ns_per_op.end() && floor != reporter.ns_per_op.end()) {
        std::printf("  keyed churn goal: under 40 ns        wsguard %8.1f ns: %s\n", churn->second,
                    churn->second < 40 ? "met" : "MISSED");
        std::printf("  floor: SipHash-1-3-128 + one random line in a %.0f MiB table, no lock: %.1f ns "
                    "(wsguard adds %.1f ns)\n",
                    static_cast<double>(floor_table_bytes) / (1 << 20), floor->second, churn->second - floor->second);
    }
    if (wsguard_churn_memory > 0 && baseline_churn_memory > 0) {
        std::printf("  memory after %lld random keys:  wsguard %.1f MiB (fixed, %zu entries)   "
                    "unordered_map %.1f MiB (%lld entries, grows without bound)\n",
                    static_cast<long long>(churn_iterations), static_cast<double>(wsguard_churn_memory) / (1 << 20),
                    table_capacity, static_cast<double>(baseline_churn_memory) / (1 << 20),
                    static_cast<long long>(baseline_churn_entries));
    }
    benchmark::Shutdown();
    return 0;
}
