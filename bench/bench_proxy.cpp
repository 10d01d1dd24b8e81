// trusted_proxies::resolve against what people write by hand: split
// X-Forwarded-For at the first comma and take the leftmost entry, parsed with
// address_key (the "baseline" that lets any client choose its address; it is
// here for its cost, not its answer). Chains of one and five trusted hops, in
// X-Forwarded-For and in Forwarded. Also parse_proxy_header on a PROXY v2
// header with a TLV, and a v1 line. A table after the run prints the ratios.
#include <wsguard.hpp>

#include <benchmark/benchmark.h>

#include "bench_summary.hpp"

#include <cstdio>
#include <string>
#include <vector>

namespace {

const wsguard::trusted_proxies& proxies() {
    static const wsguard::trusted_proxies p =
        wsguard::trusted_proxies::create({"127.0.0.1", "10.0.0.0/8", "172.16.0.0/12", "2001:db8:ffff::/48"}).value();
    return p;
}

// The hand-written baseline: leftmost entry of X-Forwarded-For, trimmed, parsed.
std::optional<wsguard::address_key> leftmost_xff(std::string_view xff) {
    const std::size_t comma = xff.find(',');
    std::string_view first = xff.substr(0, comma);
    while (!first.empty() && first.front() == ' ') first.remove_prefix(1);
    while (!first.empty() && first.back() == ' ') first.remove_suffix(1);
    return wsguard::address_key::from_text(first);
}

const std::string xff_one_hop = "203.0.113.7";
const std::string xff_five_hops = "203.0.113.7, 10.0.0.1, 10.0.0.2, 172.16.0.3, 10.0.0.4";
const std::string forwarded_one_hop = "for=203.0.113.7;proto=https";
const std::string forwarded_five_hops =
    "for=203.0.113.7;proto=https, for=10.0.0.1, for=10.0.0.2, for=\"172.16.0.3:8080\", for=10.0.0.4;by=_lb";

void BM_resolve_xff(benchmark::State& state) {
    const std::string& xff = state.range(0) == 1 ? xff_one_hop : xff_five_hops;
    for (auto _ : state) {
        const wsguard::client_address c = proxies().resolve("10.0.0.5:40000", {}, xff);
        benchmark::DoNotOptimize(c);
    }
}
void BM_resolve_forwarded(benchmark::State& state) {
    const std::string& forwarded = state.range(0) == 1 ? forwarded_one_hop : forwarded_five_hops;
    for (auto _ : state) {
        const wsguard::client_address c = proxies().resolve("10.0.0.5:40000", forwarded, {});
        benchmark::DoNotOptimize(c);
    }
}
void BM_leftmost_xff(benchmark::State& state) {
    const std::string& xff = state.range(0) == 1 ? xff_one_hop : xff_five_hops;
    for (auto _ : state) {
        // The peer is parsed too, as a server would for its own limits.
        auto peer = wsguard::address_key::from_endpoint_text("10.0.0.5:40000");
        auto client = leftmost_xff(xff);
        benchmark::DoNotOptimize(peer);
        benchmark::DoNotOptimize(client);
    }
}

std::vector<std::uint8_t> v2_header() {
    std::vector<std::uint8_t> h = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
                                   0x21, 0x11, 0x00, 0x11, 203, 0, 113, 7, 10, 0, 0, 1, 0xc3, 0x50, 0x01, 0xbb,
                                   0x01, 0x00, 0x02, 'h', '2'};  // PP2_TYPE_ALPN "h2"
    const std::string request = "GET /ws HTTP/1.1\r\n";
    h.insert(h.end(), request.begin(), request.end());
    return h;
}

void BM_proxy_v2(benchmark::State& state) {
    const std::vector<std::uint8_t> bytes = v2_header();
    for (auto _ : state) {
        const wsguard::proxy_header h = wsguard::parse_proxy_header(bytes.data(), bytes.size());
        benchmark::DoNotOptimize(h);
    }
}
void BM_proxy_v1(benchmark::State& state) {
    const std::string line = "PROXY TCP4 203.0.113.7 10.0.0.1 50000 443\r\nGET /ws HTTP/1.1\r\n";
    const auto* bytes = reinterpret_cast<const std::uint8_t*>(line.data());
    for (auto _ : state) {
        const wsguard::proxy_header h = wsguard::parse_proxy_header(bytes, line.size());
        benchmark::DoNotOptimize(h);
    }
}

BENCHMARK(BM_resolve_xff)->Arg(1)->Arg(5);
BENCHMARK(BM_resolve_forwarded)->Arg(1)->Arg(5);
BENCHMARK(BM_leftmost_xff)->Arg(1)->Arg(5);
BENCHMARK(BM_proxy_v2);
BENCHMARK(BM_proxy_v1);

}  // namespace

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    wsguard_bench::summary_reporter reporter;
    benchmark::RunSpecifiedBenchmarks(&reporter);

    std::printf("\nClient address behind proxies, CPU ns per request\n");
    std::printf("%12s %14s %14s %14s %16s %16s\n", "trusted hops", "resolve XFF", "resolve Fwd", "leftmost XFF",
                "XFF/leftmost", "Fwd/leftmost");
    for (const char* hops : {"1", "5"}) {
        const std::string arg = std::string("/") + hops;
        const double xff = reporter.ns("BM_resolve_xff" + arg), fwd = reporter.ns("BM_resolve_forwarded" + arg),
                     base = reporter.ns("BM_leftmost_xff" + arg);
        if (base <= 0) continue;
        std::printf("%12s %14.1f %14.1f %14.1f %15.2fx %15.2fx\n", hops, xff, fwd, base, xff / base, fwd / base);
    }
    std::printf("PROXY header parse: v2 (IPv4, one TLV) %.1f ns, v1 (TCP4) %.1f ns\n", reporter.ns("BM_proxy_v2"),
                reporter.ns("BM_proxy_v1"));
    benchmark::Shutdown();
    return 0;
}
