// wsguard in a uWebSockets server (no TLS: uSockets built with LIBUS_NO_SSL).
//
//   POST /ticket  Authorization: Bearer <session>, X-Wsguard-Ticket: 1  -> {"ticket":"..."} bound to
//                 the caller's Origin (mint_guard; OPTIONS /ticket is the CORS preflight)
//   GET  /ws      the guarded echo socket: Origin, Host, rate limits, connection cap and a
//                 one-time ticket in "Sec-WebSocket-Protocol: wsguard.v1, <ticket>" (or ?ticket=)
//
// Usage: wsguard_uwebsockets [--port N] [--allow-origin ORIGIN]... [--max-message BYTES] [--session TOKEN]
//        [--handshake-rate N] [--handshake-burst N]
// Binds 127.0.0.1, prints "listening <port>" once ready, exits on SIGTERM/SIGINT.
// The session token stands in for the application's login.
//
// uWebSockets caveat: a message over maxPayloadLength (after inflation too)
// drops the TCP connection without a close frame, so clients see 1006, not 1009.
#include "example_app.hpp"

#include <App.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace {

constexpr const char* usage =
    "usage: wsguard_uwebsockets [--port N] [--allow-origin ORIGIN]... [--max-message BYTES] [--session TOKEN]\n"
    "       [--handshake-rate N] [--handshake-burst N]\n";

// What one open socket keeps: its connection slot and its message budget.
struct socket_state {
    wsguard::handshake_outcome::connection_permit permit;
    std::optional<wsguard::token_bucket> messages;
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

    uWS::App app;
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
                res->end(std::string(outcome.body()) + "\n");
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

    // SIGTERM/SIGINT set a flag; a timer on the loop sees it and closes every
    // socket, after which run() returns.
    std::signal(SIGTERM, [](int) { stop_requested = 1; });
    std::signal(SIGINT, [](int) { stop_requested = 1; });
    struct stopper {
        uWS::App* app;
        std::set<socket_type*>* sockets;
    };
    us_timer_t* timer = us_create_timer(reinterpret_cast<us_loop_t*>(uWS::Loop::get()), 0, sizeof(stopper));
    *static_cast<stopper*>(us_timer_ext(timer)) = stopper{&app, &open_sockets};
    us_timer_set(timer, [](us_timer_t* t) {
        if (!stop_requested) return;
        stopper* s = static_cast<stopper*>(us_timer_ext(t));
        for (socket_type* ws : std::set<socket_type*>(*s->sockets)) ws->end(1001, "server shutting down");
        s->app->close();
        us_timer_close(t);
    }, 100, 100);

    app.run();
    return 0;
}
