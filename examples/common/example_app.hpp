// What every example server shares and that has nothing to do with its
// WebSocket stack: the command line, the ticket machinery, the guard's
// configuration and the refusal log. Each example's main.cpp keeps the part
// worth reading: how wsguard plugs into that stack's upgrade hook.
#pragma once

#include <wsguard.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace example {

// Every flag any example takes; each example reads the ones its usage names.
struct options {
    unsigned short port = 0;                       // 0: any free port
    std::vector<std::string> extra_origins;        // besides http://127.0.0.1:PORT and http://localhost:PORT
    std::uint64_t max_message_bytes = 64 * 1024;   // the stack's message cap
    std::uint64_t max_inflated_bytes = 256 * 1024; // raw_epoll: inflate_budget
    std::string session = "demo-session";          // stands in for the application's login
    std::uint64_t message_rate = 20;               // messages per second per socket...
    std::uint32_t message_burst = 40;              // ...with this burst; 1008 beyond
    // The guard's own defaults, so an example without these flags keeps them.
    std::uint64_t handshake_rate = wsguard::handshake_config{}.handshakes_per_second;  // per address...
    std::uint32_t handshake_burst = wsguard::handshake_config{}.handshake_burst;       // ...429 beyond
    std::uint32_t max_connections = wsguard::handshake_config{}.max_connections_per_address;
    // Admission at accept (accept_gate), before any HTTP byte: handshakes still
    // pending per address and in total, and the time from accept to a complete
    // upgrade. max_pending_per_address 0 turns the gate off (benchmarks compare).
    std::uint32_t max_pending_per_address = 64;
    std::uint32_t max_pending_total = 384;
    std::uint64_t handshake_deadline_ms = 10000;
    // Table sizes (benchmarks size them for a million clients).
    std::size_t address_table_capacity = wsguard::handshake_config{}.address_table_capacity;
    std::size_t replay_capacity = 100000;
    // The ticket endpoint's burst per address and per subject (mint_guard); a
    // benchmark that mints thousands of tickets up front raises it.
    std::uint32_t mint_burst = 200;
    bool guard = true;  // raw_epoll --guard 0: no wsguard check at all (the benchmark's baseline)
    // raw_epoll --time-guard 1: time every guard check and print the total on exit
    // ("guard_check_ns <total> checks <count>"), so a benchmark can divide it by
    // the server's own CPU: the guard's share measured inside one run.
    bool time_guard = false;
    // Behind a proxy (docs/behind-a-proxy.md): the Host values clients reach the
    // proxy by, the proxies whose Forwarded / X-Forwarded-For entries (or PROXY
    // header) are believed, and raw_epoll's --proxy-protocol.
    std::vector<std::string> extra_hosts;      // besides 127.0.0.1:PORT and localhost:PORT
    std::vector<std::string> trusted_proxies;  // addresses or CIDR blocks; empty: no proxy is trusted
    bool proxy_protocol = false;               // raw_epoll: trusted peers must open with a PROXY header
};

// Parses "--flag value" pairs into `parsed` (the example's defaults). `usage` is its usage
// text and doubles as its list of flags: a flag it does not name is refused,
// so the text a user reads is exactly what the program takes. On a bad
// command line prints why and the usage, and returns nothing (exit 2).
inline std::optional<options> parse_options(int argc, char** argv, const char* usage, options parsed = {}) {
    const auto refuse = [usage](const char* why, std::string_view what) {
        if (why != nullptr) std::fprintf(stderr, "%s %.*s\n", why, static_cast<int>(what.size()), what.data());
        std::fputs(usage, stderr);
        return std::nullopt;
    };
    const std::string_view listed = usage;
    for (int i = 1; i < argc; i += 2) {
        const std::string_view flag = argv[i];
        // Proxy flags (issue 10); --proxy-protocol is the one flag without a value.
        if (flag == "--proxy-protocol" && listed.find("[--proxy-protocol]") != std::string_view::npos) {
            parsed.proxy_protocol = true;
            --i;
            continue;
        }
        if (i + 1 < argc && flag == "--allow-host" && listed.find("--allow-host ") != std::string_view::npos) {
            parsed.extra_hosts.emplace_back(argv[i + 1]);
            continue;
        }
        if (i + 1 < argc && flag == "--trusted-proxy" && listed.find("--trusted-proxy ") != std::string_view::npos) {
            parsed.trusted_proxies.emplace_back(argv[i + 1]);
            continue;
        }
        if (flag.substr(0, 2) != "--" || listed.find(std::string(flag) + " ") == std::string_view::npos)
            return refuse(flag == "--help" || flag == "-h" ? nullptr : "unknown option", flag);
        if (i + 1 >= argc) return refuse("missing value for", flag);
        const char* value = argv[i + 1];
        if (flag == "--allow-origin") { parsed.extra_origins.emplace_back(value); continue; }
        if (flag == "--session") { parsed.session = value; continue; }
        char* end = nullptr;
        const unsigned long long number = std::strtoull(value, &end, 10);
        if (end == value || *end != '\0' || value[0] == '-' || number > 1000000000)
            return refuse("needs a number up to 1e9:", flag);
        if (flag == "--port" && number <= 65535) parsed.port = static_cast<unsigned short>(number);
        else if (flag == "--max-message" && number >= 1) parsed.max_message_bytes = number;
        else if (flag == "--max-inflated" && number >= 1) parsed.max_inflated_bytes = number;
        else if (flag == "--message-rate") parsed.message_rate = number;
        else if (flag == "--message-burst") parsed.message_burst = static_cast<std::uint32_t>(number);
        else if (flag == "--handshake-rate") parsed.handshake_rate = number;
        else if (flag == "--handshake-burst") parsed.handshake_burst = static_cast<std::uint32_t>(number);
        else if (flag == "--max-connections") parsed.max_connections = static_cast<std::uint32_t>(number);
        else if (flag == "--max-pending-per-address") parsed.max_pending_per_address = static_cast<std::uint32_t>(number);
        else if (flag == "--max-pending-total" && number >= 1) parsed.max_pending_total = static_cast<std::uint32_t>(number);
        else if (flag == "--handshake-deadline-ms" && number >= 1) parsed.handshake_deadline_ms = number;
        else if (flag == "--address-table" && number >= 1) parsed.address_table_capacity = number;
        else if (flag == "--replay-capacity" && number >= 1) parsed.replay_capacity = number;
        else if (flag == "--mint-burst" && number >= 1) parsed.mint_burst = static_cast<std::uint32_t>(number);
        else if (flag == "--guard" && number <= 1) parsed.guard = number == 1;
        else if (flag == "--time-guard" && number <= 1) parsed.time_guard = number == 1;
        else return refuse("out of range:", flag);
    }
    // Proxy settings are validated here, once, so handshake_config() can build them without an error path.
    if (!parsed.trusted_proxies.empty()) {
        if (auto proxies = wsguard::trusted_proxies::create(parsed.trusted_proxies); !proxies)
            return refuse("--trusted-proxy:", proxies.error());
    }
    if (parsed.proxy_protocol && parsed.trusted_proxies.empty())
        return refuse("--proxy-protocol needs --trusted-proxy: only a trusted peer may send a PROXY header", "");
    return parsed;
}

// The keys, replay store, verifier and issuer, in one heap object that never
// moves: the verifier points at the store, and a guard will point at the verifier.
struct tickets {
    std::optional<wsguard::memory_replay_store> store;
    std::optional<wsguard::ticket_verifier<>> verifier;
    std::optional<wsguard::ticket_issuer> issuer;

    // A fresh random key per process: a real deployment loads it from its
    // secret store and shares it between the issuer and every server. On
    // failure prints why and returns null.
    static std::unique_ptr<tickets> create(std::size_t replay_capacity) {
        const auto fail = [](const std::string& why) {
            std::fprintf(stderr, "tickets: %s\n", why.c_str());
            return nullptr;
        };
        std::uint8_t secret[32];
        if (wsguard::random_bytes(secret, sizeof secret) != wsguard::reason::ok) return fail("the operating system gave no random bytes");
        auto keys = wsguard::keyring::create(1, {{1, std::string_view(reinterpret_cast<const char*>(secret), sizeof secret), {}}});
        wsguard::secure_wipe(secret, sizeof secret);  // the keyring keeps only what it derived from it
        if (!keys) return fail(keys.error());
        auto store = wsguard::memory_replay_store::create(replay_capacity);
        if (!store) return fail(store.error());
        auto made = std::make_unique<tickets>();
        made->store.emplace(std::move(store).value());
        // The issuer below runs in this process, on this clock: no ticket is
        // issued ahead of it, so no clock_skew, and none of the window after a
        // start in which a store refuses tickets a skewed issuer may have
        // issued before it (ticket_verifier_options::clock_skew).
        wsguard::ticket_verifier_options verifier_options;
        verifier_options.clock_skew = std::chrono::seconds{0};
        auto verifier = wsguard::ticket_verifier<>::create(*keys, *made->store, verifier_options);
        if (!verifier) return fail(verifier.error());
        made->verifier.emplace(std::move(verifier).value());
        auto issuer = wsguard::ticket_issuer::create(*keys);
        if (!issuer) return fail(issuer.error());
        made->issuer.emplace(std::move(issuer).value());
        return made;
    }
};

// Hex of `bytes` random bytes (a demo session value); empty if the OS has none.
inline std::string random_hex(std::size_t bytes) {
    std::vector<std::uint8_t> raw(bytes);
    if (wsguard::random_bytes(raw.data(), raw.size()) != wsguard::reason::ok) return {};
    std::string text;
    for (std::uint8_t byte : raw) text += {"0123456789abcdef"[byte >> 4], "0123456789abcdef"[byte & 15]};
    wsguard::secure_wipe(raw.data(), raw.size());  // only the hex copy lives on
    return text;
}

// The pages a browser may open the socket from. They name the bound port, so
// they are known only once the server listens (--port 0 picks a free one).
inline std::vector<std::string> allowed_origins(unsigned short port, const options& opts) {
    const std::string p = std::to_string(port);
    std::vector<std::string> origins{"http://127.0.0.1:" + p, "http://localhost:" + p};
    origins.insert(origins.end(), opts.extra_origins.begin(), opts.extra_origins.end());
    return origins;
}

// "refused <reason> origin=... address=..." on stderr (the guard rate-limits these calls).
inline void log_refusal(const wsguard::refusal_event& e) {
    std::fprintf(stderr, "refused %s origin=%.*s address=%.*s\n", wsguard::to_string(e.decision.reason),
                 static_cast<int>(e.origin.size()), e.origin.data(), static_cast<int>(e.address.size()), e.address.data());
}

// One guarded route, /ws, for the bound port: Origin and Host allowlists
// (Host against DNS rebinding), tickets for `audience`, the per-address rates
// and cap from the options, refusals logged by log_refusal.
inline wsguard::handshake_config handshake_config(unsigned short port, const options& opts, const char* audience,
                                                  const wsguard::ticket_verifier<>& verifier) {
    const std::string p = std::to_string(port);
    wsguard::route_config route;
    route.path = "/ws";
    route.origins = allowed_origins(port, opts);
    route.hosts = {"127.0.0.1:" + p, "localhost:" + p};
    route.hosts.insert(route.hosts.end(), opts.extra_hosts.begin(), opts.extra_hosts.end());  // --allow-host
    route.audience = audience;
    wsguard::handshake_config config;
    config.routes.push_back(route);
    config.verifier = &verifier;
    config.handshakes_per_second = opts.handshake_rate;
    config.handshake_burst = opts.handshake_burst;
    config.max_connections_per_address = opts.max_connections;
    config.address_table_capacity = opts.address_table_capacity;
    config.on_refusal = log_refusal;
    // --trusted-proxy: the per-address limits and refusal reports use the client
    // these proxies report (rightmost-trusted), never the proxy itself.
    if (!opts.trusted_proxies.empty()) config.trusted_proxies = wsguard::trusted_proxies::create(opts.trusted_proxies).value();
    return config;
}

// The ticket endpoint every example serves: POST /ticket and its CORS
// preflight, OPTIONS /ticket. mint_guard decides (Origin, Sec-Fetch-Site,
// POST, the X-Wsguard-Ticket marker, per-address and per-subject rates), then
// the issuer binds the ticket to the caller's Origin and to `audience`.
// A page fetches one with:
//   fetch("/ticket", { method: "POST", credentials: "include", headers: { "X-Wsguard-Ticket": "1" } })
// and a page on another allowed origin (--allow-origin) with the full URL: the
// browser preflights it, and only the allowed origins get an answer.
struct http_answer {
    int status = 200;
    std::string content_type = "text/plain; charset=utf-8";
    std::vector<std::pair<std::string, std::string>> headers;  // CORS, Vary, Allow, Retry-After
    std::string body;
    wsguard::reason reason = wsguard::reason::ok;  // why it was refused, for the metrics
};

class ticket_endpoint {
public:
    static constexpr const char* path = "/ticket";
    // The header the page sends with the value "1"; the stack reads it into mint_request::marker.
    static constexpr const char* marker_header = "X-Wsguard-Ticket";

    // The allowed origins name the bound port. Prints why and returns null on a bad configuration.
    static std::unique_ptr<ticket_endpoint> create(unsigned short port, const options& opts,
                                                   const wsguard::ticket_issuer& issuer, std::string audience) {
        wsguard::mint_config config;
        config.origins = allowed_origins(port, opts);
        config.marker_header = marker_header;
        // Generous for a demo whose one user opens many sockets (and whose
        // tests mint hundreds of tickets from 127.0.0.1); a real application
        // sizes these for one user's pages.
        config.address_rate = wsguard::rate::per_second(50);
        config.address_burst = opts.mint_burst;
        config.subject_rate = wsguard::rate::per_second(20);
        config.subject_burst = opts.mint_burst;
        auto guard = wsguard::mint_guard::create(std::move(config));
        if (!guard) {
            std::fprintf(stderr, "ticket endpoint: %s\n", guard.error().c_str());
            return nullptr;
        }
        return std::unique_ptr<ticket_endpoint>(new ticket_endpoint(std::move(guard).value(), issuer, std::move(audience)));
    }

    // The whole answer to any request for /ticket. `request.subject` is who
    // the example authenticated (its session cookie or bearer token), empty
    // for nobody.
    http_answer answer(const wsguard::mint_request& request) {
        const bool preflight = request.method == "OPTIONS";
        const wsguard::mint_answer verdict = preflight ? guard_.preflight(request) : guard_.check(request);
        http_answer out;
        out.status = verdict.http_status();
        out.reason = verdict.decision.reason;
        for (const wsguard::http_header& h : verdict) out.headers.emplace_back(std::string(h.name), std::string(h.value));
        if (verdict.retry_after_seconds() > 0) out.headers.emplace_back("Retry-After", std::to_string(verdict.retry_after_seconds()));
        if (!verdict) {
            out.body = std::string(verdict.body()) + "\n";
            return out;
        }
        if (preflight) return out;  // 204, no body
        wsguard::ticket_request ticket;
        ticket.subject = request.subject;
        ticket.origin = request.origin;
        ticket.audience = audience_;
        const wsguard::issued_ticket issued = issuer_.issue(ticket);
        if (!issued) {
            out.status = issued.decision.http_status();
            out.reason = issued.decision.reason;
            out.body = std::string(wsguard::to_string(issued.decision.reason)) + "\n";
            return out;
        }
        out.content_type = "application/json";
        out.body = "{\"ticket\":\"" + issued.ticket + "\"}\n";
        return out;
    }

private:
    ticket_endpoint(wsguard::mint_guard guard, const wsguard::ticket_issuer& issuer, std::string audience)
        : guard_(std::move(guard)), issuer_(issuer), audience_(std::move(audience)) {}

    wsguard::mint_guard guard_;
    const wsguard::ticket_issuer& issuer_;
    std::string audience_;
};
// The accept_gate's limits from the options: pending handshakes per address
// and in total, and the deadline from accept to a complete upgrade request.
inline wsguard::accept_limits accept_limits(const options& opts) {
    wsguard::accept_limits limits;
    limits.max_pending_per_address = opts.max_pending_per_address;
    limits.max_pending_total = opts.max_pending_total;
    limits.handshake_deadline = std::chrono::milliseconds(opts.handshake_deadline_ms);
    return limits;
}

// The gate the example admits every accepted socket through, or nothing when
// --max-pending-per-address is 0 (the deadline alone still applies). On a bad
// configuration prints why and returns false.
inline bool make_accept_gate(const options& opts, std::optional<wsguard::accept_gate>& gate) {
    if (opts.max_pending_per_address == 0) return true;
    auto made = wsguard::accept_gate::create(accept_limits(opts));
    if (!made) {
        std::fprintf(stderr, "accept_gate: %s\n", made.error().c_str());
        return false;
    }
    gate.emplace(std::move(made).value());
    return true;
}

// One message budget per socket. The rates are the defaults or were checked at
// startup (token_bucket::create refuses a zero rate or burst). An empty bucket
// closes the socket with message_refusal: a bucket answers rate_limited, but
// per message it is a policy violation, 1008.
inline wsguard::token_bucket message_bucket(const options& opts) {
    return wsguard::token_bucket::create({wsguard::rate::per_second(opts.message_rate), opts.message_burst}).value();
}
inline constexpr wsguard::decision message_refusal{wsguard::reason::message_rate_limited};

}  // namespace example
