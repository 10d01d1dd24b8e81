// wsguard in a Crow server (Crow v1.3+: onaccept can answer with a response).
//
//   POST /ticket  Authorization: Bearer <session>, X-Wsguard-Ticket: 1  -> {"ticket":"..."} bound to
//                 the caller's Origin (mint_guard; OPTIONS /ticket is the CORS preflight)
//   GET  /ws      the guarded echo socket: Origin, Host, rate limits, connection cap and a
//                 one-time ticket in "Sec-WebSocket-Protocol: wsguard.v1, <ticket>" (or ?ticket=)
//
// Usage: wsguard_crow [--port N] [--allow-origin ORIGIN]... [--max-message BYTES] [--session TOKEN]
//        [--handshake-rate N] [--handshake-burst N] [--handshake-deadline-ms MS]
//
// Crow has no hook between accept and its HTTP parser, so no accept_gate here.
// Its one timer (app.timeout, whole seconds, set from the deadline: 10 s by
// default, Crow's own is 5 s) is an idle timer that restarts after every read:
// it closes a socket that sends nothing, but a request that trickles a byte
// more often than that is never cut (up to Crow's 80 KiB header limit). Put a
// proxy with a request-header timeout in front. See docs/stacks-admission.md.
// Binds 127.0.0.1, prints "listening <port>" once ready, exits on SIGTERM/SIGINT.
// The session token stands in for the application's login.
//
// Crow caveat: max_payload caps each frame, but Crow appends the fragments of
// a message without a total cap; a client can grow one fragmented message
// without bound. Put a cap in front (a proxy) or use a stack with a message cap.
#include "example_app.hpp"

#include <crow.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace {

constexpr const char* usage =
    "usage: wsguard_crow [--port N] [--allow-origin ORIGIN]... [--max-message BYTES] [--session TOKEN]\n"
    "       [--handshake-rate N] [--handshake-burst N] [--handshake-deadline-ms MS]\n";

// What one open socket keeps: its connection slot and its message budget.
struct socket_state {
    wsguard::handshake_outcome::connection_permit permit;
    wsguard::token_bucket messages;
    std::string subject;
    bool closing = false;
};

constexpr const char* audience = "wsguard-example/ws";

// POST /ticket and its CORS preflight through the shared endpoint (mint_guard),
// with the bearer token as the login. Null until the port is known: 503.
crow::response answer_ticket(example::ticket_endpoint* endpoint, const crow::request& req, const std::string& session) {
    if (endpoint == nullptr) return crow::response(503, "starting\n");
    const std::string method = crow::method_name(req.method);
    wsguard::mint_request mint;
    mint.method = method;
    mint.origin = req.get_header_value("Origin");
    mint.sec_fetch_site = req.get_header_value("Sec-Fetch-Site");
    mint.marker = req.get_header_value(example::ticket_endpoint::marker_header);
    mint.subject = req.get_header_value("Authorization") == "Bearer " + session ? "demo-user" : "";
    mint.remote_address = req.remote_ip_address;
    mint.access_control_request_method = req.get_header_value("Access-Control-Request-Method");
    mint.access_control_request_headers = req.get_header_value("Access-Control-Request-Headers");
    const example::http_answer answer = endpoint->answer(mint);
    crow::response res(answer.status, answer.body);
    res.set_header("Content-Type", answer.content_type);
    res.set_header("Cache-Control", "no-store");
    for (const auto& [name, value] : answer.headers) res.set_header(name, value);
    return res;
}

// Crow answers every OPTIONS request itself (204 with Allow), as soon as the
// headers are parsed, without calling any route or before_handle. Only the
// middlewares' after_handle still runs, so the CORS preflight of /ticket
// replaces Crow's answer there.
struct ticket_preflight {
    struct context {};
    const std::atomic<example::ticket_endpoint*>* endpoint = nullptr;
    const std::string* session = nullptr;

    void before_handle(crow::request&, crow::response&, context&) {}
    void after_handle(crow::request& req, crow::response& res, context&) {
        if (req.method != crow::HTTPMethod::Options || req.url != example::ticket_endpoint::path) return;
        res = answer_ticket(endpoint->load(), req, *session);
    }
};

// Crow picks the subprotocol by splitting Sec-WebSocket-Protocol on ", "
// exactly. RFC 6455 allows any whitespace around the commas, and clients such
// as Node's `ws` send "wsguard.v1,<ticket>", which Crow would answer with no
// subprotocol (the client then fails the handshake). Global middlewares run
// before Crow's upgrade, so the list is rewritten here in the form Crow splits.
struct subprotocol_list {
    struct context {};

    void before_handle(crow::request& req, crow::response&, context&) {
        const auto header = req.headers.find("Sec-WebSocket-Protocol");
        if (header == req.headers.end()) return;
        std::string joined;
        std::string_view rest = header->second;
        while (!rest.empty()) {
            const std::size_t comma = std::min(rest.find(','), rest.size());
            std::string_view item = rest.substr(0, comma);
            rest.remove_prefix(std::min(comma + 1, rest.size()));
            while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
            while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
            if (item.empty()) continue;
            if (!joined.empty()) joined += ", ";
            joined += item;
        }
        header->second = std::move(joined);
    }
    void after_handle(crow::request&, crow::response&, context&) {}
};

}  // namespace

int main(int argc, char** argv) {
    const std::optional<example::options> opts = example::parse_options(argc, argv, usage);
    if (!opts) return 2;
    const std::unique_ptr<example::tickets> tickets = example::tickets::create(100000);
    if (!tickets) return 1;

    std::unique_ptr<example::ticket_endpoint> ticket_storage;  // created with the guard, below
    std::atomic<example::ticket_endpoint*> ticket_endpoint{nullptr};
    crow::App<ticket_preflight, subprotocol_list> app;
    app.get_middleware<ticket_preflight>().endpoint = &ticket_endpoint;
    app.get_middleware<ticket_preflight>().session = &opts->session;
    app.loglevel(crow::LogLevel::Warning);
    // The allowed origins name the port, known only once Crow has bound it:
    // until the guard exists every upgrade is refused.
    std::unique_ptr<wsguard::handshake_guard> guard_storage;
    std::atomic<wsguard::handshake_guard*> guard{nullptr};

    CROW_ROUTE(app, "/ticket").methods(crow::HTTPMethod::Post)([&](const crow::request& req) {
        return answer_ticket(ticket_endpoint.load(), req, opts->session);
    });

    CROW_WEBSOCKET_ROUTE(app, "/ws")
        .subprotocols({"wsguard.v1"})  // answer wsguard.v1, never the ticket: no mirrorprotocols()
        .max_payload(opts->max_message_bytes)  // frames over the cap close the socket (1009)
        .onaccept([&](const crow::request& req, std::optional<crow::response>& res, void** userdata) {
            wsguard::handshake_guard* g = guard.load();
            if (g == nullptr) {
                res = crow::response(503, "starting\n");
                return;
            }
            const std::string method = crow::method_name(req.method);
            wsguard::upgrade_request_builder build(method, req.raw_url);  // the guard splits off "?ticket=..."
            // req.headers (an unordered_multimap) keeps every line, so a second Origin or
            // Host is seen; it does not promise the order of repeated names, which only
            // a chain of X-Forwarded-For lines would need (this example trusts no proxy).
            for (const auto& [name, value] : req.headers) build.add(name, value);
            build.request().remote_address = req.remote_ip_address;
            wsguard::handshake_outcome outcome = g->check(build.request());
            if (!outcome) {
                res = crow::response(outcome.http_status(), std::string(outcome.body()) + "\n");
                if (outcome.retry_after_seconds() > 0) res->set_header("Retry-After", std::to_string(outcome.retry_after_seconds()));
                return;
            }
            *userdata = new socket_state{outcome.take_permit(), example::message_bucket(*opts), std::string(outcome.claims().subject()), false};
        })
        .onmessage([](crow::websocket::connection& conn, const std::string& data, bool is_binary) {
            // Crow still delivers messages it had buffered after close() and
            // even after onclose: drop them.
            auto* state = static_cast<socket_state*>(conn.userdata());
            if (state == nullptr || state->closing) return;
            if (!state->messages.try_acquire()) {  // 1008 message_rate_limited
                constexpr wsguard::decision why = example::message_refusal;
                state->closing = true;
                return conn.close(wsguard::to_string(why.reason), static_cast<std::uint16_t>(why.close_code()));
            }
            is_binary ? conn.send_binary(data) : conn.send_text(data);
        })
        .onclose([](crow::websocket::connection& conn, const std::string&, std::uint16_t) {
            delete static_cast<socket_state*>(conn.userdata());  // gives the connection slot back
            conn.userdata(nullptr);
        });

    // Whole seconds, 1 to 255: Crow's timeout is a std::uint8_t, counted on a
    // 1 s tick, so a silent socket is closed 0-1 s after it. Every read restarts it.
    const auto timeout_seconds = static_cast<std::uint8_t>(std::min<std::uint64_t>(255, (opts->handshake_deadline_ms + 999) / 1000));
    app.timeout(timeout_seconds);
    app.bindaddr("127.0.0.1").port(opts->port).signal_clear().signal_add(SIGINT).signal_add(SIGTERM);
    auto running = app.run_async();
    if (app.wait_for_server_start() != std::cv_status::no_timeout) return 1;

    // The allowed origins and hosts name the port Crow bound.
    auto created = wsguard::handshake_guard::create(example::handshake_config(app.port(), *opts, audience, *tickets->verifier));
    if (!created) {
        std::fprintf(stderr, "%s\n", created.error().c_str());
        app.stop();
        return 1;
    }
    guard_storage = std::make_unique<wsguard::handshake_guard>(std::move(created).value());
    guard.store(guard_storage.get());
    ticket_storage = example::ticket_endpoint::create(app.port(), *opts, *tickets->issuer, audience);
    if (!ticket_storage) {
        app.stop();
        return 1;
    }
    ticket_endpoint.store(ticket_storage.get());

    std::printf("listening %u\n", static_cast<unsigned>(app.port()));
    std::fflush(stdout);
    running.wait();  // Crow stops on SIGINT/SIGTERM
    return 0;
}
