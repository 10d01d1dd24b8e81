// The demo's wsguard configuration and its two small HTTP endpoints that are
// not the socket: POST /ticket and GET /metrics. Transport-free; main.cpp has Beast.
#pragma once

#include "example_app.hpp"

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

using options = example::options;

inline constexpr const char* usage =
    "usage: wsguard_beast_demo [--port N] [--allow-origin ORIGIN]... [--max-message BYTES]\n"
    "       [--message-rate PER_SECOND] [--message-burst N] [--handshake-rate PER_SECOND]\n"
    "       [--handshake-burst N] [--max-connections PER_ADDRESS]\n"
    "       [--max-pending-per-address N] [--max-pending-total N] [--handshake-deadline-ms MS]\n"
    "       [--allow-host HOST[:PORT]]... [--trusted-proxy ADDRESS_OR_CIDR]...\n"
    "  http://127.0.0.1:PORT and http://localhost:PORT (the demo page) are always allowed.\n"
    "  A socket that has not upgraded within the deadline (10 s) is closed; an address with\n"
    "  64 sockets not yet upgraded (384 in all) has its next one closed at accept.\n"
    "  Behind a proxy: --allow-host names the Host the proxy passes on (with its port),\n"
    "  --trusted-proxy the proxy's address, so limits count each real client (docs/behind-a-proxy.md).\n";

// The shared parser with the demo's defaults: a browser page opens few
// sockets, so it gets a tighter per-address budget than the guard's default.
inline std::optional<options> parse_options(int argc, char** argv) {
    options defaults;
    defaults.handshake_rate = 5;    // upgrade attempts per second per address
    defaults.max_connections = 16;  // open sockets per address
    return example::parse_options(argc, argv, usage, defaults);
}

// Everything the server shares between connections. Built once on the heap and
// never moved: the verifier points at the replay store, the guard at the verifier.
class app {
public:
    // Validates the whole configuration once; prints the error and returns null.
    static std::unique_ptr<app> create(const demo::options& opts) {
        auto made = std::unique_ptr<app>(new app());
        made->options = opts;

        // A fresh HMAC key per run: tickets are short-lived, so a restart only
        // costs the clients that were about to connect a new POST /ticket.
        made->tickets_ = example::tickets::create(65536);
        if (!made->tickets_) return nullptr;
        made->session_ = example::random_hex(16);
        if (made->session_.empty()) return fail("the operating system gave no random bytes");
        made->ticket_endpoint_ = example::ticket_endpoint::create(opts.port, opts, *made->tickets_->issuer, audience);
        if (!made->ticket_endpoint_) return nullptr;
        auto probe = wsguard::token_bucket::create({wsguard::rate::per_second(opts.message_rate), opts.message_burst});
        if (!probe) return fail("--message-rate/--message-burst: " + probe.error());

        wsguard::handshake_config config = example::handshake_config(opts.port, opts, audience, *made->tickets_->verifier);
        config.on_refusal = [](const wsguard::refusal_event& event) {  // the shared log line plus the route
            std::fprintf(stderr, "refused %s route=%.*s origin=%.*s address=%.*s\n", wsguard::to_string(event.decision.reason),
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

    // POST /ticket and its preflight (OPTIONS /ticket): the shared endpoint,
    // with the session cookie as the login. A logged-in caller gets a one-time
    // ticket bound to its Origin and to /ws; refusals are counted for /metrics.
    example::http_answer ticket(wsguard::mint_request request, std::string_view cookie_header) {
        const std::string_view presented = cookie_value(cookie_header);
        const bool logged_in = presented.size() == session_.size() &&  // constant-time: a secret
            wsguard::constant_time_equal(reinterpret_cast<const std::uint8_t*>(presented.data()),
                                         reinterpret_cast<const std::uint8_t*>(session_.data()), session_.size());
        request.subject = logged_in ? "demo-user" : "";
        example::http_answer answer = ticket_endpoint_->answer(request);
        if (answer.reason != wsguard::reason::ok) count_refusal(answer.reason);
        return answer;
    }

    // One per connection; the configuration was validated in create().
    wsguard::token_bucket new_message_bucket() const {
        return example::message_bucket(options);
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
    std::unique_ptr<example::tickets> tickets_;  // before guard_, which points into it
    std::unique_ptr<example::ticket_endpoint> ticket_endpoint_;  // points at tickets_' issuer
    std::optional<wsguard::handshake_guard> guard_;
    std::map<wsguard::reason, std::uint64_t> after_upgrade_;
};

}  // namespace demo
