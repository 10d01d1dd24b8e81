// The whole handshake_guard::check of a ticketed upgrade, in process: one
// route that requires a ticket (rates raised so that no check is refused), a
// fresh valid ticket per check, every ticket issued before the timed loop. The
// baseline in the same binary is the same check on a route that requires no
// ticket, so the summary shows what the ticket costs. Two sizes of tables:
//   default   the guard's defaults (65,536 addresses), a 100,000-ticket replay
//             store, clients drawn from 50,000 addresses (the tables stay warm)
//   1M        address tables and replay store sized 1,000,000, clients drawn
//             from a million addresses: every table line a check touches is
//             cold (issue 11)
//
// This is the figure a fast path on the secret path must move (issue 13): a
// piece of code stays only if it saves at least 10% of this check. How the
// pieces were measured (docs/performance.md, "What the secret path keeps"):
// this benchmark built once per piece with that piece switched off by a
// temporary compile-time switch, several repetitions per build, the builds
// interleaved, medians of CPU time.
//
//   BM_handshake_check/ticket:1/tables_1M:<0|1>   the check with a ticket (the figure)
//   BM_handshake_check/ticket:0/tables_1M:<0|1>   the same check without one (the baseline)
#include <wsguard.hpp>

#include "bench_summary.hpp"
#include "bench_upgrade.hpp"

#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace {

constexpr int checks_per_run = 100000;

void BM_handshake_check(benchmark::State& state) {
    const bool ticket = state.range(0) != 0, million = state.range(1) != 0;
    std::uint8_t secret[32];
    for (std::size_t i = 0; i < sizeof secret; ++i) secret[i] = static_cast<std::uint8_t>(i * 7 + 1);
    auto keys = wsguard::keyring::create(1, {{1, std::string_view(reinterpret_cast<const char*>(secret), sizeof secret), {}}});
    // Room for every ticket of the run (each run has its own store), created
    // longer ago than the verifier's clock_skew, as a running server's store is.
    auto store = wsguard::memory_replay_store::create(million ? 1000000 : checks_per_run,
                                                      std::chrono::system_clock::now() - std::chrono::minutes(1));
    if (!keys || !store) return state.SkipWithError("tickets refused");
    auto verifier = wsguard::ticket_verifier<>::create(*keys, *store);
    auto issuer = wsguard::ticket_issuer::create(*keys);
    if (!verifier || !issuer) return state.SkipWithError("tickets refused");
    const std::string origin = "https://app.example.com", host = "app.example.com";
    wsguard::route_config route;
    route.path = "/ws";
    route.origins = {origin};
    route.hosts = {host};
    route.audience = "app.example.com/ws";
    route.ticket = ticket ? wsguard::ticket_requirement::required : wsguard::ticket_requirement::none;
    wsguard::handshake_config config;
    config.routes.push_back(route);
    config.verifier = &*verifier;
    config.handshakes_per_second = 100000000;
    config.handshake_burst = 100000000;
    if (million) config.address_table_capacity = 1000000;
    auto guard = wsguard::handshake_guard::create(config);
    if (!guard) return state.SkipWithError("configuration refused");

    std::vector<std::string> protocols;
    protocols.reserve(checks_per_run);
    for (int i = 0; i < checks_per_run; ++i)
        protocols.push_back(ticket ? "wsguard.v1, " + issuer->issue({"user-1234", origin, route.audience, "chat:read", {}}).ticket
                                   : std::string("wsguard.v1"));
    wsguard_bench::synthetic_clients clients(million ? 1000000 : 50000);
    std::size_t next = 0;
    for (auto _ : state) {
        const wsguard::upgrade_request up = clients.next(origin, host, protocols[next++]);
        const wsguard::handshake_outcome outcome = guard->check(up);
        if (!outcome) return state.SkipWithError(wsguard::to_string(outcome.decision.reason));
    }
}
BENCHMARK(BM_handshake_check)->ArgsProduct({{1, 0}, {0, 1}})->ArgNames({"ticket", "tables_1M"})->Iterations(checks_per_run)->Unit(benchmark::kNanosecond);

}  // namespace

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    wsguard_bench::summary_reporter reporter;
    benchmark::RunSpecifiedBenchmarks(&reporter);
    benchmark::Shutdown();
    std::printf("\nhandshake_guard::check, CPU time; SHA-256 backend: %s\n",
                wsguard::detail::sha256_backend_name(wsguard::detail::sha256_active_backend()));
    for (const char* tables : {"0", "1"}) {
        const std::string suffix = std::string("/tables_1M:") + tables + "/iterations:100000";
        const double with_ticket = reporter.ns("BM_handshake_check/ticket:1" + suffix);
        const double without = reporter.ns("BM_handshake_check/ticket:0" + suffix);
        if (with_ticket > 0 && without > 0)
            std::printf("%-7s tables: with a ticket %.0f ns, without %.0f ns: the ticket is %.0f ns, %.0f%% of the check "
                        "(%.2fx)\n",
                        *tables == '1' ? "1M" : "default", with_ticket, without, with_ticket - without,
                        100.0 * (with_ticket - without) / with_ticket, with_ticket / without);
    }
    return 0;
}
