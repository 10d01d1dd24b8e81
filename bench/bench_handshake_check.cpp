// The whole handshake_guard::check of a ticketed upgrade, in process: one
// route that requires a ticket, the default tables (rates raised so that no
// check is refused), a fresh valid ticket per check, every ticket issued
// before the timed loop. The baseline in the same binary is the same check on
// a route that requires no ticket, so the summary shows what the ticket costs.
//
// This is the figure a fast path on the secret path must move (issue 13): a
// piece of code stays only if it saves at least 10% of this check. How the
// pieces were measured (docs/performance.md, "What the secret path keeps"):
// this benchmark built once per piece with that piece switched off by a
// temporary compile-time switch, five repetitions per build, the builds
// interleaved, medians of CPU time.
//
//   BM_handshake_check/ticket:1   the check with a ticket (the figure)
//   BM_handshake_check/ticket:0   the same check without one (the baseline)
#include <wsguard.hpp>

#include "bench_summary.hpp"

#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace {

constexpr int checks_per_run = 100000;

void BM_handshake_check(benchmark::State& state) {
    const bool ticket = state.range(0) != 0;
    std::uint8_t secret[32];
    for (std::size_t i = 0; i < sizeof secret; ++i) secret[i] = static_cast<std::uint8_t>(i * 7 + 1);
    auto keys = wsguard::keyring::create(1, {{1, std::string_view(reinterpret_cast<const char*>(secret), sizeof secret), {}}});
    // Room for every ticket of every repetition (tickets live a minute).
    auto store = wsguard::memory_replay_store::create(1000000, std::chrono::system_clock::now() - std::chrono::minutes(1));
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
    auto guard = wsguard::handshake_guard::create(config);
    if (!guard) return state.SkipWithError("configuration refused");

    std::vector<std::string> protocols;
    protocols.reserve(checks_per_run);
    for (int i = 0; i < checks_per_run; ++i)
        protocols.push_back(ticket ? "wsguard.v1, " + issuer->issue({"user-1234", origin, route.audience, "chat:read", {}}).ticket
                                   : std::string("wsguard.v1"));
    std::uint64_t client = 0x9e3779b97f4a7c15ull;
    std::size_t next = 0;
    for (auto _ : state) {
        client = client * 6364136223846793005ull + 1442695040888963407ull;  // one of 50,000 addresses
        const std::uint32_t v4 = 0x0a000000u | static_cast<std::uint32_t>((client >> 33) % 50000);
        const std::uint8_t bytes[4] = {std::uint8_t(v4 >> 24), std::uint8_t(v4 >> 16), std::uint8_t(v4 >> 8), std::uint8_t(v4)};
        wsguard::upgrade_request up;
        up.method = "GET";
        up.path = "/ws";
        up.origin = origin;
        up.host = host;
        up.sec_websocket_protocol = protocols[next++];
        up.remote_address_bytes = bytes;
        up.remote_address_size = 4;
        const wsguard::handshake_outcome outcome = guard->check(up);
        if (!outcome) return state.SkipWithError(wsguard::to_string(outcome.decision.reason));
    }
}
BENCHMARK(BM_handshake_check)->Arg(1)->Arg(0)->ArgName("ticket")->Iterations(checks_per_run)->Unit(benchmark::kNanosecond);

}  // namespace

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    wsguard_bench::summary_reporter reporter;
    benchmark::RunSpecifiedBenchmarks(&reporter);
    benchmark::Shutdown();
    const double with_ticket = reporter.ns("BM_handshake_check/ticket:1/iterations:100000");
    const double without = reporter.ns("BM_handshake_check/ticket:0/iterations:100000");
    std::printf("\nhandshake_guard::check, CPU time; SHA-256 backend: %s\n",
                wsguard::detail::sha256_backend_name(wsguard::detail::sha256_active_backend()));
    if (with_ticket > 0 && without > 0)
        std::printf("with a ticket %.0f ns, without %.0f ns: the ticket is %.0f ns, %.0f%% of the check (%.2fx)\n",
                    with_ticket, without, with_ticket - without, 100.0 * (with_ticket - without) / with_ticket,
                    with_ticket / without);
    return 0;
}
