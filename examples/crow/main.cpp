// wsguard in a Crow server (Crow v1.3+: onaccept can answer with a response).
//
//   POST /ticket  Authorization: Bearer <session>  -> {"ticket":"..."} bound to the caller's Origin
//   GET  /ws      the guarded echo socket: Origin, Host, rate limits, connection cap and a
//                 one-time ticket in "Sec-WebSocket-Protocol: wsguard.v1, <ticket>" (or ?ticket=)
//
// Usage: wsguard_crow [--port N] [--allow-origin ORIGIN]... [--max-message BYTES] [--session TOKEN]
//        [--handshake-rate N] [--handshake-burst N]
// Binds 127.0.0.1, prints "listening <port>" once ready, exits on SIGTERM/SIGINT.
// The session token stands in for the application's login.
//
// Crow caveat: max_payload caps each frame, but Crow appends the fragments of
// a message without a total cap; a client can grow one fragmented message
// without bound. Put a cap in front (a proxy) or use a stack with a message cap.
#include <wsguard.hpp>

#include <crow.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace {

struct options {
    unsigned short port = 0;
    std::vector<std::string> extra_origins;
    std::uint64_t max_message_bytes = 64 * 1024;
    std::string session = "demo-session";
    std::uint64_t handshake_rate = 10;  // upgrades per second per address...
    std::uint32_t handshake_burst = 20;  // ...with this burst; 429 beyond
};

std::optional<options> parse_options(int argc, char** argv) {
    options parsed;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string flag = argv[i], value = argv[i + 1];
        if (flag == "--port") parsed.port = static_cast<unsigned short>(std::strtoul(value.c_str(), nullptr, 10));
        else if (flag == "--allow-origin") parsed.extra_origins.push_back(value);
        else if (flag == "--max-message") parsed.max_message_bytes = std::strtoull(value.c_str(), nullptr, 10);
        else if (flag == "--session") parsed.session = value;
        else if (flag == "--handshake-rate") parsed.handshake_rate = std::strtoull(value.c_str(), nullptr, 10);
        else if (flag == "--handshake-burst") parsed.handshake_burst = static_cast<std::uint32_t>(std::strtoul(value.c_str(), nullptr, 10));
        else return std::nullopt;
    }
    if (argc % 2 == 0 || parsed.max_message_bytes == 0) return std::nullopt;
    return parsed;
}

// What one open socket keeps: its connection slot and its message budget.
struct socket_state {
    wsguard::handshake_outcome::connection_permit permit;
    wsguard::token_bucket messages;
    std::string subject;
    bool closing = false;
};

constexpr const char* audience = "wsguard-example/ws";

}  // namespace

int main(int argc, char** argv) {
    const std::optional<options> opts = parse_options(argc, argv);
    if (!opts) {
        std::fprintf(stderr, "usage: wsguard_crow [--port N] [--allow-origin ORIGIN]... [--max-message BYTES] [--session TOKEN]\n"
                             "       [--handshake-rate N] [--handshake-burst N]\n");
        return 2;
    }

    // Tickets: a fresh random key per process (a real deployment loads it from
    // its secret store and shares it between the issuer and every server).
    std::uint8_t secret[32];
    if (wsguard::random_bytes(secret, sizeof secret) != wsguard::reason::ok) return 1;
    auto keys = wsguard::keyring::create(1, {{1, std::string_view(reinterpret_cast<const char*>(secret), sizeof secret), {}}});
    auto store = wsguard::memory_replay_store::create(100000);
    if (!keys || !store) return 1;
    auto verifier = wsguard::ticket_verifier<>::create(*keys, *store);
    auto issuer = wsguard::ticket_issuer::create(*keys);
    if (!verifier || !issuer) return 1;

    crow::SimpleApp app;
    app.loglevel(crow::LogLevel::Warning);
    // The allowed origins name the port, known only once Crow has bound it:
    // until the guard exists every upgrade is refused.
    std::unique_ptr<wsguard::handshake_guard> guard_storage;
    std::atomic<wsguard::handshake_guard*> guard{nullptr};

    CROW_ROUTE(app, "/ticket").methods(crow::HTTPMethod::Post)([&](const crow::request& req) {
        if (req.get_header_value("Authorization") != "Bearer " + opts->session) return crow::response(401, "login required\n");
        const std::string& origin = req.get_header_value("Origin");
        wsguard::ticket_request ticket;
        ticket.subject = "demo-user";
        ticket.origin = origin;
        ticket.audience = audience;
        const wsguard::issued_ticket issued = issuer->issue(ticket);
        if (!issued) return crow::response(issued.status.http_status(), wsguard::to_string(issued.status.reason));
        crow::response res(200, "{\"ticket\":\"" + issued.ticket + "\"}\n");
        res.set_header("Content-Type", "application/json");
        res.set_header("Cache-Control", "no-store");
        return res;
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
            wsguard::upgrade_request up;
            const std::string method = crow::method_name(req.method);
            up.method = method;
            up.path = req.raw_url;  // the guard splits off "?ticket=..."
            up.origin = req.get_header_value("Origin");
            up.host = req.get_header_value("Host");
            up.sec_fetch_site = req.get_header_value("Sec-Fetch-Site");
            up.sec_websocket_protocol = req.get_header_value("Sec-WebSocket-Protocol");
            up.remote_address = req.remote_ip_address;
            wsguard::handshake_outcome outcome = g->check(up);
            if (!outcome) {
                res = crow::response(outcome.http_status(), std::string(outcome.body()) + "\n");
                if (outcome.retry_after_seconds() > 0) res->set_header("Retry-After", std::to_string(outcome.retry_after_seconds()));
                return;
            }
            auto messages = wsguard::token_bucket::create(20, 40);  // per socket: 20 messages/s, burst 40
            *userdata = new socket_state{outcome.take_permit(), std::move(messages).value(), std::string(outcome.claims().subject()), false};
        })
        .onmessage([](crow::websocket::connection& conn, const std::string& data, bool is_binary) {
            // Crow still delivers messages it had buffered after close() and
            // even after onclose: drop them.
            auto* state = static_cast<socket_state*>(conn.userdata());
            if (state == nullptr || state->closing) return;
            if (!state->messages.try_acquire()) {  // a bucket answers rate_limited; per message it is 1008
                constexpr wsguard::reason why = wsguard::reason::message_rate_limited;
                state->closing = true;
                return conn.close(wsguard::to_string(why), static_cast<std::uint16_t>(wsguard::close_code_of(why)));
            }
            is_binary ? conn.send_binary(data) : conn.send_text(data);
        })
        .onclose([](crow::websocket::connection& conn, const std::string&, std::uint16_t) {
            delete static_cast<socket_state*>(conn.userdata());  // gives the connection slot back
            conn.userdata(nullptr);
        });

    app.bindaddr("127.0.0.1").port(opts->port).signal_clear().signal_add(SIGINT).signal_add(SIGTERM);
    auto running = app.run_async();
    if (app.wait_for_server_start() != std::cv_status::no_timeout) return 1;

    const std::string port = std::to_string(app.port());
    wsguard::handshake_config config;
    wsguard::route_config ws;
    ws.path = "/ws";
    ws.origins = {"http://127.0.0.1:" + port, "http://localhost:" + port};
    ws.origins.insert(ws.origins.end(), opts->extra_origins.begin(), opts->extra_origins.end());
    ws.hosts = {"127.0.0.1:" + port, "localhost:" + port};
    ws.audience = audience;
    config.routes.push_back(ws);
    config.verifier = &verifier.value();
    config.handshakes_per_second = opts->handshake_rate;
    config.handshake_burst = opts->handshake_burst;
    config.on_refusal = [](const wsguard::refusal_event& e) {
        std::fprintf(stderr, "refused %s origin=%.*s address=%.*s\n", wsguard::to_string(e.reason),
                     static_cast<int>(e.origin.size()), e.origin.data(), static_cast<int>(e.address.size()), e.address.data());
    };
    auto created = wsguard::handshake_guard::create(std::move(config));
    if (!created) {
        std::fprintf(stderr, "%s\n", created.error().c_str());
        app.stop();
        return 1;
    }
    guard_storage = std::make_unique<wsguard::handshake_guard>(std::move(created).value());
    guard.store(guard_storage.get());

    std::printf("listening %s\n", port.c_str());
    std::fflush(stdout);
    running.wait();  // Crow stops on SIGINT/SIGTERM
    return 0;
}
