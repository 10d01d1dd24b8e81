// wsguard in a uWebSockets server (no TLS: uSockets built with LIBUS_NO_SSL).
//
//   POST /ticket  Authorization: Bearer <session>, X-Wsguard-Ticket: 1  -> {"ticket":"..."} bound to
//                 the caller's Origin (mint_guard; OPTIONS /ticket is the CORS preflight)
//   GET  /ws      the guarded echo socket: Origin, Host, rate limits, connection cap and a
//                 one-time ticket in "Sec-WebSocket-Protocol: wsguard.v1, <ticket>" (or ?ticket=)
//
// Usage: wsguard_uwebsockets [--port N] [--allow-origin ORIGIN]... [--max-message BYTES] [--session TOKEN]
//        [--handshake-rate N] [--handshake-burst N]
//        [--max-pending-per-address N] [--max-pending-total N] [--handshake-deadline-ms MS]
// Binds 127.0.0.1, prints "listening <port>" once ready, exits on SIGTERM/SIGINT.
// The session token stands in for the application's login.
//
// uWebSockets caveat: a message over maxPayloadLength (after inflation too)
// drops the TCP connection without a close frame, so clients see 1006, not 1009.
//
// Admission at accept: uWebSockets calls App::filter with +1 as soon as it has
// accepted a socket, before a byte is read; there an accept_gate admits it by
// peer address or closes it. The filter's -1 (the HTTP socket closed) and the
// upgrade handler (upgrade() moves the socket to the WebSocket context without
// closing it, so no -1 follows) give the pending slot back. A 100 ms timer
// closes sockets still pending at their deadline, a trickle included; uWS's
// own HTTP timeout (8-12 s after accept) stays on as well. docs/stacks-admission.md
#include "example_app.hpp"

#include <App.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace {

constexpr const char* usage =
    "usage: wsguard_uwebsockets [--port N] [--allow-origin ORIGIN]... [--max-message BYTES] [--session TOKEN]\n"
    "       [--handshake-rate N] [--handshake-burst N]\n"
    "       [--max-pending-per-address N] [--max-pending-total N] [--handshake-deadline-ms MS]\n";

// What one open socket keeps: its connection slot and its message budget.
struct socket_state {
    wsguard::handshake_outcome::connection_permit permit;
    std::optional<wsguard::token_bucket> messages;
};

// An HTTP socket admitted at accept that has not upgraded yet. `serial` tells
// it from a later socket uSockets allocates at the same address.
struct pending_socket {
    wsguard::accept_permit permit;  // empty when the gate is off (--max-pending-per-address 0)
    std::chrono::steady_clock::time_point deadline;
    std::uint64_t serial = 0;
};

constexpr const char* audience = "wsguard-example/ws";
volatile std::sig_atomic_t stop_requested = 0;

}  // namespace

int main(int argc, char** argv) {
    const std::optional<example::options> opts = example::parse_options(argc, argv, usage);
    if (!opts) return 2;
    const std::unique_ptr<example::tickets> tickets = example::tickets::create(100000);
    if (!tickets) return 1;

    // Created in the listen callback, once the port is known, before the loop
    // serves anything (uWebSockets runs on this one thread).
    std::optional<wsguard::handshake_guard> guard;
    using socket_type = uWS::WebSocket<false, true, socket_state>;
    std::set<socket_type*> open_sockets;

    // Declared before the app: its sockets call the filter until the last one closes.
    std::optional<wsguard::accept_gate> gate;
    if (!example::make_accept_gate(*opts, gate)) return 2;
    std::unordered_map<us_socket_t*, pending_socket> pending;
    std::deque<std::pair<us_socket_t*, std::uint64_t>> pending_order;  // accept order, so deadline order
    std::uint64_t last_serial = 0;
    // Refusals at accept and deadline expiries on stderr, at most 20 lines a second.
    wsguard::token_bucket log_budget = wsguard::token_bucket::create({wsguard::rate::per_second(20), 20}).value();
    const auto log_line = [&](wsguard::reason why, uWS::HttpResponse<false>* res) {
        if (!log_budget.try_acquire()) return;
        const std::string_view address = res->getRemoteAddressAsText();
        std::fprintf(stderr, "refused %s address=%.*s\n", wsguard::to_string(why), static_cast<int>(address.size()), address.data());
    };

    uWS::App app;
    // Admission before any HTTP byte: +1 right after accept, -1 when an HTTP
    // socket closes. A refused socket is closed here, unanswered (uWS calls the
    // filter with -1 from inside close(), which finds nothing pending).
    app.filter([&](auto* res, int event) {
        us_socket_t* socket = reinterpret_cast<us_socket_t*>(res);
        if (event < 0) {
            pending.erase(socket);  // its slot returns
            return;
        }
        pending_socket entry;
        entry.deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(opts->handshake_deadline_ms);
        if (gate) {
            const std::string_view peer = res->getRemoteAddress();  // 4 or 16 raw bytes, empty on failure
            const std::optional<wsguard::address_key> key =
                gate->address_of(reinterpret_cast<const std::uint8_t*>(peer.data()), peer.size());
            if (key) entry.permit = gate->try_admit(*key);
            if (!entry.permit) {
                log_line(entry.permit.decision().reason, res);
                res->close();
                return;
            }
            entry.deadline = entry.permit.deadline();
        }
        entry.serial = ++last_serial;
        pending.insert_or_assign(socket, std::move(entry));
        pending_order.emplace_back(socket, last_serial);
    });
    // POST /ticket and its CORS preflight (any other method: 405): the shared
    // endpoint (mint_guard), with the bearer token as the login.
    std::unique_ptr<example::ticket_endpoint> ticket_endpoint;  // created with the guard, once the port is known
    app.any(example::ticket_endpoint::path, [&](auto* res, auto* req) {
        wsguard::mint_request mint;
        mint.method = req->getCaseSensitiveMethod();
        mint.origin = req->getHeader("origin");
        mint.sec_fetch_site = req->getHeader("sec-fetch-site");
        mint.marker = req->getHeader("x-wsguard-ticket");  // uWebSockets wants the lowercase name
        mint.subject = req->getHeader("authorization") == "Bearer " + opts->session ? "demo-user" : "";
        const std::string_view peer = res->getRemoteAddress();  // 4 or 16 raw bytes
        mint.remote_address_bytes = reinterpret_cast<const std::uint8_t*>(peer.data());
        mint.remote_address_size = peer.size();
        mint.access_control_request_method = req->getHeader("access-control-request-method");
        mint.access_control_request_headers = req->getHeader("access-control-request-headers");
        const example::http_answer answer = ticket_endpoint->answer(mint);
        res->writeStatus(std::to_string(answer.status) + " " + std::string(wsguard::http_reason_phrase(answer.status)));
        res->writeHeader("Content-Type", answer.content_type)->writeHeader("Cache-Control", "no-store");
        for (const auto& [name, value] : answer.headers) res->writeHeader(name, value);
        res->end(answer.body);
    });

    app.ws<socket_state>("/ws", {
        .compression = uWS::SHARED_COMPRESSOR,
        .maxPayloadLength = static_cast<unsigned>(opts->max_message_bytes),  // the message cap, inflated size included
        .idleTimeout = 60,
        .upgrade = [&](auto* res, auto* req, auto* context) {
            // The request is complete: it is answered with 101 or a refusal
            // that closes the connection, and either way its pending slot returns.
            pending.erase(reinterpret_cast<us_socket_t*>(res));
            // getFullUrl(): path and "?ticket=..." (the guard splits them); every header
            // line in arrival order, names lowercased (getHeader would see only the first).
            wsguard::upgrade_request_builder build(req->getCaseSensitiveMethod(), req->getFullUrl());
            for (auto [name, value] : *req) build.add(name, value);
            const std::string_view peer = res->getRemoteAddress();  // 4 or 16 raw bytes
            build.request().remote_address_bytes = reinterpret_cast<const std::uint8_t*>(peer.data());
            build.request().remote_address_size = peer.size();
            wsguard::handshake_outcome outcome = guard->check(build.request());
            if (!outcome) {
                const int status = outcome.http_status();
                res->writeStatus(std::to_string(status) + " " + std::string(wsguard::http_reason_phrase(status)));
                if (outcome.retry_after_seconds() > 0) res->writeHeader("Retry-After", std::to_string(outcome.retry_after_seconds()));
                res->end(std::string(outcome.body()) + "\n", true);  // and close: no keep-alive after a refusal
                return;
            }
            socket_state state{outcome.take_permit(), example::message_bucket(*opts)};
            // Answer with outcome.subprotocol() ("wsguard.v1"), never the client's header: it holds the ticket.
            res->template upgrade<socket_state>(std::move(state), req->getHeader("sec-websocket-key"), outcome.subprotocol(),
                                                req->getHeader("sec-websocket-extensions"), context);
        },
        .open = [&](auto* ws) { open_sockets.insert(ws); },
        .message = [](auto* ws, std::string_view message, uWS::OpCode op) {
            if (!ws->getUserData()->messages->try_acquire()) {  // 1008 message_rate_limited
                constexpr wsguard::decision why = example::message_refusal;
                ws->end(why.close_code(), wsguard::to_string(why.reason));
                return;
            }
            ws->send(message, op);
        },
        .close = [&](auto* ws, int, std::string_view) {
            open_sockets.erase(ws);  // the socket_state (and its permit) is destroyed by uWebSockets
        },
    });

    app.listen("127.0.0.1", opts->port, [&](auto* listen_socket) {
        if (!listen_socket) return;
        const int port = us_socket_local_port(0, reinterpret_cast<us_socket_t*>(listen_socket));
        // The allowed origins and hosts name the port just bound.
        auto created = wsguard::handshake_guard::create(
            example::handshake_config(static_cast<unsigned short>(port), *opts, audience, *tickets->verifier));
        if (!created) {
            std::fprintf(stderr, "%s\n", created.error().c_str());
            std::exit(1);
        }
        guard.emplace(std::move(created).value());
        ticket_endpoint = example::ticket_endpoint::create(static_cast<unsigned short>(port), *opts, *tickets->issuer, audience);
        if (!ticket_endpoint) std::exit(1);
        std::printf("listening %d\n", port);
        std::fflush(stdout);
    });
    if (!guard) {
        std::fprintf(stderr, "cannot listen on 127.0.0.1:%u\n", static_cast<unsigned>(opts->port));
        return 1;
    }

    // Every 100 ms, on the loop: close the sockets still pending at their
    // deadline (accept order is deadline order, so the sweep stops at the first
    // one not due), and once SIGTERM/SIGINT set the flag, close every socket,
    // after which run() returns.
    std::signal(SIGTERM, [](int) { stop_requested = 1; });
    std::signal(SIGINT, [](int) { stop_requested = 1; });
    std::function<void(us_timer_t*)> every_100ms = [&](us_timer_t* timer) {
        const auto now = std::chrono::steady_clock::now();
        while (!pending_order.empty()) {
            const auto [socket, serial] = pending_order.front();
            const auto it = pending.find(socket);
            if (it != pending.end() && it->second.serial == serial) {  // else it closed or upgraded already
                if (it->second.deadline > now) break;
                log_line(wsguard::reason::handshake_deadline_passed, reinterpret_cast<uWS::HttpResponse<false>*>(socket));
                us_socket_close(0, socket, 0, nullptr);  // the filter's -1 erases it
            }
            pending_order.pop_front();
        }
        if (!stop_requested) return;
        for (socket_type* ws : std::set<socket_type*>(open_sockets)) ws->end(1001, "server shutting down");
        app.close();
        us_timer_close(timer);
    };
    us_timer_t* timer = us_create_timer(reinterpret_cast<us_loop_t*>(uWS::Loop::get()), 0, sizeof(&every_100ms));
    *static_cast<std::function<void(us_timer_t*)>**>(us_timer_ext(timer)) = &every_100ms;
    us_timer_set(timer, [](us_timer_t* t) { (**static_cast<std::function<void(us_timer_t*)>**>(us_timer_ext(t)))(t); }, 100, 100);

    app.run();
    return 0;
}
