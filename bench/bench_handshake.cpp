// Whole handshakes against a real server: examples/raw_epoll started as a
// child process on loopback, a blocking client sending complete ticketed
// upgrades (each on its own connection, read up to the 101, then reset).
//
//   BM_server_handshakes/<round>/<tables>/guard:<0|1>   the same server with wsguard's
//       check on and off (--guard 0 is the baseline a user without wsguard
//       has): handshakes per second and the server's CPU per handshake, read
//       from /proc/<pid>/schedstat around the timed loop only (every ticket is
//       fetched before it, and that CPU is not counted); five interleaved
//       rounds of each, summarised by their medians. With the guard on, the
//       server also times its own checks (--time-guard 1): that time over the
//       same run's CPU is the guard's share, free of run-to-run noise.
//   BM_guard_check/<tables>   the guard's check alone, in process, with the
//       same configuration (example::handshake_config) and fresh tickets, one
//       address per check drawn from a million: its share of a handshake.
//   BM_guard_check_cold/<tables>/between:<0|1|2>   the same check with one
//       client, each timed alone, after nothing, a system call, or a TLB sweep:
//       why a check inside the server costs more than in a loop.
//   BM_victim_under_flood/gate:<0|1>   a victim on 127.0.0.3 opening ticketed
//       sockets while an attacker on 127.0.0.2 holds 600 idle sockets and
//       sends forged handshakes, against the server with and without its
//       accept_gate (--max-pending-per-address 0), beside the idle rate.
// <tables> is "default" (65,536 addresses, 100,000 replayed tickets) or "1M"
// (1,000,000 of both). The summary prints the guard's share and the ratios.
#include "bench_upgrade.hpp"
#include "example_app.hpp"

#include <benchmark/benchmark.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#ifndef WSGUARD_RAW_EPOLL_PATH
#error "bench/meson.build passes the raw_epoll example's path"
#endif

namespace {

constexpr int batch = 250;  // handshakes per timed iteration
constexpr const char* victim_address = "127.0.0.3";
constexpr const char* attacker_address = "127.0.0.2";

// ---- The server: raw_epoll as a child process -------------------------------

struct child_server {
    pid_t pid = -1;
    unsigned short port = 0;
    int output = -1;  // the server's standard output

    // Starts raw_epoll with `args`; port 0 on failure.
    explicit child_server(std::vector<std::string> args) {
        int out[2];
        if (pipe(out) != 0) return;
        pid = fork();
        if (pid == 0) {
            dup2(out[1], 1);
            const int null = open("/dev/null", O_WRONLY);  // refusal logs stay out of the report
            dup2(null, 2);
            std::vector<char*> argv{const_cast<char*>(WSGUARD_RAW_EPOLL_PATH), const_cast<char*>("--port"), const_cast<char*>("0")};
            for (std::string& arg : args) argv.push_back(arg.data());
            argv.push_back(nullptr);
            execv(argv[0], argv.data());
            _exit(127);
        }
        close(out[1]);
        output = out[0];
        char line[64] = {};
        std::size_t used = 0;
        while (used + 1 < sizeof line && read(output, line + used, 1) == 1 && line[used] != '\n') ++used;
        unsigned value = 0;
        if (std::sscanf(line, "listening %u", &value) == 1) port = static_cast<unsigned short>(value);
    }
    ~child_server() { stop(); }

    // Stops the server (SIGTERM, then waits for it) and answers what it printed
    // after "listening" (raw_epoll --time-guard prints its total on exit).
    std::string stop() {
        std::string rest;
        if (pid > 0) {
            kill(pid, SIGTERM);
            int status = 0;
            waitpid(pid, &status, 0);
            pid = -1;
        }
        if (output >= 0) {
            char buffer[256];
            for (ssize_t n; (n = read(output, buffer, sizeof buffer)) > 0;) rest.append(buffer, static_cast<std::size_t>(n));
            close(output);
            output = -1;
        }
        return rest;
    }
    child_server(const child_server&) = delete;
    child_server& operator=(const child_server&) = delete;

    // CPU time the server (one thread) has run so far, in seconds, user and
    // kernel: /proc/<pid>/schedstat counts nanoseconds (stat's ticks are 10 ms).
    double cpu_seconds() const {
        char path[64];
        std::snprintf(path, sizeof path, "/proc/%d/schedstat", static_cast<int>(pid));
        FILE* f = std::fopen(path, "r");
        if (f == nullptr) return 0;
        unsigned long long ns = 0;
        const bool read = std::fscanf(f, "%llu", &ns) == 1;
        std::fclose(f);
        return read ? static_cast<double>(ns) / 1e9 : 0;
    }
};

// ---- A blocking loopback client ---------------------------------------------

// Connected socket from `from` (a loopback address) to 127.0.0.1:port, or -1.
int connect_from(const char* from, unsigned short port, int timeout_ms = 2000) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    const timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    const linger reset{1, 0};  // close with RST: no TIME_WAIT, tens of thousands of connections stay cheap
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
    sockaddr_in local{};
    local.sin_family = AF_INET;
    inet_pton(AF_INET, from, &local.sin_addr);
    sockaddr_in server{};
    server.sin_family = AF_INET;
    server.sin_port = htons(port);
    server.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0 ||
        connect(fd, reinterpret_cast<sockaddr*>(&server), sizeof server) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

bool send_all(int fd, const std::string& data) {
    for (std::size_t at = 0; at < data.size();) {
        const ssize_t n = send(fd, data.data() + at, data.size() - at, MSG_NOSIGNAL);
        if (n <= 0) return false;
        at += static_cast<std::size_t>(n);
    }
    return true;
}

// Reads until the end of the response head (or EOF with `to_eof`).
std::string read_response(int fd, bool to_eof) {
    std::string in;
    char buffer[4096];
    for (;;) {
        const ssize_t n = recv(fd, buffer, sizeof buffer, 0);
        if (n <= 0) break;
        in.append(buffer, static_cast<std::size_t>(n));
        if (!to_eof && in.find("\r\n\r\n") != std::string::npos) break;
    }
    return in;
}

std::string origin_of(unsigned short port) { return "http://127.0.0.1:" + std::to_string(port); }

// POST /ticket as the logged-in demo user; empty on failure.
std::string fetch_ticket(const char* from, unsigned short port) {
    const int fd = connect_from(from, port);
    if (fd < 0) return {};
    const std::string request = "POST /ticket HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) + "\r\nOrigin: " +
                                origin_of(port) + "\r\nAuthorization: Bearer demo-session\r\nContent-Type: application/json\r\n"
                                "X-Wsguard-Ticket: 1\r\n"  // mint_guard's marker: a page must preflight it cross-origin
                                ""
                                "Content-Length: 2\r\nConnection: close\r\n\r\n{}";
    std::string answer = send_all(fd, request) ? read_response(fd, true) : std::string();
    close(fd);
    const std::size_t at = answer.find("\"ticket\":\"");
    if (answer.compare(0, 12, "HTTP/1.1 200") != 0 || at == std::string::npos) return {};
    const std::size_t begin = at + 10, end = answer.find('"', begin);
    return end == std::string::npos ? std::string() : answer.substr(begin, end - begin);
}

std::string upgrade_request(unsigned short port, const std::string& ticket) {
    return "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) + "\r\nOrigin: " + origin_of(port) +
           "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: wsguard.v1, " + ticket + "\r\n\r\n";
}

// One complete upgrade; true on 101.
bool handshake(const char* from, unsigned short port, const std::string& ticket, int timeout_ms = 2000) {
    const int fd = connect_from(from, port, timeout_ms);
    if (fd < 0) return false;
    const bool upgraded = send_all(fd, upgrade_request(port, ticket)) && read_response(fd, false).compare(0, 12, "HTTP/1.1 101") == 0;
    close(fd);
    return upgraded;
}

// ---- Figures kept for the summary -------------------------------------------

std::map<std::string, double> figures;  // name -> value

std::vector<std::string> table_args(bool million) {
    std::vector<std::string> args{"--handshake-rate", "100000000", "--handshake-burst", "100000000",  // no 429 for one client
                                  "--max-connections", "100000",
                                  "--mint-burst", "1000000"};  // every ticket is minted before the timed loop
    if (million) args.insert(args.end(), {"--address-table", "1000000", "--replay-capacity", "1000000"});
    return args;
}

const char* tables_name(bool million) { return million ? "1M" : "default"; }

// ---- The server with the guard on and off -----------------------------------

// Server CPU per handshake, every round of each configuration: one server
// run's figure moves by tens of percent with what the client (on the same two
// cores) and the kernel do, so the summary takes medians of interleaved rounds.
std::map<std::string, std::vector<double>> server_cpu_us;
// Guarded runs: the check's time per handshake as the server measured it, and
// that over the same run's server CPU per handshake.
std::map<std::string, std::vector<double>> in_server_check_us, in_server_share;

double median(std::vector<double> v) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v.size() % 2 == 1 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

// range(0): the round (configurations alternate round by round).
void BM_server_handshakes(benchmark::State& state) {
    const bool million = state.range(1) != 0, guard = state.range(2) != 0;
    std::vector<std::string> args = table_args(million);
    args.insert(args.end(), {"--guard", guard ? "1" : "0", "--time-guard", guard ? "1" : "0"});
    child_server server(args);
    if (server.port == 0) return state.SkipWithError("raw_epoll did not start");
    // Every ticket first, so that the server's CPU over the timed loop is the handshakes' alone.
    std::vector<std::string> tickets;
    for (std::int64_t i = 0; i < static_cast<std::int64_t>(state.max_iterations) * batch; ++i)
        tickets.push_back(fetch_ticket("127.0.0.1", server.port));
    std::size_t next = 0;
    const double cpu_before = server.cpu_seconds();
    for (auto _ : state) {
        for (int i = 0; i < batch; ++i) {
            if (!handshake("127.0.0.1", server.port, tickets[next++])) return state.SkipWithError("a handshake was refused");
        }
    }
    const double cpu = server.cpu_seconds() - cpu_before;
    const auto done = static_cast<std::int64_t>(next);
    state.SetItemsProcessed(done);
    const double cpu_us = cpu / static_cast<double>(done) * 1e6;
    state.counters["server_cpu_us_per_handshake"] = cpu_us;
    server_cpu_us[std::string(tables_name(million)) + (guard ? "/on" : "/off")].push_back(cpu_us);
    if (!guard) return;
    // The guard's share inside this very run: the server timed its own checks.
    unsigned long long check_ns = 0, checks = 0;
    const std::string report = server.stop();
    const std::size_t at = report.find("guard_check_ns ");
    if (at == std::string::npos || std::sscanf(report.c_str() + at, "guard_check_ns %llu checks %llu", &check_ns, &checks) != 2 ||
        checks == 0)
        return state.SkipWithError("raw_epoll printed no guard timing");
    const double check_us = static_cast<double>(check_ns) / static_cast<double>(checks) / 1000.0;
    state.counters["guard_check_us_in_server"] = check_us;
    in_server_share[tables_name(million)].push_back(check_us / cpu_us);
    in_server_check_us[tables_name(million)].push_back(check_us);
}
BENCHMARK(BM_server_handshakes)->ArgsProduct({{0, 1, 2, 3, 4}, {0, 1}, {0, 1}})->ArgNames({"round", "tables_1M", "guard"})
    ->Iterations(16)->UseRealTime()->Unit(benchmark::kMicrosecond);

// ---- The guard's check alone, in process ------------------------------------

// The example's guard (example::handshake_config) with rate and connection
// caps no benchmark reaches, its tickets, and the request fields of port 8080.
struct guard_in_process {
    static constexpr unsigned short port = 8080;
    const std::string origin = origin_of(port), host = "127.0.0.1:" + std::to_string(port);
    std::unique_ptr<example::tickets> tickets;
    std::optional<wsguard::handshake_guard> guard;

    // `million`: 1,000,000-entry address tables and replay store, else the defaults.
    explicit guard_in_process(bool million) {
        example::options opts;
        opts.handshake_rate = 100000000;
        opts.handshake_burst = 100000000;
        opts.max_connections = 100000;
        opts.address_table_capacity = million ? 1000000 : opts.address_table_capacity;
        tickets = example::tickets::create(million ? 1000000 : 100000);
        if (!tickets) return;
        auto created = wsguard::handshake_guard::create(example::handshake_config(port, opts, "wsguard-example/ws", *tickets->verifier));
        if (created) guard.emplace(std::move(created).value());
    }

    // A batch of fresh Sec-WebSocket-Protocol values, each with its own ticket.
    void fresh_protocols(std::vector<std::string>& out) const {
        out.clear();
        for (int i = 0; i < batch; ++i)
            out.push_back("wsguard.v1, " + tickets->issuer->issue({"demo-user", origin, "wsguard-example/ws", "", {}}).ticket);
    }
};

void BM_guard_check(benchmark::State& state) {
    guard_in_process g(state.range(0) != 0);
    if (!g.guard) return state.SkipWithError("configuration refused");
    wsguard_bench::synthetic_clients clients(1000000);  // one of a million addresses per check
    std::vector<std::string> protocols;
    std::int64_t done = 0;
    for (auto _ : state) {
        state.PauseTiming();
        g.fresh_protocols(protocols);
        state.ResumeTiming();
        for (const std::string& protocol : protocols) {
            const wsguard::upgrade_request up = clients.next(g.origin, g.host, protocol);
            const wsguard::handshake_outcome outcome = g.guard->check(up);
            if (!outcome) return state.SkipWithError(wsguard::to_string(outcome.decision.reason));
        }
        done += batch;
    }
    state.SetItemsProcessed(done);
    // recording_reporter keeps the CPU time per check for the summary.
}
BENCHMARK(BM_guard_check)->Arg(0)->Arg(1)->ArgName("tables_1M")->Iterations(200)->Unit(benchmark::kMicrosecond);

// The same check after what a server does between two checks, timed per check
// with the steady clock as raw_epoll's --time-guard does (manual time):
// between:0 nothing; between:1 one system call (a 64-byte write and read on a
// socketpair: a kernel entry, as the server's epoll_wait and recv are);
// between:2 one byte read on each of 4,096 pages (16 MiB apart by 4 KiB: the
// TLB swept, only 256 KiB of cache lines touched). One client address, as in
// BM_server_handshakes. On a kernel with PTI and no PCID, between:1 empties
// the TLB as between:2 does (docs/performance.md).
void BM_guard_check_cold(benchmark::State& state) {
    guard_in_process g(state.range(0) != 0);
    if (!g.guard) return state.SkipWithError("configuration refused");
    const int between = static_cast<int>(state.range(1));
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) != 0) return state.SkipWithError("socketpair failed");
    constexpr std::size_t page = 4096, pages = 4096;
    std::vector<unsigned char> sweep(between == 2 ? page * pages : 0, 1);
    unsigned sink = 0;
    wsguard_bench::synthetic_clients one_client(1);
    std::vector<std::string> protocols;
    std::int64_t done = 0;
    for (auto _ : state) {
        g.fresh_protocols(protocols);
        std::chrono::nanoseconds inside{0};
        for (const std::string& protocol : protocols) {
            char bytes[64] = {};
            if (between == 1 && (write(pair[0], bytes, sizeof bytes) != 64 || read(pair[1], bytes, sizeof bytes) != 64))
                return state.SkipWithError("socketpair write/read failed");
            for (std::size_t i = 0; i < sweep.size(); i += page) sink += sweep[i];
            const wsguard::upgrade_request up = one_client.next(g.origin, g.host, protocol);
            const auto start = std::chrono::steady_clock::now();
            const wsguard::handshake_outcome outcome = g.guard->check(up);
            inside += std::chrono::steady_clock::now() - start;
            if (!outcome) return state.SkipWithError(wsguard::to_string(outcome.decision.reason));
        }
        state.SetIterationTime(std::chrono::duration<double>(inside).count());
        done += batch;
    }
    benchmark::DoNotOptimize(sink);
    close(pair[0]);
    close(pair[1]);
    state.SetItemsProcessed(done);
}
BENCHMARK(BM_guard_check_cold)->ArgsProduct({{0, 1}, {0, 1, 2}})->ArgNames({"tables_1M", "between"})
    ->Iterations(40)->UseManualTime()->Unit(benchmark::kMicrosecond);

// ---- The victim while an attacker floods ------------------------------------

// The attacker: keeps 600 idle sockets open (reopening those the server
// closes) and sends forged handshakes on another thread, until `stop`;
// counts its attempts to open an idle socket in `attempts`.
void attack(unsigned short port, std::atomic<bool>& stop, std::atomic<int>& attempts) {
    std::thread forger([port, &stop] {
        const std::string forged = upgrade_request(port, std::string(160, 'A'));
        while (!stop) {
            const int fd = connect_from(attacker_address, port, 500);
            if (fd < 0) continue;
            if (send_all(fd, forged)) read_response(fd, false);
            close(fd);
        }
    });
    std::vector<pollfd> idle;
    while (!stop) {
        while (idle.size() < 600 && !stop) {
            const int fd = connect_from(attacker_address, port, 500);
            ++attempts;
            if (fd >= 0) idle.push_back({fd, POLLIN, 0});
        }
        poll(idle.data(), idle.size(), 20);
        for (std::size_t i = 0; i < idle.size();) {
            if (idle[i].revents != 0) {  // closed by the server (or data): reopen it
                close(idle[i].fd);
                idle[i] = idle.back();
                idle.pop_back();
            } else {
                ++i;
            }
        }
    }
    for (const pollfd& p : idle) close(p.fd);
    forger.join();
}

// range(0): 0 no attacker, 1 attacker against the gate, 2 attacker without the gate.
void BM_victim_under_flood(benchmark::State& state) {
    const int mode = static_cast<int>(state.range(0));
    std::vector<std::string> args = table_args(false);
    if (mode == 2) args.insert(args.end(), {"--max-pending-per-address", "0"});
    child_server server(args);
    if (server.port == 0) return state.SkipWithError("raw_epoll did not start");
    std::vector<std::string> tickets;
    for (int i = 0; i < 5000; ++i) tickets.push_back(fetch_ticket(victim_address, server.port));
    std::atomic<bool> stop{false};
    std::atomic<int> attempts{0};
    std::thread attacker;
    if (mode != 0) {
        attacker = std::thread(attack, server.port, std::ref(stop), std::ref(attempts));
        // The victim starts once the attacker has tried all 600 idle sockets (at most 5 s).
        for (int waited = 0; attempts < 700 && waited < 500; ++waited) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    std::int64_t ok = 0, tried = 0;
    double seconds = 0;
    for (auto _ : state) {
        const auto start = std::chrono::steady_clock::now();
        while (std::chrono::steady_clock::now() - start < std::chrono::seconds(1) && tried < static_cast<std::int64_t>(tickets.size())) {
            ok += handshake(victim_address, server.port, tickets[static_cast<std::size_t>(tried)], 200) ? 1 : 0;
            ++tried;
        }
        seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
    stop = true;
    if (attacker.joinable()) attacker.join();
    state.counters["victim_handshakes_per_s"] = static_cast<double>(ok) / seconds;
    state.counters["victim_success_pct"] = tried == 0 ? 0 : 100.0 * static_cast<double>(ok) / static_cast<double>(tried);
    figures["victim_rate/" + std::to_string(mode)] = static_cast<double>(ok) / seconds;
    figures["victim_success/" + std::to_string(mode)] = state.counters["victim_success_pct"];
}
BENCHMARK(BM_victim_under_flood)->Arg(0)->Arg(1)->Arg(2)->ArgName("attack")->Iterations(1)->UseRealTime()->Unit(benchmark::kMillisecond);

// Keeps the CPU time per check of BM_guard_check for the summary.
class recording_reporter : public benchmark::ConsoleReporter {
public:
    void ReportRuns(const std::vector<Run>& runs) override {
        for (const Run& run : runs) {
            const std::string name = run.benchmark_name();
            if (name.rfind("BM_guard_check/", 0) == 0 && run.iterations > 0) {
                const double us = run.GetAdjustedCPUTime() / batch;  // the unit is microseconds
                figures[std::string("check_us/") + (name.find("tables_1M:1") != std::string::npos ? "1M" : "default")] = us;
            }
        }
        ConsoleReporter::ReportRuns(runs);
    }
};

}  // namespace

int main(int argc, char** argv) {
    rlimit files{};  // 600 attacker sockets, 512 on the server's side, the victim's
    if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < 4096) {
        files.rlim_cur = files.rlim_max < 4096 ? files.rlim_max : 4096;
        setrlimit(RLIMIT_NOFILE, &files);
    }
    signal(SIGPIPE, SIG_IGN);
    benchmark::Initialize(&argc, argv);
    recording_reporter reporter;
    benchmark::RunSpecifiedBenchmarks(&reporter);
    benchmark::Shutdown();

    std::printf("\nSummary (server CPU per complete ticketed handshake, raw_epoll on loopback; medians of %zu rounds)\n",
                server_cpu_us["default/on"].size());
    for (const char* tables : {"default", "1M"}) {
        const std::vector<double>& runs = server_cpu_us[std::string(tables) + "/on"];
        const double on = median(runs);
        const double off = median(server_cpu_us[std::string(tables) + "/off"]);
        const double check = figures[std::string("check_us/") + tables];
        if (on <= 0 || off <= 0) continue;
        std::printf("  %-7s tables: guard on %.1f us (rounds %.1f-%.1f), off %.1f us (on/off %.3fx); guard check alone "
                    "%.2f us = %.1f%% of a guarded handshake (goal: under 3%%)\n",
                    tables, on, *std::min_element(runs.begin(), runs.end()), *std::max_element(runs.begin(), runs.end()),
                    off, on / off, check, 100.0 * check / on);
        const std::vector<double>& shares = in_server_share[tables];
        if (!shares.empty())
            std::printf("  %-7s tables: inside the server, the check took %.2f us of each handshake: %.1f%% of its CPU "
                        "(rounds %.1f-%.1f%%; goal: under 3%%)\n",
                        tables, median(in_server_check_us[tables]), 100.0 * median(shares),
                        100.0 * *std::min_element(shares.begin(), shares.end()),
                        100.0 * *std::max_element(shares.begin(), shares.end()));
    }
    const double idle = figures["victim_rate/0"];
    if (idle > 0) {
        std::printf("  victim handshakes/s: %.0f with no attacker; under the flood %.0f with the accept_gate (%.2fx, %.0f%% "
                    "succeeded), %.0f without it (%.2fx, %.0f%% succeeded)\n",
                    idle, figures["victim_rate/1"], figures["victim_rate/1"] / idle, figures["victim_success/1"],
                    figures["victim_rate/2"], figures["victim_rate/2"] / idle, figures["victim_success/2"]);
    }
    return 0;
}
