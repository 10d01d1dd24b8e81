// A minimal hand-rolled WebSocket echo server on Linux epoll, to show where
// wsguard goes when there is no framework: handshake_guard checks the upgrade
// request before the 101 is written, and frame_guard reads every frame header
// before a payload byte is buffered. With zlib it negotiates permessage-deflate
// and inflates under an inflate_budget, so a compression bomb closes with 1009.
//
//   POST /ticket  Authorization: Bearer <session>, X-Wsguard-Ticket: 1  -> {"ticket":"..."} bound to
//                 the caller's Origin (mint_guard; OPTIONS /ticket is the CORS preflight)
//   GET  /ws      the guarded echo socket: Origin, Host, rate limits, connection cap and a
//                 one-time ticket in "Sec-WebSocket-Protocol: wsguard.v1, <ticket>" (or ?ticket=)
//
// Usage: wsguard_raw_epoll [--port N] [--allow-origin ORIGIN]... [--max-message BYTES]
//                          [--max-inflated BYTES] [--session TOKEN] [--handshake-rate N] [--handshake-burst N]
//                          [--max-pending-per-address N] [--max-pending-total N] [--handshake-deadline-ms MS]
//                          [--max-connections N] [--address-table N] [--replay-capacity N] [--guard 0|1]
//                          [--mint-burst N] [--time-guard 0|1]
//                          [--allow-host HOST[:PORT]]... [--trusted-proxy CIDR]...
//                          [--proxy-protocol]
// Binds 127.0.0.1, prints "listening <port>" once ready, exits on SIGTERM/SIGINT.
// Refusals are logged to stderr as "refused <reason> ...", at most 20 lines a
// second (burst 50) for the guard's and the server's own refusals together; the
// lines left out are counted and the count is logged. The session token
// stands in for the application's login.
//
// Admission happens at accept, before any HTTP byte: an accept_gate caps the
// handshakes still pending per address (64) and in total (384), so no single
// address fills the 512 sockets, and a connection that has not completed its
// upgrade request within the deadline (10 s) is closed, a slowloris trickle
// included. The event loop wakes for the earliest deadline (epoll_wait timeout).
// --guard 0 skips wsguard's upgrade check and --max-pending-per-address 0 the
// accept_gate: the benchmark's baselines, not settings for a real server.
// --time-guard 1 times each guard check (steady clock: the check never blocks)
// and prints "guard_check_ns <total> checks <count>" on exit, for the benchmark.
//
// Behind a proxy (docs/behind-a-proxy.md): --trusted-proxy names the proxies
// whose X-Forwarded-For / Forwarded entries are believed; with --proxy-protocol
// a connection from a trusted proxy must open with a PROXY v1 or v2 header
// (HAProxy send-proxy / send-proxy-v2) whose source address becomes the peer,
// and a connection from anyone else that opens with one is refused.
//
// Not a complete WebSocket server: no TLS, no idle timeouts after the upgrade,
// no UTF-8 validation of text messages, replies are never compressed.
// Everything is bounded: the request head and the time to send it, each message
// (frame_guard), each inflated message (inflate_budget), the send queue and the
// number of connections.
#include "example_app.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#if WSGUARD_EXAMPLE_HAVE_ZLIB
#include <zlib.h>
#endif

namespace {

constexpr const char* usage =
    "usage: wsguard_raw_epoll [--port N] [--allow-origin ORIGIN]... [--max-message BYTES]\n"
    "                         [--max-inflated BYTES] [--session TOKEN] [--handshake-rate N] [--handshake-burst N]\n"
    "                         [--max-pending-per-address N] [--max-pending-total N] [--handshake-deadline-ms MS]\n"
    "                         [--max-connections N] [--address-table N] [--replay-capacity N] [--guard 0|1]\n"
    "                         [--mint-burst N] [--time-guard 0|1]\n"
    "                         [--allow-host HOST[:PORT]]... [--trusted-proxy CIDR]...\n"
    "                         [--proxy-protocol]\n";

// ---------------------------------------------------------------------------
// Sec-WebSocket-Accept = base64(SHA-1(key + GUID)) (RFC 6455 4.2.2). SHA-1 is
// what the protocol fixes here; it carries no security, so a small
// implementation is enough. wsguard has SHA-256 (for tickets) but no SHA-1.
// ---------------------------------------------------------------------------
std::array<std::uint8_t, 20> sha1(std::string_view message) {
    std::uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    std::string padded(message);
    padded += static_cast<char>(0x80);
    while (padded.size() % 64 != 56) padded += '\0';
    const std::uint64_t bits = static_cast<std::uint64_t>(message.size()) * 8;
    for (int shift = 56; shift >= 0; shift -= 8) padded += static_cast<char>((bits >> shift) & 0xFF);
    auto rotl = [](std::uint32_t x, int n) { return (x << n) | (x >> (32 - n)); };
    for (std::size_t block = 0; block < padded.size(); block += 64) {
        std::uint32_t w[80];
        for (int t = 0; t < 16; ++t) {
            const auto* p = reinterpret_cast<const unsigned char*>(padded.data() + block + 4 * t);
            w[t] = (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | p[3];
        }
        for (int t = 16; t < 80; ++t) w[t] = rotl(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1);
        std::uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
        for (int t = 0; t < 80; ++t) {
            const std::uint32_t f = t < 20 ? ((b & c) | (~b & d)) + 0x5A827999
                                  : t < 40 ? (b ^ c ^ d) + 0x6ED9EBA1
                                  : t < 60 ? ((b & c) | (b & d) | (c & d)) + 0x8F1BBCDC
                                           : (b ^ c ^ d) + 0xCA62C1D6;
            const std::uint32_t next = rotl(a, 5) + f + e + w[t];
            e = d; d = c; c = rotl(b, 30); b = a; a = next;
        }
        h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e;
    }
    std::array<std::uint8_t, 20> digest{};
    for (int i = 0; i < 20; ++i) digest[i] = static_cast<std::uint8_t>(h[i / 4] >> (24 - 8 * (i % 4)));
    return digest;
}

// Standard base64 with padding (wsguard's base64url is a different alphabet).
std::string base64(const std::uint8_t* data, std::size_t size) {
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    for (std::size_t i = 0; i < size; i += 3) {
        const std::uint32_t n = (std::uint32_t{data[i]} << 16) | (i + 1 < size ? std::uint32_t{data[i + 1]} << 8 : 0) |
                                (i + 2 < size ? data[i + 2] : 0);
        out += alphabet[(n >> 18) & 63];
        out += alphabet[(n >> 12) & 63];
        out += i + 1 < size ? alphabet[(n >> 6) & 63] : '=';
        out += i + 2 < size ? alphabet[n & 63] : '=';
    }
    return out;
}

std::string websocket_accept(std::string_view key) {
    const auto digest = sha1(std::string(key) + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    return base64(digest.data(), digest.size());
}

// ---------------------------------------------------------------------------
// The upgrade request: request line and the headers a WebSocket server reads.
// ---------------------------------------------------------------------------
bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
        if (x != y) return false;
    }
    return true;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

// Does a comma-separated header value contain `token` (case-insensitive)?
bool has_token(std::string_view value, std::string_view token) {
    while (!value.empty()) {
        const std::size_t comma = value.find(',');
        if (iequals(trim(value.substr(0, comma)), token)) return true;
        if (comma == std::string_view::npos) break;
        value.remove_prefix(comma + 1);
    }
    return false;
}

struct http_request {
    std::string_view method, target, upgrade, connection, key, version, extensions;
    std::string_view authorization;
    std::string_view ticket_marker, cors_method, cors_headers;  // the ticket endpoint's X-Wsguard-Ticket, preflight
    // The header lines, for wsguard::upgrade_request_builder: Origin, Host,
    // Sec-Fetch-Site, Sec-WebSocket-Protocol, Forwarded and X-Forwarded-For.
    std::string_view header_lines;
    int repeated_fields = 0;  // a second Sec-WebSocket-Key, Authorization, marker or preflight method
};

// Calls visit(name, value) for every "Name: value" line of a header block.
// False on a line without a name.
template <class Visit>
bool for_each_header(std::string_view lines, Visit visit) {
    while (!lines.empty()) {
        const std::size_t end = lines.find("\r\n");
        const std::string_view header = lines.substr(0, end);
        lines = end == std::string_view::npos ? std::string_view{} : lines.substr(end + 2);
        const std::size_t colon = header.find(':');
        if (colon == std::string_view::npos || colon == 0) return false;
        visit(header.substr(0, colon), trim(header.substr(colon + 1)));
    }
    return true;
}

// Parses the head (everything before the blank line). False on a malformed head.
bool parse_request(std::string_view head, http_request& request) {
    const std::size_t line_end = head.find("\r\n");
    const std::string_view line = head.substr(0, line_end);
    const std::size_t sp1 = line.find(' '), sp2 = line.rfind(' ');
    if (sp1 == std::string_view::npos || sp2 == sp1 || line.substr(sp2 + 1) != "HTTP/1.1") return false;
    request.method = line.substr(0, sp1);
    request.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    request.header_lines = line_end == std::string_view::npos ? std::string_view{} : head.substr(line_end + 2);
    return for_each_header(request.header_lines, [&request](std::string_view name, std::string_view value) {
        auto set_once = [&request, value](std::string_view& field) {
            if (field.data() != nullptr) ++request.repeated_fields;
            field = value;
        };
        if (iequals(name, "Sec-WebSocket-Key")) set_once(request.key);
        else if (iequals(name, "Upgrade")) request.upgrade = value;
        else if (iequals(name, "Connection")) request.connection = value;
        else if (iequals(name, "Sec-WebSocket-Version")) request.version = value;
        else if (iequals(name, "Sec-WebSocket-Extensions")) request.extensions = value;  // first header only: enough here
        else if (iequals(name, "Authorization")) set_once(request.authorization);
        else if (iequals(name, example::ticket_endpoint::marker_header)) set_once(request.ticket_marker);
        else if (iequals(name, "Access-Control-Request-Method")) set_once(request.cors_method);
        else if (iequals(name, "Access-Control-Request-Headers")) request.cors_headers = value;
    });
}

// permessage-deflate: accept the first offer we can honour. We never compress
// replies, so we can always promise server_no_context_takeover; our inflater
// keeps its window across messages, so either client setting works.
bool accept_permessage_deflate(std::string_view offers) {
#if WSGUARD_EXAMPLE_HAVE_ZLIB
    while (!offers.empty()) {
        const std::size_t comma = offers.find(',');
        std::string_view offer = offers.substr(0, comma);
        offers = comma == std::string_view::npos ? std::string_view{} : offers.substr(comma + 1);
        const std::size_t semi = offer.find(';');
        if (!iequals(trim(offer.substr(0, semi)), "permessage-deflate")) continue;
        bool acceptable = true;
        for (offer = semi == std::string_view::npos ? std::string_view{} : offer.substr(semi + 1); !offer.empty();) {
            const std::size_t next = offer.find(';');
            const std::string_view param = trim(offer.substr(0, next));
            offer = next == std::string_view::npos ? std::string_view{} : offer.substr(next + 1);
            const std::string_view param_name = trim(param.substr(0, param.find('=')));
            // server_max_window_bits would need an echo; decline it to stay small.
            if (!iequals(param_name, "client_max_window_bits") && !iequals(param_name, "client_no_context_takeover") &&
                !iequals(param_name, "server_no_context_takeover")) acceptable = false;
        }
        if (acceptable) return true;
    }
#else
    (void)offers;
#endif
    return false;
}

// ---------------------------------------------------------------------------
// A connection: HTTP until the upgrade, then frames.
// ---------------------------------------------------------------------------
constexpr std::size_t max_request_head = 8 * 1024;
constexpr std::size_t max_send_queue = 4 * 1024 * 1024;  // a client that never reads is dropped
constexpr int max_connections = 512;  // stays under the default 1024 descriptors

struct connection {
    int fd = -1;
    std::string peer;
    std::uint8_t peer_bytes[4] = {};
    // Until the upgrade: the accept_gate's pending slot, and this connection's
    // place in the server's deadline-ordered list of pending connections.
    wsguard::accept_permit pending;
    std::chrono::steady_clock::time_point deadline;
    std::list<connection*>::iterator in_pending_list;
    // --proxy-protocol: the first bytes are settled (a PROXY header read, or
    // none where none may come); a PROXY source replaces peer (as text).
    bool first_bytes_settled = true;
    bool from_trusted_proxy = false;
    bool peer_from_proxy_header = false;
    bool upgraded = false;
    bool closing = false;  // close after the send queue drains
    std::string in, out;
    std::optional<wsguard::request_head_budget> head;  // bytes and lines of the request head, decided as they arrive

    wsguard::frame_guard guard;
    std::optional<wsguard::frame_verdict> header;  // allowed header whose payload is still arriving
    std::string message;                           // the data message being assembled
    wsguard::handshake_outcome::connection_permit permit;  // our slot under the per-address cap
    std::optional<wsguard::token_bucket> messages;  // per-connection message rate

    bool deflate = false;
#if WSGUARD_EXAMPLE_HAVE_ZLIB
    z_stream inflater{};
    std::uint64_t compressed_in = 0;  // compressed payload bytes of the current message
#endif

    ~connection() {
#if WSGUARD_EXAMPLE_HAVE_ZLIB
        if (deflate) inflateEnd(&inflater);
#endif
        if (fd >= 0) ::close(fd);
    }
};

constexpr const char* ticket_audience = "wsguard-example/ws";

// Every refusal line, the guard's (on_refusal) and the server's own (400, 431,
// close frames), under one budget: the guard's default report rate. A hostile
// client must not be able to write the log at line rate; what the budget
// leaves out is counted, and the count rides on the next line written.
class refusal_log {
public:
    void write(std::string_view line) {
        if (!budget_.try_acquire()) {
            ++suppressed_, ++suppressed_total_;
            return;
        }
        if (suppressed_ > 0) std::fprintf(stderr, "refusal log: %llu lines suppressed\n", static_cast<unsigned long long>(suppressed_));
        suppressed_ = 0;
        std::fprintf(stderr, "%.*s\n", static_cast<int>(line.size()), line.data());
    }
    std::uint64_t suppressed_total() const noexcept { return suppressed_total_; }

private:
    wsguard::token_bucket budget_ =
        wsguard::token_bucket::create({wsguard::rate::per_second(wsguard::handshake_config{}.refusal_reports_per_second),
                                       wsguard::handshake_config{}.refusal_report_burst})
            .value();
    std::uint64_t suppressed_ = 0, suppressed_total_ = 0;
};

struct server {
    example::options opts;
    wsguard::frame_limits limits;
    wsguard::inflate_budget budget;
    wsguard::handshake_guard* guard = nullptr;
    example::ticket_endpoint* tickets = nullptr;
    std::optional<wsguard::request_head_budget> head_budget;  // copied for each request
    int epoll_fd = -1;
    std::map<int, std::unique_ptr<connection>> connections;
    std::optional<wsguard::accept_gate> gate;  // empty with --max-pending-per-address 0
    // Connections not yet upgraded, in accept order: every deadline is accept
    // time plus the same duration, so the front always expires first.
    std::list<connection*> pending;
    std::optional<wsguard::trusted_proxies> proxies;  // --trusted-proxy
    refusal_log log;
    std::uint64_t guard_check_ns = 0;  // --time-guard: time inside guard->check, and how many
    std::uint64_t guard_checks = 0;
};

// The pending slot returns and the deadline stops applying: called on upgrade
// and before a connection is destroyed (idempotent).
void end_pending(server& s, connection& c) {
    if (c.in_pending_list == s.pending.end()) return;
    s.pending.erase(c.in_pending_list);
    c.in_pending_list = s.pending.end();
    c.pending.release();
}

void close_connection(server& s, std::map<int, std::unique_ptr<connection>>::iterator at) {
    end_pending(s, *at->second);
    s.connections.erase(at);  // closes the socket
}

void queue_frame(connection& c, std::uint8_t opcode, std::string_view payload) {
    std::string frame;
    frame += static_cast<char>(0x80 | opcode);  // FIN, no RSV bits: replies are never compressed
    if (payload.size() < 126) {
        frame += static_cast<char>(payload.size());
    } else if (payload.size() <= 0xFFFF) {
        frame += static_cast<char>(126);
        frame += static_cast<char>(payload.size() >> 8);
        frame += static_cast<char>(payload.size() & 0xFF);
    } else {
        frame += static_cast<char>(127);
        for (int shift = 56; shift >= 0; shift -= 8) frame += static_cast<char>((std::uint64_t{payload.size()} >> shift) & 0xFF);
    }
    c.out += frame;
    c.out += payload;
}

// Fails the connection with a close frame naming the wsguard reason.
void fail_connection(server& s, connection& c, int close_code, std::string_view why) {
    s.log.write("refused " + std::string(why) + " close=" + std::to_string(close_code) + " peer=" + c.peer);
    std::string payload;
    payload += static_cast<char>(close_code >> 8);
    payload += static_cast<char>(close_code & 0xFF);
    payload += why.substr(0, 123);
    queue_frame(c, 0x8, payload);
    c.closing = true;
}

// Answers the request and closes: refusals, and the ticket endpoint.
void respond(connection& c, int status, std::string_view body, std::string_view extra_headers = {}) {
    c.out = "HTTP/1.1 " + std::to_string(status) + " " + std::string(wsguard::http_reason_phrase(status)) +
            "\r\nConnection: close\r\nCache-Control: no-store\r\n" + std::string(extra_headers) +
            "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + std::string(body);
    c.closing = true;
}

void refuse_upgrade(server& s, connection& c, int status, std::string_view why) {
    s.log.write("refused " + std::string(why) + " http=" + std::to_string(status) + " peer=" + c.peer);
    respond(c, status, std::string(why) + "\n", "Content-Type: text/plain\r\n");
}

// POST /ticket (and its CORS preflight): the shared endpoint, with the
// bearer token as the login. A logged-in caller gets a one-time ticket bound to its Origin.
// `security`: the request's Origin and Sec-Fetch-Site, read by upgrade_request_builder.
void answer_ticket(server& s, connection& c, const http_request& request, const wsguard::upgrade_request& security) {
    if (security.repeated_security_header)  // mint_request has no such field: a second Origin is refused here
        return refuse_upgrade(s, c, 400, wsguard::to_string(wsguard::reason::security_header_repeated));
    wsguard::mint_request mint;
    mint.method = request.method;
    mint.origin = security.origin;
    mint.sec_fetch_site = security.sec_fetch_site;
    mint.marker = request.ticket_marker;
    mint.subject = request.authorization == "Bearer " + s.opts.session ? "demo-user" : "";
    mint.remote_address_bytes = c.peer_bytes;
    mint.remote_address_size = sizeof c.peer_bytes;
    mint.access_control_request_method = request.cors_method;
    mint.access_control_request_headers = request.cors_headers;
    const example::http_answer answer = s.tickets->answer(mint);
    if (answer.reason != wsguard::reason::ok)
        std::fprintf(stderr, "refused %s ticket peer=%s\n", wsguard::to_string(answer.reason), c.peer.c_str());
    std::string headers = "Content-Type: " + answer.content_type + "\r\n";
    for (const auto& [name, value] : answer.headers) headers += name + ": " + value + "\r\n";
    respond(c, answer.status, answer.body, headers);
}

// ---------------------------------------------------------------------------
// --proxy-protocol: the PROXY v1/v2 header a trusted L4 proxy (HAProxy
// send-proxy-v2, AWS NLB) puts before the first HTTP byte, read incrementally.
// Only a trusted peer may send one; a direct client that opens with one is
// trying to choose the address it is rate-limited and logged under.
// False while the first bytes are not settled (more to read, or refused).
// ---------------------------------------------------------------------------
bool settle_first_bytes(server& s, connection& c) {
    if (c.first_bytes_settled) return true;
    const wsguard::proxy_header header =
        wsguard::parse_proxy_header(reinterpret_cast<const std::uint8_t*>(c.in.data()), c.in.size());
    if (header.need_more()) return false;  // bounded: a v1 line is at most 107 bytes, a v2 header 16 + 65535
    if (!c.from_trusted_proxy) {
        if (header.refused() && header.decision.reason == wsguard::reason::proxy_header_missing) return c.first_bytes_settled = true;
        refuse_upgrade(s, c, 400, "proxy_header_from_untrusted_peer");
        return false;
    }
    if (header.refused()) {
        refuse_upgrade(s, c, 400, wsguard::to_string(header.decision.reason));
        return false;
    }
    // LOCAL and UNKNOWN (the proxy's own health checks) carry no source: the peer stays the proxy.
    if (!header.source_text().empty()) {
        c.peer = std::string(header.source_text());
        c.peer_from_proxy_header = true;
    }
    // Admission keyed by the client the header names (accept_all left the
    // proxy's connections to this point); the deadline still runs from accept.
    if (s.gate && c.peer_from_proxy_header) {
        const std::optional<wsguard::address_key> client = s.gate->address_of(c.peer);
        if (client) c.pending = s.gate->try_admit(*client);
        if (!client || !c.pending) {
            refuse_upgrade(s, c, 503, wsguard::to_string(wsguard::reason::too_many_pending));
            return false;
        }
    }
    c.in.erase(0, header.header_size);
    return c.first_bytes_settled = true;
}

void handle_upgrade(server& s, connection& c) {
    // Only the bytes not yet inspected: the budget answers as soon as a cap is crossed.
    if (!c.head) c.head.emplace(*s.head_budget);
    const wsguard::head_verdict head = c.head->feed(c.in.data() + c.head->bytes_seen(), c.in.size() - c.head->bytes_seen());
    if (head.status == wsguard::head_status::refused)
        return refuse_upgrade(s, c, head.decision.http_status(), wsguard::to_string(head.decision.reason));
    if (head.status == wsguard::head_status::need_more) return;
    const std::size_t head_end = head.head_size - 4;  // the blank line's CRLF CRLF
    http_request request;
    if (!parse_request(std::string_view(c.in).substr(0, head_end), request) || request.repeated_fields != 0)
        return refuse_upgrade(s, c, 400, "request_malformed");
    // Origin, Host, Sec-Fetch-Site, Sec-WebSocket-Protocol and the Forwarded lines, from every
    // line parse_request checked: a second Origin or Host is the guard's to refuse.
    wsguard::upgrade_request_builder build(request.method, request.target);  // "/ws?ticket=...": the guard splits the query off
    for_each_header(request.header_lines, [&build](std::string_view name, std::string_view value) { build.add(name, value); });
    if (request.target == example::ticket_endpoint::path) return answer_ticket(s, c, request, build.request());
    // RFC 6455 shape first, so a malformed upgrade never spends its ticket.
    if (request.method == "GET" && (!iequals(request.upgrade, "websocket") || !has_token(request.connection, "upgrade") ||
                                    request.version != "13" || request.key.size() != 24)) {
        return refuse_upgrade(s, c, 400, "not a WebSocket upgrade");
    }

    // The whole wsguard handshake check: one call.
    wsguard::upgrade_request& up = build.request();
    if (c.peer_from_proxy_header) {
        up.remote_address = c.peer;  // the PROXY header's source, IPv4 or IPv6
    } else {
        up.remote_address_bytes = c.peer_bytes;
        up.remote_address_size = sizeof c.peer_bytes;
    }
    const auto check_start = s.opts.time_guard ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
    wsguard::handshake_outcome outcome = s.opts.guard ? s.guard->check(up) : wsguard::handshake_outcome{};
    if (s.opts.time_guard) {
        s.guard_check_ns += static_cast<std::uint64_t>(
            std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - check_start).count());
        ++s.guard_checks;
    }
    if (!outcome) {
        const std::string retry = outcome.retry_after_seconds() > 0
                                      ? "Retry-After: " + std::to_string(outcome.retry_after_seconds()) + "\r\n" : "";
        return respond(c, outcome.http_status(), std::string(outcome.body()) + "\n", retry);  // logged by on_refusal
    }
    c.permit = outcome.take_permit();
    c.messages.emplace(example::message_bucket(s.opts));

    c.deflate = accept_permessage_deflate(request.extensions);
    std::string response = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           "Sec-WebSocket-Accept: " + websocket_accept(request.key) + "\r\n";
    // "wsguard.v1", never the client's header: that holds the ticket.
    if (!outcome.subprotocol().empty()) response += "Sec-WebSocket-Protocol: " + std::string(outcome.subprotocol()) + "\r\n";
    if (c.deflate) response += "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n";
    response += "\r\n";
#if WSGUARD_EXAMPLE_HAVE_ZLIB
    // Raw deflate, 32 KiB window: accepts any client_max_window_bits.
    if (c.deflate && inflateInit2(&c.inflater, -15) != Z_OK) {
        c.deflate = false;
        return refuse_upgrade(s, c, 500, "internal_error");
    }
#endif
    wsguard::frame_limits limits = s.limits;
    limits.permessage_deflate = c.deflate;  // RSV1 allowed on a message's first frame only if negotiated
    c.guard = wsguard::frame_guard(limits);
    c.out += response;
    c.in.erase(0, head_end + 4);
    c.upgraded = true;
    end_pending(s, c);  // a connection now, under the guard's per-address cap
}

#if WSGUARD_EXAMPLE_HAVE_ZLIB
struct inflate_failure {
    int close_code;  // 0: no failure
    const char* why;
};

// Inflates one frame's payload into c.message under the budget. Each output
// chunk is no larger than what the budget still allows plus one byte, so a
// bomb is stopped one byte past its cap instead of being buffered.
inflate_failure inflate_into_message(const server& s, connection& c, std::string_view input) {
    z_stream& z = c.inflater;
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(input.data()));
    z.avail_in = static_cast<uInt>(input.size());
    const std::uint64_t consumed_before = c.compressed_in;
    unsigned char chunk[16 * 1024];
    for (;;) {
        const std::uint64_t allowed = s.budget.max_output_for(consumed_before + (input.size() - z.avail_in));
        const std::uint64_t room = allowed >= c.message.size() ? allowed - c.message.size() + 1 : 1;
        z.next_out = chunk;
        z.avail_out = static_cast<uInt>(std::min<std::uint64_t>(room, sizeof chunk));
        const uInt offered = z.avail_out;
        const int rc = inflate(&z, Z_SYNC_FLUSH);
        if (rc != Z_OK && rc != Z_BUF_ERROR && rc != Z_STREAM_END) return {1007, "invalid_deflate_data"};
        const std::size_t produced = offered - z.avail_out;
        c.message.append(reinterpret_cast<const char*>(chunk), produced);
        const wsguard::decision verdict = s.budget.check(consumed_before + (input.size() - z.avail_in), c.message.size());
        if (!verdict) return {verdict.close_code(), wsguard::to_string(verdict.reason)};
        if (rc == Z_STREAM_END) inflateReset(&z);  // a final block (BFINAL) ends this deflate stream
        if (z.avail_in == 0 && z.avail_out != 0) break;  // input consumed, output flushed
        if (produced == 0 && rc == Z_BUF_ERROR) break;    // no progress possible
    }
    c.compressed_in = consumed_before + input.size();
    return {0, nullptr};
}
#endif

// Processes every complete frame in c.in. frame_guard sees each header first:
// a refused header closes the connection before its payload is read.
void handle_frames([[maybe_unused]] server& s, connection& c) {
    std::size_t at = 0;
    while (!c.closing) {
        if (!c.header) {
            const wsguard::frame_verdict verdict = c.guard.inspect(std::string_view(c.in).substr(at));
            if (verdict.need_more()) break;
            if (verdict.refused()) return fail_connection(s, c, verdict.decision.close_code(), wsguard::to_string(verdict.decision.reason));
            c.header = verdict;
        }
        const wsguard::frame_verdict& frame = *c.header;
        // Bounded: payload_length is within max_message_bytes (or 125 for control frames).
        if (c.in.size() - at < frame.header_size + frame.payload_length) break;
        std::string payload = c.in.substr(at + frame.header_size, frame.payload_length);
        for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(payload[i] ^ frame.masking_key[i % 4]);
        at += frame.header_size + frame.payload_length;
        c.header.reset();

        if (frame.opcode == wsguard::frame_opcode::close) {
            queue_frame(c, 0x8, payload.substr(0, 2));  // echo the code, as RFC 6455 5.5.1 suggests
            c.closing = true;
        } else if (frame.opcode == wsguard::frame_opcode::ping) {
            queue_frame(c, 0xA, payload);
        } else if (frame.opcode == wsguard::frame_opcode::pong) {
            // nothing to do
        } else if (frame.message_compressed) {
#if WSGUARD_EXAMPLE_HAVE_ZLIB
            inflate_failure failed = inflate_into_message(s, c, payload);
            // RFC 7692 7.2.2: the sender removed 00 00 FF FF from the end of each message.
            if (failed.close_code == 0 && frame.fin) failed = inflate_into_message(s, c, std::string_view("\x00\x00\xff\xff", 4));
            if (failed.close_code != 0) return fail_connection(s, c, failed.close_code, failed.why);
#endif
        } else {
            c.message += payload;  // within max_message_bytes: frame_guard counted it
        }
        if (!frame.is_control() && frame.fin) {
            if (!c.messages->try_acquire()) {  // 1008 message_rate_limited
                constexpr wsguard::decision why = example::message_refusal;
                return fail_connection(s, c, why.close_code(), wsguard::to_string(why.reason));
            }
            queue_frame(c, frame.message_opcode, c.message);
            c.message.clear();
#if WSGUARD_EXAMPLE_HAVE_ZLIB
            c.compressed_in = 0;
#endif
        }
    }
    c.in.erase(0, at);
}

// ---------------------------------------------------------------------------
// The event loop.
// ---------------------------------------------------------------------------
void watch(server& s, connection& c, bool want_write) {
    epoll_event event{};
    event.events = EPOLLIN | EPOLLRDHUP | (want_write ? EPOLLOUT : 0u);
    event.data.fd = c.fd;
    epoll_ctl(s.epoll_fd, EPOLL_CTL_MOD, c.fd, &event);
}

// Writes what it can; false when the connection is finished.
bool flush(server& s, connection& c) {
    while (!c.out.empty()) {
        const ssize_t n = ::send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
        if (n > 0) {
            c.out.erase(0, static_cast<std::size_t>(n));
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            watch(s, c, true);
            return c.out.size() <= max_send_queue;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else {
            return false;
        }
    }
    watch(s, c, false);
    return !c.closing;
}

void on_readable(server& s, connection& c, bool& keep) {
    char buffer[64 * 1024];
    for (;;) {
        const ssize_t n = ::recv(c.fd, buffer, sizeof buffer, 0);
        if (n > 0 && c.closing) {
            continue;  // refused or closing: read and drop until the reply is out
        } else if (n > 0) {
            c.in.append(buffer, static_cast<std::size_t>(n));
            if (!c.upgraded && settle_first_bytes(s, c)) handle_upgrade(s, c);
            if (c.upgraded && !c.closing) handle_frames(s, c);
            if (c.closing) break;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        } else {
            keep = false;
            return;
        }
    }
    keep = flush(s, c);
}

int listen_on(unsigned short& port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 || ::listen(fd, 128) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
        ::close(fd);
        return -1;
    }
    port = ntohs(address.sin_port);
    return fd;
}

void accept_all(server& s, int listen_fd) {
    for (;;) {
        sockaddr_in peer{};
        socklen_t length = sizeof peer;
        const int fd = ::accept4(listen_fd, reinterpret_cast<sockaddr*>(&peer), &length, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        if (static_cast<int>(s.connections.size()) >= max_connections) {
            ::close(fd);
            continue;
        }
        auto c = std::make_unique<connection>();
        c->fd = fd;
        char text[INET_ADDRSTRLEN] = {};
        inet_ntop(AF_INET, &peer.sin_addr, text, sizeof text);
        c->peer = text;
        std::memcpy(c->peer_bytes, &peer.sin_addr, sizeof c->peer_bytes);
        if (s.opts.proxy_protocol) {  // every connection's first bytes are checked for a PROXY header
            c->first_bytes_settled = false;
            c->from_trusted_proxy = s.proxies->trusts(c->peer);
        }

        // Admission before any HTTP byte: over its pending cap (or the total),
        // the socket closes unanswered and the server has spent one accept.
        const auto now = std::chrono::steady_clock::now();
        c->deadline = now + std::chrono::milliseconds(s.opts.handshake_deadline_ms);
        // A trusted L4 proxy's connections are admitted once their PROXY header
        // names the client (settle_first_bytes): keyed by the proxy, one
        // flooding client would use up every client's pending slots.
        if (s.gate && !c->from_trusted_proxy) {
            const std::optional<wsguard::address_key> key = s.gate->address_of(c->peer_bytes, sizeof c->peer_bytes);
            c->pending = s.gate->try_admit(*key, now);  // 4 bytes: always a key
            if (!c->pending) {
                s.log.write(std::string("refused ") + wsguard::to_string(c->pending.decision().reason) + " at accept peer=" + text);
                continue;  // ~connection closes the socket
            }
            c->deadline = c->pending.deadline();
        }
        c->in_pending_list = s.pending.insert(s.pending.end(), c.get());
        const int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        epoll_event event{};
        event.events = EPOLLIN | EPOLLRDHUP;
        event.data.fd = fd;
        epoll_ctl(s.epoll_fd, EPOLL_CTL_ADD, fd, &event);
        s.connections[fd] = std::move(c);
    }
}

// Milliseconds epoll_wait may sleep: until the earliest handshake deadline
// (rounded up, so the wake-up is never early), or forever if none is pending.
int wait_for_deadline(const server& s) {
    if (s.pending.empty()) return -1;
    const auto left = s.pending.front()->deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero()) return 0;
    return static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(left).count());
}

// Closes every connection whose upgrade request did not complete in time.
void close_expired(server& s) {
    const auto now = std::chrono::steady_clock::now();
    while (!s.pending.empty() && s.pending.front()->deadline <= now) {
        connection& c = *s.pending.front();
        s.log.write(std::string("refused ") + wsguard::to_string(wsguard::reason::handshake_deadline_passed) + " peer=" + c.peer);
        close_connection(s, s.connections.find(c.fd));
    }
}

}  // namespace

int main(int argc, char** argv) {
    const std::optional<example::options> opts = example::parse_options(argc, argv, usage);
    if (!opts) return 2;

    wsguard::inflate_limits inflate;
    inflate.max_inflated_bytes = opts->max_inflated_bytes;
    auto budget = wsguard::inflate_budget::create(inflate);
    if (!budget) {
        std::fprintf(stderr, "%s\n", budget.error().c_str());
        return 2;
    }
    wsguard::frame_limits limits;
    limits.max_message_bytes = opts->max_message_bytes;
    limits.max_fragments = 64;
    server s{*opts, limits, *budget, nullptr, nullptr, std::nullopt, -1, {}, {}, {}, {}, {}};
    s.head_budget = wsguard::request_head_budget::create({max_request_head, 64}).value();
    if (!example::make_accept_gate(*opts, s.gate)) return 2;

    const std::unique_ptr<example::tickets> tickets = example::tickets::create(opts->replay_capacity);
    if (!tickets) return 1;

    // SIGTERM and SIGINT arrive through a signalfd, as one more epoll event.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    sigprocmask(SIG_BLOCK, &stop_signals, nullptr);
    const int signal_fd = signalfd(-1, &stop_signals, SFD_NONBLOCK | SFD_CLOEXEC);

    unsigned short port = opts->port;
    const int listen_fd = listen_on(port);
    if (listen_fd < 0) {
        std::fprintf(stderr, "cannot listen on 127.0.0.1:%u: %s\n", static_cast<unsigned>(opts->port), std::strerror(errno));
        return 1;
    }

    // The allowed origins and hosts name the bound port.
    wsguard::handshake_config config = example::handshake_config(port, *opts, ticket_audience, *tickets->verifier);
    config.on_refusal = [&s](const wsguard::refusal_event& e) {  // the shared line, under the shared budget
        s.log.write("refused " + std::string(wsguard::to_string(e.decision.reason)) + " origin=" + std::string(e.origin) +
                    " address=" + std::string(e.address));
    };
    if (opts->proxy_protocol) s.proxies.emplace(wsguard::trusted_proxies::create(opts->trusted_proxies).value());
    auto guard = wsguard::handshake_guard::create(std::move(config));
    if (!guard) {
        std::fprintf(stderr, "%s\n", guard.error().c_str());
        return 2;
    }
    s.guard = &guard.value();
    const std::unique_ptr<example::ticket_endpoint> ticket_endpoint =
        example::ticket_endpoint::create(port, *opts, *tickets->issuer, ticket_audience);
    if (!ticket_endpoint) return 2;
    s.tickets = ticket_endpoint.get();

    s.epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    for (const int fd : {listen_fd, signal_fd}) {
        epoll_event event{};
        event.events = EPOLLIN;
        event.data.fd = fd;
        epoll_ctl(s.epoll_fd, EPOLL_CTL_ADD, fd, &event);
    }
    std::printf("listening %u\n", static_cast<unsigned>(port));
    std::fflush(stdout);

    epoll_event events[64];
    for (bool running = true; running;) {
        const int ready = epoll_wait(s.epoll_fd, events, 64, wait_for_deadline(s));
        if (ready < 0 && errno != EINTR) break;
        for (int i = 0; i < ready; ++i) {
            const int fd = events[i].data.fd;
            if (fd == signal_fd) {
                running = false;
            } else if (fd == listen_fd) {
                accept_all(s, listen_fd);
            } else if (auto found = s.connections.find(fd); found != s.connections.end()) {
                connection& c = *found->second;
                bool keep = true;
                if (events[i].events & (EPOLLIN | EPOLLRDHUP)) on_readable(s, c, keep);
                else if (events[i].events & EPOLLOUT) keep = flush(s, c);
                if (keep && (events[i].events & (EPOLLHUP | EPOLLERR))) keep = false;
                if (!keep) close_connection(s, found);
            }
        }
        close_expired(s);
    }
    while (!s.connections.empty()) close_connection(s, s.connections.begin());
    if (s.opts.time_guard) {
        std::printf("guard_check_ns %llu checks %llu\n", static_cast<unsigned long long>(s.guard_check_ns),
                    static_cast<unsigned long long>(s.guard_checks));
        std::fflush(stdout);
    }
    if (s.log.suppressed_total() > 0)
        std::fprintf(stderr, "refusal log: %llu lines suppressed in all\n", static_cast<unsigned long long>(s.log.suppressed_total()));
    ::close(listen_fd);
    ::close(signal_fd);
    ::close(s.epoll_fd);
    return 0;
}
