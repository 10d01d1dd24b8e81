// wsguard on websocketpp: the whole handshake policy runs in the validate
// handler, before websocketpp answers 101. One thread, loopback only.
//
//   GET  /         sets a demo session cookie (stands in for the app's login)
//   POST /ticket   a one-time ticket for the request's Origin and the /ws audience
//   GET  /ws       the guarded echo socket
//
// Usage: wsguard_websocketpp_demo [--port N] [--allow-origin ORIGIN]... [--max-message BYTES]
//        [--handshake-rate N] [--handshake-burst N]
//        [--max-pending-per-address N] [--max-pending-total N] [--handshake-deadline-ms MS]
//
// Admission at accept: websocketpp's tcp_post_init handler runs once the socket
// is accepted, before a byte is read; there an accept_gate admits it by peer
// address or closes it. The pending slot returns once the request is answered
// (validate or http handler) or the connection fails; the open-handshake
// timeout (set to the deadline, 10 s) closes a request that never completes.
#include "example_app.hpp"

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

constexpr const char* usage =
    "usage: wsguard_websocketpp_demo [--port N] [--allow-origin ORIGIN]... [--max-message BYTES]\n"
    "       [--handshake-rate N] [--handshake-burst N]\n"
    "       [--max-pending-per-address N] [--max-pending-total N] [--handshake-deadline-ms MS]\n";
constexpr const char* audience = "wsguard-websocketpp/ws";

// What the server keeps per open socket: the outcome holds the per-address
// connection slot, released when the entry is erased on close.
struct open_socket {
    wsguard::handshake_outcome outcome;
    wsguard::token_bucket messages;
};

}  // namespace

int main(int argc, char** argv) {
    std::optional<example::options> opts = example::parse_options(argc, argv, usage);
    if (!opts) return 2;
    server srv;
    srv.clear_access_channels(websocketpp::log::alevel::all);
    srv.clear_error_channels(websocketpp::log::elevel::all);
    srv.init_asio();
    srv.set_reuse_addr(true);
    srv.set_max_message_size(opts->max_message_bytes);  // websocketpp closes with 1009 above it
    // From accept to a complete upgrade request (websocketpp's default is 5 s).
    srv.set_open_handshake_timeout(static_cast<long>(opts->handshake_deadline_ms));
    websocketpp::lib::error_code ec;
    srv.listen(boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), opts->port), ec);
    if (ec) {
        std::fprintf(stderr, "cannot listen on 127.0.0.1:%u: %s\n", static_cast<unsigned>(opts->port), ec.message().c_str());
        return 1;
    }
    boost::system::error_code endpoint_error;
    opts->port = srv.get_local_endpoint(endpoint_error).port();

    // The wsguard pieces, once the port is known: the tickets (never moved,
    // the guard points at their verifier), who may POST /ticket, the guard.
    const std::unique_ptr<example::tickets> tickets = example::tickets::create(65536);
    const std::string session = example::random_hex(16);  // the demo login cookie's value
    if (!tickets || session.empty()) return 2;
    const std::unique_ptr<example::ticket_endpoint> ticket_endpoint =
        example::ticket_endpoint::create(opts->port, *opts, *tickets->issuer, audience);
    if (!ticket_endpoint) return 2;
    wsguard::handshake_config config = example::handshake_config(opts->port, *opts, audience, *tickets->verifier);
    config.on_refusal = nullptr;  // this demo has never logged refusals: its output stays as it was
    auto created = wsguard::handshake_guard::create(std::move(config));
    if (!created) {
        std::fprintf(stderr, "%s\n", created.error().c_str());
        return 2;
    }
    wsguard::handshake_guard& guard = created.value();
    std::map<websocketpp::connection_hdl, open_socket, std::owner_less<websocketpp::connection_hdl>> sockets;

    // Admission before any HTTP byte. A refused socket is closed here; the
    // read websocketpp starts next fails, and the connection ends unanswered.
    std::optional<wsguard::accept_gate> gate;
    if (!example::make_accept_gate(*opts, gate)) return 2;
    std::map<websocketpp::connection_hdl, wsguard::accept_permit, std::owner_less<websocketpp::connection_hdl>> pending;
    srv.set_tcp_post_init_handler([&](websocketpp::connection_hdl hdl) {
        if (!gate) return;
        server::connection_ptr con = srv.get_con_from_hdl(hdl);
        boost::system::error_code peer_error;
        const boost::asio::ip::address peer = con->get_raw_socket().remote_endpoint(peer_error).address();
        std::optional<wsguard::address_key> key;
        if (!peer_error)
            key = peer.is_v4() ? gate->address_of(peer.to_v4().to_bytes().data(), 4)
                               : gate->address_of(peer.to_v6().to_bytes().data(), 16);
        wsguard::accept_permit permit;
        if (key) permit = gate->try_admit(*key);
        if (!permit) {
            con->get_raw_socket().close(peer_error);
            return;
        }
        pending.emplace(hdl, std::move(permit));
    });
    const auto end_pending = [&](websocketpp::connection_hdl hdl) { pending.erase(hdl); };

    srv.set_validate_handler([&](websocketpp::connection_hdl hdl) {
        end_pending(hdl);  // the request is complete: answered with 101 or a refusal
        server::connection_ptr con = srv.get_con_from_hdl(hdl);
        boost::system::error_code peer_error;
        const std::string address = con->get_raw_socket().remote_endpoint(peer_error).address().to_string();

        // websocketpp's parser merges a repeated header into one ", "-joined value, so
        // a second Origin or Host arrives as "a, b" and is refused as malformed (403 or
        // 400); a split Sec-WebSocket-Protocol list reads as the one line it equals.
        wsguard::upgrade_request_builder build(con->get_request().get_method(), con->get_resource());  // path?query
        for (const auto& [name, value] : con->get_request().get_headers()) build.add(name, value);
        build.request().remote_address = peer_error ? std::string_view() : std::string_view(address);

        wsguard::handshake_outcome outcome = guard.check(build.request());
        if (!outcome) {  // websocketpp sends this status and body instead of 101
            con->set_status(static_cast<websocketpp::http::status_code::value>(outcome.http_status()));
            con->set_body(std::string(outcome.body()) + "\n");
            if (outcome.retry_after_seconds() > 0)
                con->append_header("Retry-After", std::to_string(outcome.retry_after_seconds()));
            return false;
        }
        if (!outcome.subprotocol().empty()) con->select_subprotocol(std::string(outcome.subprotocol()));
        sockets.emplace(hdl, open_socket{std::move(outcome), example::message_bucket(*opts)});
        return true;
    });
    const auto forget = [&](websocketpp::connection_hdl hdl) {
        end_pending(hdl);  // a connection that failed before its request completed
        sockets.erase(hdl);
    };
    srv.set_close_handler(forget);
    srv.set_fail_handler(forget);

    srv.set_message_handler([&](websocketpp::connection_hdl hdl, server::message_ptr message) {
        const auto it = sockets.find(hdl);
        if (it == sockets.end()) return;
        websocketpp::lib::error_code ignored;
        if (!it->second.messages.try_acquire()) {
            const wsguard::decision refusal = example::message_refusal;
            srv.close(hdl, static_cast<websocketpp::close::status::value>(refusal.close_code()),
                      wsguard::to_string(refusal.reason), ignored);
            return;
        }
        srv.send(hdl, message->get_payload(), message->get_opcode(), ignored);
    });

    // Plain HTTP: the login stand-in and the ticket endpoint.
    srv.set_http_handler([&](websocketpp::connection_hdl hdl) {
        end_pending(hdl);  // websocketpp answers and closes: no fail or close handler follows
        server::connection_ptr con = srv.get_con_from_hdl(hdl);
        const std::string& method = con->get_request().get_method();
        con->append_header("Cache-Control", "no-store");
        if (con->get_resource() == "/" && method == "GET") {
            con->append_header("Set-Cookie", "wsguard_demo_session=" + session + "; Path=/; HttpOnly; SameSite=Strict");
            con->set_status(websocketpp::http::status_code::ok);
            con->set_body("demo session started: POST /ticket from an allowed Origin\n");
        } else if (con->get_resource() == example::ticket_endpoint::path) {  // POST, or OPTIONS (preflight)
            boost::system::error_code peer_error;
            const std::string address = con->get_raw_socket().remote_endpoint(peer_error).address().to_string();
            wsguard::mint_request mint;
            mint.method = method;
            mint.origin = con->get_request_header("Origin");
            mint.sec_fetch_site = con->get_request_header("Sec-Fetch-Site");
            mint.marker = con->get_request_header(example::ticket_endpoint::marker_header);
            const bool logged_in =
                con->get_request_header("Cookie").find("wsguard_demo_session=" + session) != std::string::npos;
            mint.subject = logged_in ? "demo-user" : "";
            mint.remote_address = peer_error ? std::string_view() : std::string_view(address);
            mint.access_control_request_method = con->get_request_header("Access-Control-Request-Method");
            mint.access_control_request_headers = con->get_request_header("Access-Control-Request-Headers");
            const example::http_answer answer = ticket_endpoint->answer(mint);
            con->set_status(static_cast<websocketpp::http::status_code::value>(answer.status));
            con->append_header("Content-Type", answer.content_type);
            for (const auto& [name, value] : answer.headers) con->append_header(name, value);
            con->set_body(answer.body);
        } else {
            con->set_status(websocketpp::http::status_code::not_found);
            con->set_body("not found\n");
        }
    });

    srv.start_accept(ec);  // after the handlers: each connection copies them when it is created
    if (ec) return 1;
    boost::asio::signal_set signals(srv.get_io_service(), SIGINT, SIGTERM);
    signals.async_wait([&](const boost::system::error_code&, int) { srv.stop(); });
    std::printf("listening %u\n", static_cast<unsigned>(opts->port));
    std::fflush(stdout);
    srv.run();
    std::printf("stopped\n");
    return 0;
}
