// wsguard in a uWebSockets server (no TLS: uSockets built with LIBUS_NO_SSL).
//
//   POST /ticket  Authorization: Bearer <session>  -> {"ticket":"..."} bound to the caller's Origin
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
#include <wsguard.hpp>

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

struct options {
    unsigned short port = 0;
    std::vector<std::string> extra_origins;
    unsigned max_message_bytes = 64 * 1024;
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
        else if (flag == "--max-message") parsed.max_message_bytes = static_cast<unsigned>(std::strtoul(value.c_str(), nullptr, 10));
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
    std::optional<wsguard::token_bucket> messages;
};

constexpr const char* audience = "wsguard-example/ws";
volatile std::sig_atomic_t stop_requested = 0;

}  // namespace

int main(int argc, char** argv) {
    const std::optional<options> opts = parse_options(argc, argv);
    if (!opts) {
        std::fprintf(stderr, "usage: wsguard_uwebsockets [--port N] [--allow-origin ORIGIN]... [--max-message BYTES] [--session TOKEN]\n"
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

    // Created in the listen callback, once the port is known, before the loop
    // serves anything (uWebSockets runs on this one thread).
    std::optional<wsguard::handshake_guard> guard;
    using socket_type = uWS::WebSocket<false, true, socket_state>;
    std::set<socket_type*> open_sockets;

    uWS::App app;
    app.post("/ticket", [&](auto* res, auto* req) {
        if (req->getHeader("authorization") != "Bearer " + opts->session) {
            res->writeStatus("401 Unauthorized")->end("login required\n");
            return;
        }
        wsguard::ticket_request ticket;
        ticket.subject = "demo-user";
        ticket.origin = req->getHeader("origin");
        ticket.audience = audience;
        const wsguard::issued_ticket issued = issuer->issue(ticket);
        if (!issued) {
            const std::string status = std::to_string(issued.status.http_status()) + " Error";
            res->writeStatus(status)->end(wsguard::to_string(issued.status.reason));
            return;
        }
        res->writeHeader("Content-Type", "application/json")->writeHeader("Cache-Control", "no-store")
            ->end("{\"ticket\":\"" + issued.ticket + "\"}\n");
    });

    app.ws<socket_state>("/ws", {
        .compression = uWS::SHARED_COMPRESSOR,
        .maxPayloadLength = opts->max_message_bytes,  // the message cap, inflated size included
        .idleTimeout = 60,
        .upgrade = [&](auto* res, auto* req, auto* context) {
            wsguard::upgrade_request up;
            up.method = req->getCaseSensitiveMethod();
            up.path = req->getUrl();
            up.query = req->getQuery();
            up.origin = req->getHeader("origin");
            up.host = req->getHeader("host");
            up.sec_fetch_site = req->getHeader("sec-fetch-site");
            up.sec_websocket_protocol = req->getHeader("sec-websocket-protocol");
            const std::string_view peer = res->getRemoteAddress();  // 4 or 16 raw bytes
            up.remote_address_bytes = reinterpret_cast<const std::uint8_t*>(peer.data());
            up.remote_address_size = peer.size();
            wsguard::handshake_outcome outcome = guard->check(up);
            if (!outcome) {
                const int status = outcome.http_status();
                res->writeStatus(std::to_string(status) + " " + std::string(wsguard::http_reason_phrase(status)));
                if (outcome.retry_after_seconds() > 0) res->writeHeader("Retry-After", std::to_string(outcome.retry_after_seconds()));
                res->end(std::string(outcome.body()) + "\n");
                return;
            }
            socket_state state{outcome.take_permit(), std::nullopt};
            state.messages.emplace(wsguard::token_bucket::create(20, 40).value());  // 20 messages/s, burst 40
            // Answer with outcome.subprotocol() ("wsguard.v1"), never the client's header: it holds the ticket.
            res->template upgrade<socket_state>(std::move(state), req->getHeader("sec-websocket-key"), outcome.subprotocol(),
                                                req->getHeader("sec-websocket-extensions"), context);
        },
        .open = [&](auto* ws) { open_sockets.insert(ws); },
        .message = [](auto* ws, std::string_view message, uWS::OpCode op) {
            if (!ws->getUserData()->messages->try_acquire()) {  // a bucket answers rate_limited; per message it is 1008
                constexpr wsguard::reason why = wsguard::reason::message_rate_limited;
                ws->end(wsguard::close_code_of(why), wsguard::to_string(why));
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
        const std::string p = std::to_string(port);
        wsguard::handshake_config config;
        wsguard::route_config ws;
        ws.path = "/ws";
        ws.origins = {"http://127.0.0.1:" + p, "http://localhost:" + p};
        ws.origins.insert(ws.origins.end(), opts->extra_origins.begin(), opts->extra_origins.end());
        ws.hosts = {"127.0.0.1:" + p, "localhost:" + p};
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
            std::exit(1);
        }
        guard.emplace(std::move(created).value());
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
