// How many 4 KiB pages one ticketed handshake_guard::check touches: run under
// valgrind's lackey by bench/check_pages.py, which counts the distinct pages
// (code and data) traced between the two marker loads around each check. On a
// kernel that empties the TLB at every system call (page-table isolation
// without PCID), each of those pages costs a page walk per check inside a
// server (docs/performance.md). The configuration is bench_handshake's
// (example::handshake_config), with one client address and default tables.
#include "bench_upgrade.hpp"
#include "example_app.hpp"

#include <cstdio>
#include <optional>
#include <string>
#include <vector>

// The markers, whose addresses the program prints first for check_pages.py.
volatile int wsguard_check_pages_begin = 0;
volatile int wsguard_check_pages_end = 0;

int main() {
    constexpr unsigned short port = 8080;
    example::options opts;
    opts.handshake_rate = 100000000;
    opts.handshake_burst = 100000000;
    opts.max_connections = 100000;
    const auto tickets = example::tickets::create(100000);
    if (!tickets) return 1;
    auto created = wsguard::handshake_guard::create(example::handshake_config(port, opts, "wsguard-example/ws", *tickets->verifier));
    if (!created) return 1;
    wsguard::handshake_guard guard = std::move(created).value();
    const std::string origin = "http://127.0.0.1:8080", host = "127.0.0.1:8080";
    std::vector<std::string> protocols;
    for (int i = 0; i < 20; ++i)
        protocols.push_back("wsguard.v1, " + tickets->issuer->issue({"demo-user", origin, "wsguard-example/ws", "", {}}).ticket);
    std::printf("markers %p %p\n", static_cast<void*>(const_cast<int*>(&wsguard_check_pages_begin)),
                static_cast<void*>(const_cast<int*>(&wsguard_check_pages_end)));
    std::fflush(stdout);
    wsguard_bench::synthetic_clients one_client(1);
    int allowed = 0;
    for (const std::string& protocol : protocols) {
        const wsguard::upgrade_request up = one_client.next(origin, host, protocol);
        int sink = wsguard_check_pages_begin;
        const bool ok = static_cast<bool>(guard.check(up));
        sink += wsguard_check_pages_end;
        allowed += ok ? 1 + sink * 0 : 0;
    }
    std::printf("%d of %zu checks allowed\n", allowed, protocols.size());
    return allowed == static_cast<int>(protocols.size()) ? 0 : 1;
}
