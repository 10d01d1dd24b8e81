// Section 8 of wsguard.hpp (inlined into the release header). Not a public header.
// ===========================================================================
// 8. handshake_guard: the one call that composes them
// ===========================================================================
#ifndef WSGUARD_HPP
#error "include <wsguard.hpp>, not this file"
#endif

#include <algorithm>
#include <functional>

namespace wsguard {
inline namespace WSGUARD_ABI_NS {

// What a stack knows about one upgrade request, borrowed for the call. Every
// field is the raw header value as the stack's parser gives it; an empty view
// means the header was absent.
struct upgrade_request {
    std::string_view method;                  // "GET"
    std::string_view path;                    // "/ws"; a "?query" tail is split off if present
    std::string_view query;                   // "ticket=..." without '?'; may be empty
    std::string_view origin;                  // Origin
    std::string_view host;                    // Host
    std::string_view sec_fetch_site;          // Sec-Fetch-Site
    std::string_view sec_websocket_protocol;  // Sec-WebSocket-Protocol, e.g. "wsguard.v1, <ticket>"
    std::string_view remote_address;          // "203.0.113.7", "203.0.113.7:5000", "[2001:db8::1]:443"
    // Raw peer address (4 or 16 bytes, network order); used instead of
    // remote_address when set, so stacks with a sockaddr need not format it.
    const std::uint8_t* remote_address_bytes = nullptr;
    std::size_t remote_address_size = 0;
};

// How a route authenticates its handshakes.
enum class ticket_requirement : std::uint8_t {
    required,  // a valid one-time ticket or no upgrade (the default)
    none,      // no ticket: the application authenticates some other way
};

// One endpoint. Two routes may have different allowlists and audiences.
struct route_config {
    std::string path;                         // exact path, e.g. "/ws"
    std::vector<std::string> origins;         // origin_policy patterns
    wsguard::origin_options origin_options{};  // e.g. allow_missing_origin for native clients
    std::vector<std::string> hosts;           // host_allowlist patterns; empty: Host is not checked
    bool deny_cross_site = true;              // refuse Sec-Fetch-Site: cross-site
    ticket_requirement ticket = ticket_requirement::required;
    std::string audience;                     // what the issuer bound the ticket to, e.g. "app.example.com/ws"
    bool ticket_in_query = true;              // accept "?ticket=" when the subprotocol carries none
};

// One refusal, as the logging hook sees it. Every text is bounded, printable
// ASCII (anything else shown as '?'), so it is safe to write to a log line.
struct refusal_event {
    wsguard::reason reason = wsguard::reason::ok;
    std::string_view route;    // the configured path, or the request's (truncated) when no route matched
    std::string_view origin;   // lowercased, truncated Origin ("" when absent)
    std::string_view address;  // the rate-limit key: "192.0.2.1" or "2001:db8:0:1::/64"
};

template <class ReplayStore>
struct basic_handshake_config {
    std::vector<route_config> routes;
    // Verifies tickets for every route that requires one; must outlive the guard.
    const ticket_verifier<ReplayStore>* verifier = nullptr;

    // Per-address handshake rate (token bucket) and concurrent connection cap.
    std::uint64_t handshakes_per_second = 10;
    std::uint32_t handshake_burst = 20;
    std::uint32_t max_connections_per_address = 32;
    std::uint32_t max_connections_total = 100000;
    std::size_t address_table_capacity = 65536;  // distinct addresses tracked at once (fixed memory)
    address_key_options address_options{};       // IPv6 grouped by /64 by default

    // A header longer than this is refused as request_malformed before any parsing.
    std::size_t max_field_bytes = 4096;

    // Called once per refusal, at most refusal_reports_per_second (burst
    // refusal_report_burst); further refusals are only counted.
    std::function<void(const refusal_event&)> on_refusal;
    std::uint64_t refusal_reports_per_second = 20;
    std::uint32_t refusal_report_burst = 50;
};
using handshake_config = basic_handshake_config<memory_replay_store>;

// What the stack must do with one upgrade request.
class [[nodiscard]] handshake_outcome {
public:
    using connection_permit = connection_limiter<address_key>::permit;

    wsguard::decision decision;

    bool allowed() const noexcept { return decision.allowed(); }
    explicit operator bool() const noexcept { return allowed(); }
    // 0 when allowed (answer 101); otherwise the status to answer instead.
    int http_status() const noexcept { return decision.http_status(); }
    // A short plain-text body for the refusal: the reason's stable name.
    std::string_view body() const noexcept { return allowed() ? std::string_view() : to_string(decision.reason); }
    // > 0: send "Retry-After: <n>" with the refusal (429).
    std::int64_t retry_after_seconds() const noexcept { return decision.retry_after_seconds(); }
    // The Sec-WebSocket-Protocol value to answer with ("wsguard.v1"), or empty
    // for none. Never the ticket: echoing it would log it in every proxy.
    std::string_view subprotocol() const noexcept { return subprotocol_; }
    // The verified ticket's claims (subject, scopes); empty without a ticket.
    const ticket_claims& claims() const noexcept { return claims_; }
    // The route that matched (its configured path), empty if none did.
    std::string_view route() const noexcept { return route_; }

    // Keep this alive as long as the connection: destroying it (or the
    // outcome) gives the per-address connection slot back.
    connection_permit& permit() noexcept { return permit_; }
    connection_permit take_permit() noexcept { return std::move(permit_); }

private:
    template <class>
    friend class basic_handshake_guard;

    std::string_view subprotocol_;
    std::string_view route_;
    ticket_claims claims_;
    connection_permit permit_;
};

// Reason phrase for the status line of a refusal ("403 Forbidden").
constexpr std::string_view http_reason_phrase(int status) noexcept {
    switch (status) {
        case 400: return "Bad Request";
        case 401: return "Unauthorized";
        case 403: return "Forbidden";
        case 404: return "Not Found";
        case 405: return "Method Not Allowed";
        case 429: return "Too Many Requests";
        case 500: return "Internal Server Error";
        case 503: return "Service Unavailable";
        default: return "Error";
    }
}

namespace detail {

// Index of a reason in reason_table, for per-reason counters.
constexpr std::size_t handshake_reason_index(reason r) noexcept {
    for (std::size_t i = 0; i < std::size(reason_table); ++i) {
        if (reason_table[i].value == r) return i;
    }
    return std::size(reason_table);  // the "unknown" counter
}

// Copies `text` into `out` for a log line: lowercased, printable ASCII only,
// truncated with "..." so a hostile header cannot forge or flood log lines.
template <std::size_t N>
inline std::string_view handshake_log_text(std::string_view text, std::array<char, N>& out) noexcept {
    static_assert(N > 3, "room for the ellipsis");
    const bool truncated = text.size() > N;
    const std::size_t n = truncated ? N - 3 : text.size();
    for (std::size_t i = 0; i < n; ++i) {
        char c = text[i];
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
        out[i] = (c >= 0x21 && c <= 0x7e) ? c : '?';
    }
    if (!truncated) return std::string_view(out.data(), n);
    out[N - 3] = out[N - 2] = out[N - 1] = '.';
    return std::string_view(out.data(), N);
}

// "192.0.2.1" or "2001:db8:0:1:0:0:0:0/64": the key the limiter counted.
inline std::string_view handshake_address_text(const address_key& key, unsigned ipv6_prefix,
                                               std::array<char, 48>& out) noexcept {
    const std::uint8_t* b = key.bytes();
    int n = 0;
    if (key.is_ipv4()) {
        n = std::snprintf(out.data(), out.size(), "%u.%u.%u.%u", b[12], b[13], b[14], b[15]);  // ::ffff:a.b.c.d
    } else {
        unsigned group[8];
        for (int i = 0; i < 8; ++i) group[i] = (unsigned{b[2 * i]} << 8) | b[2 * i + 1];
        n = std::snprintf(out.data(), out.size(), "%x:%x:%x:%x:%x:%x:%x:%x/%u", group[0], group[1], group[2],
                          group[3], group[4], group[5], group[6], group[7], ipv6_prefix);
    }
    if (n < 0) n = 0;
    return std::string_view(out.data(), std::min<std::size_t>(static_cast<std::size_t>(n), out.size() - 1));
}

// Whether the Sec-WebSocket-Protocol list (comma-separated tokens, optional
// spaces or tabs) offers `protocol`.
inline bool handshake_offers_protocol(std::string_view header, std::string_view protocol) noexcept {
    while (!header.empty()) {
        const std::size_t comma = header.find(',');
        std::string_view token = header.substr(0, comma);
        header = comma == std::string_view::npos ? std::string_view() : header.substr(comma + 1);
        while (!token.empty() && (token.front() == ' ' || token.front() == '\t')) token.remove_prefix(1);
        while (!token.empty() && (token.back() == ' ' || token.back() == '\t')) token.remove_suffix(1);
        if (token == protocol) return true;
    }
    return false;
}

}  // namespace detail

// Composes the components for one upgrade request, cheapest checks first:
// request shape → route → Origin / Host / Sec-Fetch-Site → per-address rate
// and connection cap → ticket (the MAC is the expensive step, so it comes last
// and a flood of forged tickets is rate limited before it is verified).
template <class ReplayStore = memory_replay_store>
class basic_handshake_guard {
public:
    using config = basic_handshake_config<ReplayStore>;

    static result<basic_handshake_guard> create(config cfg) {
        using failure = result<basic_handshake_guard>;
        if (cfg.routes.empty()) return failure::failure("handshake_guard: configure at least one route");
        if (cfg.max_field_bytes < 256) return failure::failure("handshake_guard: max_field_bytes must be at least 256");
        basic_handshake_guard guard;
        for (route_config& rc : cfg.routes) {
            const std::string where = "handshake_guard route \"" + rc.path + "\": ";
            if (rc.path.empty() || rc.path.front() != '/' || rc.path.find('?') != std::string::npos)
                return failure::failure(where + "path must start with '/' and hold no query");
            for (const route& existing : guard.routes_) {
                if (existing.path == rc.path) return failure::failure(where + "path is configured twice");
            }
            auto origins = origin_policy::create(rc.origins, rc.origin_options);
            if (!origins) return failure::failure(where + origins.error());
            std::optional<host_allowlist> hosts;
            if (!rc.hosts.empty()) {
                auto allowlist = host_allowlist::create(rc.hosts);
                if (!allowlist) return failure::failure(where + allowlist.error());
                hosts.emplace(std::move(allowlist).value());
            }
            if (rc.ticket == ticket_requirement::required) {
                if (cfg.verifier == nullptr)
                    return failure::failure(where + "requires tickets but the config has no verifier");
                if (rc.audience.empty())
                    return failure::failure(where + "requires tickets but has no audience (e.g. \"app.example.com" +
                                            rc.path + "\")");
            }
            guard.routes_.push_back(route{rc.path, std::move(origins).value(), std::move(hosts), rc.deny_cross_site,
                                          rc.ticket, rc.audience, rc.ticket_in_query});
        }
        auto rate = keyed_limiter<address_key>::create(cfg.handshakes_per_second, cfg.handshake_burst,
                                                       cfg.address_table_capacity);
        if (!rate) return failure::failure("handshake_guard: " + rate.error());
        auto connections = connection_limiter<address_key>::create(
            cfg.max_connections_per_address, cfg.address_table_capacity, cfg.max_connections_total);
        if (!connections) return failure::failure("handshake_guard: " + connections.error());
        auto reports = token_bucket::create(cfg.refusal_reports_per_second, cfg.refusal_report_burst);
        if (!reports) return failure::failure("handshake_guard: refusal reports: " + reports.error());

        guard.verifier_ = cfg.verifier;
        guard.rate_.emplace(std::move(rate).value());
        guard.connections_.emplace(std::move(connections).value());
        guard.report_budget_.reset(new (std::nothrow) token_bucket(std::move(reports).value()));
        guard.counters_.reset(new (std::nothrow) counters());
        if (!guard.report_budget_ || !guard.counters_) return failure::failure("handshake_guard: out of memory");
        guard.address_options_ = cfg.address_options;
        guard.max_field_bytes_ = cfg.max_field_bytes;
        guard.on_refusal_ = std::move(cfg.on_refusal);
        return failure::success(std::move(guard));
    }

    handshake_outcome check(const upgrade_request& request) noexcept {
        return check(request, std::chrono::steady_clock::now(), std::chrono::system_clock::now());
    }

    // `steady_now` drives the rate limits, `wall_now` the ticket lifetime.
    handshake_outcome check(const upgrade_request& request, std::chrono::steady_clock::time_point steady_now,
                            std::chrono::system_clock::time_point wall_now) noexcept {
        handshake_outcome out;
        std::optional<address_key> address;
        out.decision = decide(request, steady_now, wall_now, out, address);
        if (!out.allowed()) {
            out.permit_.release();
            out.subprotocol_ = {};
            out.claims_.clear();
            report(out.decision.reason, request, out.route_, address);
        }
        counters_->by_reason[detail::handshake_reason_index(out.decision.reason)].fetch_add(1, std::memory_order_relaxed);
        return out;
    }

    // How many requests ended with `r` since construction (ok counts upgrades).
    std::uint64_t count(reason r) const noexcept {
        return counters_->by_reason[detail::handshake_reason_index(r)].load(std::memory_order_relaxed);
    }
    // Refusals counted but not passed to on_refusal (over the report rate).
    std::uint64_t suppressed_reports() const noexcept { return counters_->suppressed.load(std::memory_order_relaxed); }
    // Live connections across all addresses (permits not yet released).
    std::uint32_t live_connections() const noexcept { return connections_->total(); }

private:
    struct route {
        std::string path;
        origin_policy origins;
        std::optional<host_allowlist> hosts;
        bool deny_cross_site;
        ticket_requirement ticket;
        std::string audience;
        bool ticket_in_query;
    };
    struct counters {
        std::array<std::atomic<std::uint64_t>, std::size(detail::reason_table) + 1> by_reason{};
        std::atomic<std::uint64_t> suppressed{0};
    };

    basic_handshake_guard() = default;

    bool field_too_long(const upgrade_request& r) const noexcept {
        for (std::string_view field : {r.method, r.path, r.query, r.origin, r.host, r.sec_fetch_site,
                                       r.sec_websocket_protocol, r.remote_address}) {
            if (field.size() > max_field_bytes_) return true;
        }
        return false;
    }

    decision decide(const upgrade_request& request, std::chrono::steady_clock::time_point steady_now,
                    std::chrono::system_clock::time_point wall_now, handshake_outcome& out,
                    std::optional<address_key>& address) noexcept {
        // 1. Request shape and route.
        if (field_too_long(request)) return reason::request_malformed;
        if (request.method != "GET") return reason::method_not_get;
        std::string_view path = request.path;
        std::string_view query = request.query;
        if (const std::size_t mark = path.find('?'); mark != std::string_view::npos) {
            if (query.empty()) query = path.substr(mark + 1);
            path = path.substr(0, mark);
        }
        const route* matched = nullptr;
        for (const route& r : routes_) {
            if (r.path == path) {
                matched = &r;
                break;
            }
        }
        if (matched == nullptr) return reason::route_not_found;
        out.route_ = matched->path;

        // 2. Origin, Host, Sec-Fetch-Site: string checks, no state.
        if (decision d = matched->origins.check(request.origin); !d) return d;
        if (matched->hosts) {
            if (decision d = matched->hosts->check(request.host); !d) return d;
        }
        if (matched->deny_cross_site) {
            if (decision d = check_sec_fetch_site(request.sec_fetch_site); !d) return d;
        }

        // 3. Per-address rate limit, then the connection cap.
        address = request.remote_address_bytes != nullptr
                      ? address_key::from_bytes(request.remote_address_bytes, request.remote_address_size,
                                                address_options_)
                      : address_key::from_endpoint_text(request.remote_address, address_options_);
        if (!address) return reason::address_malformed;
        if (decision d = rate_->try_acquire(*address, steady_now); !d) return d;
        out.permit_ = connections_->try_acquire(*address);
        if (!out.permit_) return out.permit_.decision();

        // 4. The ticket: MAC and replay store last.
        if (matched->ticket == ticket_requirement::none) return decision::allow();
        ticket_source source = ticket_from_subprotocol(request.sec_websocket_protocol);
        if (!source && matched->ticket_in_query) source = ticket_from_query(query);
        if (!source) return source.reason;
        if (decision d = verifier_->verify(source.ticket, request.origin, matched->audience, out.claims_, wall_now); !d)
            return d;
        // Echo the marker whenever the client offered it (also with a query
        // ticket): clients such as Node's ws fail a connection whose offered
        // subprotocols all went unanswered.
        if (detail::handshake_offers_protocol(request.sec_websocket_protocol, ticket_subprotocol))
            out.subprotocol_ = ticket_subprotocol;
        return decision::allow();
    }

    void report(reason r, const upgrade_request& request, std::string_view route_path,
                const std::optional<address_key>& address) noexcept {
        if (!on_refusal_) return;
        if (!report_budget_->try_acquire()) {
            counters_->suppressed.fetch_add(1, std::memory_order_relaxed);
            return;
        }
        std::array<char, 128> origin_text{};
        std::array<char, 64> route_text{};
        std::array<char, 48> address_text{};
        refusal_event event;
        event.reason = r;
        event.route = route_path.empty() ? detail::handshake_log_text(request.path, route_text) : route_path;
        event.origin = detail::handshake_log_text(request.origin, origin_text);
        event.address = address ? detail::handshake_address_text(*address, address_options_.ipv6_prefix, address_text)
                                : detail::handshake_log_text(request.remote_address, address_text);
        on_refusal_(event);
    }

    std::vector<route> routes_;
    const ticket_verifier<ReplayStore>* verifier_ = nullptr;
    std::optional<keyed_limiter<address_key>> rate_;
    std::optional<connection_limiter<address_key>> connections_;
    std::unique_ptr<token_bucket> report_budget_;
    std::unique_ptr<counters> counters_;
    address_key_options address_options_{};
    std::size_t max_field_bytes_ = 4096;
    std::function<void(const refusal_event&)> on_refusal_;
};

using handshake_guard = basic_handshake_guard<memory_replay_store>;

}  // inline namespace WSGUARD_ABI_NS
}  // namespace wsguard
