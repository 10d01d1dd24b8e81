// The demo's wsguard configuration and its two small HTTP endpoints that are
// not the socket: POST /ticket and GET /metrics. Transport-free; main.cpp has Beast.
#pragma once

#include <wsguard.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace demo {

struct options {
    unsigned short port = 0;                     // 0: any free port
    std::vector<std::string> extra_origins;      // besides the demo's own origins
    std::size_t max_message_bytes = 64 * 1024;   // Beast's read_message_max: 1009 above it
    std::uint64_t message_rate = 20;             // messages per second per connection...
    std::uint32_t message_burst = 40;            // ...with this burst; 1008 beyond
    std::uint64_t handshake_rate = 5;            // upgrade attempts per second per address...
    std::uint32_t handshake_burst = 20;          // ...with this burst; 429 beyond
    std::uint32_t max_connections = 16;          // open sockets per address; 429 beyond
};

inline void print_usage() {
    std::fputs("usage: wsguard_beast_demo [--port N] [--allow-origin ORIGIN]... [--max-message BYTES]\n"
               "       [--message-rate PER_SECOND] [--message-burst N] [--handshake-rate PER_SECOND]\n"
               "       [--handshake-burst N] [--max-connections PER_ADDRESS]\n"
               "  http://127.0.0.1:PORT and http://localhost:PORT (the demo page) are always allowed.\n",
               stderr);
}

inline std::optional<options> parse_options(int argc, char** argv) {
    options parsed;
    for (int i = 1; i < argc; ++i) {
        const std::string_view flag = argv[i];
        if (flag == "--help" || flag == "-h" || i + 1 >= argc) {
            print_usage();
            return std::nullopt;
        }
        const char* value = argv[++i];
        char* end = nullptr;
        const double number = std::strtod(value, &end);
        const bool numeric = end != value && *end == '\0' && number >= 0 && number <= 1e9;
        if (flag == "--allow-origin") parsed.extra_origins.emplace_back(value);
        else if (!numeric) { std::fprintf(stderr, "%s needs a number, got '%s'\n", argv[i - 1], value); return std::nullopt; }
        else if (flag == "--port" && number <= 65535) parsed.port = static_cast<unsigned short>(number);
        else if (flag == "--max-message" && number >= 1) parsed.max_message_bytes = static_cast<std::size_t>(number);
        else if (flag == "--message-rate") parsed.message_rate = static_cast<std::uint64_t>(number);
        else if (flag == "--message-burst") parsed.message_burst = static_cast<std::uint32_t>(number);
        else if (flag == "--handshake-rate") parsed.handshake_rate = static_cast<std::uint64_t>(number);
        else if (flag == "--handshake-burst") parsed.handshake_burst = static_cast<std::uint32_t>(number);
        else if (flag == "--max-connections") parsed.max_connections = static_cast<std::uint32_t>(number);
        else { std::fprintf(stderr, "bad option %s %s\n", argv[i - 1], value); print_usage(); return std::nullopt; }
    }
    return parsed;
}

struct ticket_answer {
    int http_status;
    std::string body;
};

// Everything the server shares between connections. Built once on the heap and
// never moved: the verifier points at the replay store, the guard at the verifier.
class app {
public:
    // Validates the whole configuration once; prints the error and returns null.
    static std::unique_ptr<app> create(const demo::options& opts) {
        auto made = std::unique_ptr<app>(new app());
        made->options = opts;
        const std::string port = std::to_string(opts.port);
        std::vector<std::string> origins{"http://127.0.0.1:" + port, "http://localhost:" + port};
        origins.insert(origins.end(), opts.extra_origins.begin(), opts.extra_origins.end());

        // A fresh HMAC key per run: tickets are short-lived, so a restart only
        // costs the clients that were about to connect a new POST /ticket.
        std::uint8_t secret[32];
        std::uint8_t session[16];
        if (wsguard::random_bytes(secret, sizeof secret) != wsguard::reason::ok ||
            wsguard::random_bytes(session, sizeof session) != wsguard::reason::ok)
            return fail("the operating system gave no random bytes");
        static const char hex[] = "0123456789abcdef";
        for (std::uint8_t byte : session) made->session_ += {hex[byte >> 4], hex[byte & 15]};
        auto keys = wsguard::keyring::create(1, {{1, std::string_view(reinterpret_cast<const char*>(secret), sizeof secret), {}}});
        if (!keys) return fail(keys.error());

        auto store = wsguard::memory_replay_store::create(65536);
        if (!store) return fail(store.error());
        made->replay_store_.emplace(std::move(store).value());
        auto verifier = wsguard::ticket_verifier<>::create(*keys, *made->replay_store_);
        if (!verifier) return fail(verifier.error());
        made->verifier_.emplace(std::move(verifier).value());
        auto issuer = wsguard::ticket_issuer::create(*keys);
        if (!issuer) return fail(issuer.error());
        made->issuer_.emplace(std::move(issuer).value());
        auto ticket_origins = wsguard::origin_policy::create(origins);
        if (!ticket_origins) return fail(ticket_origins.error());
        made->ticket_origins_.emplace(std::move(ticket_origins).value());
        auto probe = wsguard::token_bucket::create(opts.message_rate, opts.message_burst);
        if (!probe) return fail("--message-rate/--message-burst: " + probe.error());

        wsguard::handshake_config config;
        wsguard::route_config route;
        route.path = "/ws";
        route.origins = origins;
        route.hosts = {"127.0.0.1:" + port, "localhost:" + port};  // DNS rebinding
        route.audience = audience;
        config.routes.push_back(route);
        config.verifier = &*made->verifier_;
        config.handshakes_per_second = opts.handshake_rate;
        config.handshake_burst = opts.handshake_burst;
        config.max_connections_per_address = opts.max_connections;
        config.on_refusal = [](const wsguard::refusal_event& event) {  // rate-limited by the guard
            std::fprintf(stderr, "refused %s route=%.*s origin=%.*s address=%.*s\n", wsguard::to_string(event.reason),
                         int(event.route.size()), event.route.data(), int(event.origin.size()), event.origin.data(),
                         int(event.address.size()), event.address.data());
        };
        auto guard = wsguard::handshake_guard::create(std::move(config));
        if (!guard) return fail(guard.error());
        made->guard_.emplace(std::move(guard).value());
        return made;
    }

    demo::options options;

    wsguard::handshake_guard& guard() noexcept { return *guard_; }

    // The demo's stand-in for a login: GET / hands out this cookie.
    std::string session_cookie() const {
        return std::string(cookie_name) + "=" + session_ + "; Path=/; HttpOnly; SameSite=Strict";
    }

    // POST /ticket: a logged-in caller gets a one-time ticket bound to the
    // Origin it asked from (if that origin may use the socket) and to /ws.
    ticket_answer issue_ticket(std::string_view cookie_header, std::string_view origin) const {
        const std::string_view presented = cookie_value(cookie_header);
        const bool logged_in = presented.size() == session_.size() &&  // constant-time: a secret
            wsguard::constant_time_equal(reinterpret_cast<const std::uint8_t*>(presented.data()),
                                         reinterpret_cast<const std::uint8_t*>(session_.data()), session_.size());
        if (!logged_in) return {401, "login required\n"};
        if (!ticket_origins_->check(origin)) return {403, "origin not allowed\n"};
        wsguard::ticket_request request;
        request.subject = "demo-user";
        request.origin = origin;
        request.audience = audience;
        const wsguard::issued_ticket issued = issuer_->issue(request);
        if (!issued) return {issued.status.http_status(), std::string(wsguard::to_string(issued.status.reason)) + "\n"};
        return {200, "{\"ticket\":\"" + issued.ticket + "\"}\n"};
    }

    // One per connection; the configuration was validated in create().
    wsguard::token_bucket new_message_bucket() const {
        return wsguard::token_bucket::create(options.message_rate, options.message_burst).value();
    }

    // Refusals after the 101 (the guard counts those before it).
    void count_refusal(wsguard::reason why) { ++after_upgrade_[why]; }

    // GET /metrics: one line per reason seen, e.g. wsguard_refusals{reason="origin_null"} 2
    std::string metrics() const {
        std::map<wsguard::reason, std::uint64_t> counts = after_upgrade_;
        for (wsguard::reason r : wsguard::all_reasons) counts[r] += guard_->count(r);
        std::string text;
        for (const auto& [why, count] : counts) {
            if (count == 0) continue;
            text += why == wsguard::reason::ok ? "wsguard_upgrades" : "wsguard_refusals{reason=\"" + std::string(wsguard::to_string(why)) + "\"}";
            text += " " + std::to_string(count) + "\n";
        }
        return text;
    }

private:
    static constexpr const char* cookie_name = "wsguard_demo_session";
    static constexpr const char* audience = "wsguard-demo/ws";

    app() = default;

    static std::unique_ptr<app> fail(const std::string& why) {
        std::fprintf(stderr, "wsguard_beast_demo: %s\n", why.c_str());
        return nullptr;
    }

    static std::string_view cookie_value(std::string_view header) {
        const std::string prefix = std::string(cookie_name) + "=";
        for (std::size_t at = 0; at < header.size();) {
            const std::size_t end = std::min(header.find(';', at), header.size());
            std::string_view pair = header.substr(at, end - at);
            while (!pair.empty() && pair.front() == ' ') pair.remove_prefix(1);
            if (pair.substr(0, prefix.size()) == prefix) return pair.substr(prefix.size());
            at = end + 1;
        }
        return {};
    }

    std::string session_;
    std::optional<wsguard::memory_replay_store> replay_store_;
    std::optional<wsguard::ticket_verifier<>> verifier_;
    std::optional<wsguard::ticket_issuer> issuer_;
    std::optional<wsguard::origin_policy> ticket_origins_;
    std::optional<wsguard::handshake_guard> guard_;
    std::map<wsguard::reason, std::uint64_t> after_upgrade_;
};

}  // namespace demo
