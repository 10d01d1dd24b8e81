// wsguard on websocketpp: the whole handshake policy runs in the validate
// handler, before websocketpp answers 101. One thread, loopback only.
//
//   GET  /         sets a demo session cookie (stands in for the app's login)
//   POST /ticket   a one-time ticket for the request's Origin and the /ws audience
//   GET  /ws       the guarded echo socket
//
// Usage: wsguard_websocketpp_demo [--port N] [--allow-origin ORIGIN]... [--max-message BYTES]
#include <wsguard.hpp>

#include <websocketpp/config/asio_no_tls.hpp>
#include <websocketpp/server.hpp>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

using server = websocketpp::server<websocketpp::config::asio>;

namespace {

struct options {
    unsigned short port = 0;
    std::vector<std::string> extra_origins;
    std::size_t max_message_bytes = 64 * 1024;
};

bool parse_options(int argc, char** argv, options& out) {
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string flag = argv[i];
        const char* value = argv[i + 1];
        const unsigned long number = std::strtoul(value, nullptr, 10);
        if (flag == "--allow-origin") out.extra_origins.emplace_back(value);
        else if (flag == "--port" && number <= 65535) out.port = static_cast<unsigned short>(number);
        else if (flag == "--max-message" && number > 0) out.max_message_bytes = number;
        else return false;
    }
    return argc % 2 == 1;
}

// The wsguard pieces, built once and never moved: the verifier points at the
// replay store, the guard at the verifier.
struct policy {
    std::optional<wsguard::memory_replay_store> replay_store;
    std::optional<wsguard::ticket_verifier<>> verifier;
    std::optional<wsguard::ticket_issuer> issuer;
    std::optional<wsguard::origin_policy> ticket_origins;  // who may POST /ticket
    std::optional<wsguard::handshake_guard> guard;
    std::string session;                                   // the demo login cookie's value
};

constexpr const char* audience = "wsguard-websocketpp/ws";

bool build_policy(const options& opts, policy& out) {
    const std::string port = std::to_string(opts.port);
    std::vector<std::string> origins{"http://127.0.0.1:" + port, "http://localhost:" + port};
    origins.insert(origins.end(), opts.extra_origins.begin(), opts.extra_origins.end());
    std::uint8_t secret[32];
    std::uint8_t session[16];
    if (wsguard::random_bytes(secret, sizeof secret) != wsguard::reason::ok ||
        wsguard::random_bytes(session, sizeof session) != wsguard::reason::ok)
        return false;
    for (std::uint8_t byte : session) out.session += {"0123456789abcdef"[byte >> 4], "0123456789abcdef"[byte & 15]};

    auto keys = wsguard::keyring::create(1, {{1, std::string_view(reinterpret_cast<const char*>(secret), sizeof secret), {}}});
    auto store = wsguard::memory_replay_store::create(65536);
    auto ticket_origins = wsguard::origin_policy::create(origins);
    if (!keys || !store || !ticket_origins) return false;
    out.replay_store.emplace(std::move(store).value());
    auto verifier = wsguard::ticket_verifier<>::create(*keys, *out.replay_store);
    auto issuer = wsguard::ticket_issuer::create(*keys);
    if (!verifier || !issuer) return false;
    out.verifier.emplace(std::move(verifier).value());
    out.issuer.emplace(std::move(issuer).value());
    out.ticket_origins.emplace(std::move(ticket_origins).value());

    wsguard::handshake_config config;
    wsguard::route_config route;
    route.path = "/ws";
    route.origins = origins;
    route.hosts = {"127.0.0.1:" + port, "localhost:" + port};
    route.audience = audience;
    config.routes.push_back(route);
    config.verifier = &*out.verifier;
    auto guard = wsguard::handshake_guard::create(std::move(config));
    if (!guard) {
        std::fprintf(stderr, "%s\n", guard.error().c_str());
        return false;
    }
    out.guard.emplace(std::move(guard).value());
    return true;
}

// What the server keeps per open socket: the outcome holds the per-address
// connection slot, released when the entry is erased on close.
struct open_socket {
    wsguard::handshake_outcome outcome;
    wsguard::token_bucket messages;
};

}  // namespace

int main(int argc, char** argv) {
    options opts;
    if (!parse_options(argc, argv, opts)) {
        std::fputs("usage: wsguard_websocketpp_demo [--port N] [--allow-origin ORIGIN]... [--max-message BYTES]\n", stderr);
        return 2;
    }
    server srv;
    srv.clear_access_channels(websocketpp::log::alevel::all);
    srv.clear_error_channels(websocketpp::log::elevel::all);
    srv.init_asio();
    srv.set_reuse_addr(true);
    srv.set_max_message_size(opts.max_message_bytes);  // websocketpp closes with 1009 above it
    websocketpp::lib::error_code ec;
    srv.listen(boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), opts.port), ec);
    if (ec) {
        std::fprintf(stderr, "cannot listen on 127.0.0.1:%u: %s\n", opts.port, ec.message().c_str());
        return 1;
    }
    boost::system::error_code endpoint_error;
    opts.port = srv.get_local_endpoint(endpoint_error).port();

    policy wsguard_policy;
    if (!build_policy(opts, wsguard_policy)) return 2;
    wsguard::handshake_guard& guard = *wsguard_policy.guard;
    std::map<websocketpp::connection_hdl, open_socket, std::owner_less<websocketpp::connection_hdl>> sockets;

    srv.set_validate_handler([&](websocketpp::connection_hdl hdl) {
        server::connection_ptr con = srv.get_con_from_hdl(hdl);
        const std::string& resource = con->get_resource();  // path?query
        const std::size_t question = std::min(resource.find('?'), resource.size());
        boost::system::error_code peer_error;
        const std::string address = con->get_raw_socket().remote_endpoint(peer_error).address().to_string();

        wsguard::upgrade_request request;
        request.method = con->get_request().get_method();
        request.path = std::string_view(resource).substr(0, question);
        request.query = std::string_view(resource).substr(std::min(question + 1, resource.size()));
        request.origin = con->get_request_header("Origin");
        request.host = con->get_request_header("Host");
        request.sec_fetch_site = con->get_request_header("Sec-Fetch-Site");
        request.sec_websocket_protocol = con->get_request_header("Sec-WebSocket-Protocol");
        request.remote_address = peer_error ? std::string_view() : std::string_view(address);

        wsguard::handshake_outcome outcome = guard.check(request);
        if (!outcome) {  // websocketpp sends this status and body instead of 101
            con->set_status(static_cast<websocketpp::http::status_code::value>(outcome.http_status()));
            con->set_body(std::string(outcome.body()) + "\n");
            if (outcome.retry_after_seconds() > 0)
                con->append_header("Retry-After", std::to_string(outcome.retry_after_seconds()));
            return false;
        }
        if (!outcome.subprotocol().empty()) con->select_subprotocol(std::string(outcome.subprotocol()));
        sockets.emplace(hdl, open_socket{std::move(outcome), wsguard::token_bucket::create(20, 40).value()});
        return true;
    });
    const auto forget = [&](websocketpp::connection_hdl hdl) { sockets.erase(hdl); };
    srv.set_close_handler(forget);
    srv.set_fail_handler(forget);

    srv.set_message_handler([&](websocketpp::connection_hdl hdl, server::message_ptr message) {
        const auto it = sockets.find(hdl);
        if (it == sockets.end()) return;
        websocketpp::lib::error_code ignored;
        if (!it->second.messages.try_acquire()) {
            const wsguard::decision refusal{wsguard::reason::message_rate_limited};
            srv.close(hdl, static_cast<websocketpp::close::status::value>(refusal.close_code()),
                      wsguard::to_string(refusal.reason), ignored);
            return;
        }
        srv.send(hdl, message->get_payload(), message->get_opcode(), ignored);
    });

    // Plain HTTP: the login stand-in and the ticket endpoint.
    srv.set_http_handler([&](websocketpp::connection_hdl hdl) {
        server::connection_ptr con = srv.get_con_from_hdl(hdl);
        const std::string& method = con->get_request().get_method();
        con->append_header("Cache-Control", "no-store");
        if (con->get_resource() == "/" && method == "GET") {
            con->append_header("Set-Cookie", "wsguard_demo_session=" + wsguard_policy.session + "; Path=/; HttpOnly; SameSite=Strict");
            con->set_status(websocketpp::http::status_code::ok);
            con->set_body("demo session started: POST /ticket from an allowed Origin\n");
        } else if (con->get_resource() == "/ticket" && method == "POST") {
            const std::string& origin = con->get_request_header("Origin");
            if (con->get_request_header("Cookie").find("wsguard_demo_session=" + wsguard_policy.session) == std::string::npos) {
                con->set_status(websocketpp::http::status_code::unauthorized);
                con->set_body("login required\n");
            } else if (!wsguard_policy.ticket_origins->check(origin)) {
                con->set_status(websocketpp::http::status_code::forbidden);
                con->set_body("origin not allowed\n");
            } else if (const wsguard::issued_ticket issued = wsguard_policy.issuer->issue({"demo-user", origin, audience, "", {}})) {
                con->set_status(websocketpp::http::status_code::ok);
                con->append_header("Content-Type", "application/json");
                con->set_body("{\"ticket\":\"" + issued.ticket + "\"}\n");
            } else {
                con->set_status(websocketpp::http::status_code::service_unavailable);
                con->set_body(std::string(wsguard::to_string(issued.status.reason)) + "\n");
            }
        } else {
            con->set_status(websocketpp::http::status_code::not_found);
            con->set_body("not found\n");
        }
    });

    srv.start_accept(ec);  // after the handlers: each connection copies them when it is created
    if (ec) return 1;
    boost::asio::signal_set signals(srv.get_io_service(), SIGINT, SIGTERM);
    signals.async_wait([&](const boost::system::error_code&, int) { srv.stop(); });
    std::printf("listening %u\n", static_cast<unsigned>(opts.port));
    std::fflush(stdout);
    srv.run();
    std::printf("stopped\n");
    return 0;
}
