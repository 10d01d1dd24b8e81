// wsguard demo server on Boost.Beast: one thread, asynchronous, loopback only.
//
//   GET  /         the demo page; sets a demo session cookie (stands in for a login)
//   POST /ticket   a one-time ticket for the request's Origin and the /ws audience; needs
//                  the session cookie and "X-Wsguard-Ticket: 1" (OPTIONS /ticket: the CORS
//                  preflight, answered for the allowed origins only)
//   GET  /ws       the guarded echo socket: Origin, Host, Sec-Fetch-Site, per-address
//                  rate limit and connection cap, ticket; then a message size cap
//                  and a per-connection message rate limit
//   GET  /metrics  refusals per reason, for operators (and the end-to-end tests)
//
// Usage: wsguard_beast_demo [--port N] [--allow-origin ORIGIN]... [--max-message BYTES]
//        [--message-rate N] [--handshake-rate N] [--max-connections N]
//        [--max-pending-per-address N] [--max-pending-total N] [--handshake-deadline-ms MS]
//        [--allow-host HOST[:PORT]]... [--trusted-proxy ADDRESS_OR_CIDR]...
//
// Admission happens at accept, before Beast reads a byte: an accept_gate caps the
// sockets per address (64) and in total (384) that have not upgraded yet, so one
// address cannot fill the 512 open sockets, and every socket must complete its
// upgrade within the deadline (10 s from accept, a slowloris trickle included).
//
// Behind nginx or HAProxy (docs/behind-a-proxy.md): --allow-host for the Host the
// proxy passes on, --trusted-proxy for the proxy, whose X-Forwarded-For / Forwarded
// entries then name the client that the per-address limits count.
#include "demo_page.hpp"
#include "demo_app.hpp"

#include <boost/asio.hpp>
#include <boost/beast.hpp>

#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>
#include <string>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;

namespace {

constexpr std::size_t max_open_sessions = 512;  // every socket, HTTP or WebSocket
std::size_t open_sessions = 0;                   // one thread: no atomics needed

struct session_slot {  // counts a socket while it is open
    session_slot() { ++open_sessions; }
    ~session_slot() { --open_sessions; }
    session_slot(const session_slot&) = delete;
    session_slot& operator=(const session_slot&) = delete;
};

// After 101: echoes messages. read_message_max makes Beast close with 1009 on
// an oversized message; the token bucket closes with 1008 on a burst.
class websocket_session : public std::enable_shared_from_this<websocket_session> {
public:
    websocket_session(beast::tcp_stream&& stream, demo::app& app, wsguard::handshake_outcome outcome)
        : ws_(std::move(stream)), app_(app), outcome_(std::move(outcome)), message_bucket_(app.new_message_bucket()) {}

    void accept(const http::request<http::string_body>& request) {
        beast::get_lowest_layer(ws_).expires_never();  // the websocket timeouts take over
        websocket::stream_base::timeout timeouts = websocket::stream_base::timeout::suggested(beast::role_type::server);
        timeouts.idle_timeout = std::chrono::seconds(60);
        ws_.set_option(timeouts);
        ws_.read_message_max(app_.options.max_message_bytes);
        // Echo only "wsguard.v1", never the ticket that rode in the same header.
        ws_.set_option(websocket::stream_base::decorator(
            [protocol = std::string(outcome_.subprotocol())](websocket::response_type& response) {
                if (!protocol.empty()) response.set(http::field::sec_websocket_protocol, protocol);
            }));
        ws_.async_accept(request, [self = shared_from_this()](beast::error_code ec) {
            if (!ec) self->read();
        });
    }

private:
    void read() {
        ws_.async_read(buffer_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
            if (!ec) self->on_message();
        });
    }

    void on_message() {
        if (!message_bucket_.try_acquire()) {
            const wsguard::decision refusal = example::message_refusal;  // closes with 1008
            app_.count_refusal(refusal.reason);
            const auto code = static_cast<websocket::close_code>(refusal.close_code());
            ws_.async_close(websocket::close_reason(code, wsguard::to_string(refusal.reason)),
                            [self = shared_from_this()](beast::error_code) {});
            return;
        }
        ws_.text(ws_.got_text());
        ws_.async_write(buffer_.data(), [self = shared_from_this()](beast::error_code ec, std::size_t) {
            if (ec) return;
            self->buffer_.consume(self->buffer_.size());
            self->read();
        });
    }

    session_slot slot_;
    websocket::stream<beast::tcp_stream> ws_;
    demo::app& app_;
    wsguard::handshake_outcome outcome_;  // holds the per-address connection slot until the socket closes
    wsguard::token_bucket message_bucket_;
    beast::flat_buffer buffer_;
};

// Before 101: plain HTTP with keep-alive and small header and body caps, all
// before one deadline counted from accept (keep-alive requests included: a
// socket that never upgrades holds its pending slot no longer than that).
class http_session : public std::enable_shared_from_this<http_session> {
public:
    http_session(tcp::socket&& socket, demo::app& app, wsguard::accept_permit pending,
                 std::chrono::steady_clock::time_point deadline)
        : stream_(std::move(socket)), app_(app), pending_(std::move(pending)), deadline_(deadline) {}

    void read() {
        parser_.emplace();
        parser_->header_limit(8 * 1024);
        parser_->body_limit(1024);
        stream_.expires_at(deadline_);
        http::async_read(stream_, buffer_, *parser_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
            if (ec == beast::error::timeout) self->app_.count_refusal(wsguard::reason::handshake_deadline_passed);
            if (!ec) self->on_request(self->parser_->release());
        });
    }

private:
    void on_request(http::request<http::string_body> request) {
        const std::string_view target(request.target().data(), request.target().size());
        const std::string_view path = target.substr(0, target.find('?'));
        if (path == "/ws" && websocket::is_upgrade(request)) return upgrade(std::move(request));

        auto response = std::make_shared<http::response<http::string_body>>(http::status::ok, request.version());
        response->keep_alive(request.keep_alive());
        response->set(http::field::cache_control, "no-store");
        response->set(http::field::content_type, "text/plain; charset=utf-8");
        if (path == "/" && request.method() == http::verb::get) {
            response->set(http::field::content_type, "text/html; charset=utf-8");
            response->set(http::field::set_cookie, app_.session_cookie());
            response->body() = demo::page_html;
        } else if (path == example::ticket_endpoint::path) {
            wsguard::mint_request mint;  // POST, or OPTIONS for the CORS preflight
            const std::string address = remote_address();
            mint.method = std::string_view(request.method_string().data(), request.method_string().size());
            mint.origin = header(request, http::field::origin);
            mint.sec_fetch_site = header(request, "Sec-Fetch-Site");
            mint.marker = header(request, example::ticket_endpoint::marker_header);
            mint.remote_address = address;
            mint.access_control_request_method = header(request, "Access-Control-Request-Method");
            mint.access_control_request_headers = header(request, "Access-Control-Request-Headers");
            const example::http_answer answer = app_.ticket(mint, header(request, http::field::cookie));
            response->result(static_cast<unsigned>(answer.status));
            response->set(http::field::content_type, answer.content_type);
            for (const auto& [name, value] : answer.headers) response->set(name, value);
            response->body() = answer.body;
        } else if (path == "/metrics" && request.method() == http::verb::get) {
            response->body() = app_.metrics();
        } else {
            response->result(http::status::not_found);
            response->body() = "not found\n";
        }
        write(std::move(response));
    }

    void upgrade(http::request<http::string_body> request) {
        const std::string address = remote_address();
        // Every header line, in arrival order: the builder fills the request,
        // joins the Forwarded / X-Forwarded-For lines (read only behind a
        // --trusted-proxy) and notes a second Origin or Host, which the guard refuses.
        wsguard::upgrade_request_builder build(text(request.method_string()), text(request.target()));
        for (const auto& field : request) build.add(text(field.name_string()), text(field.value()));
        build.request().remote_address = address;
        wsguard::handshake_outcome outcome = app_.guard().check(build.request());
        if (!outcome) return refuse(request.version(), outcome.decision);
        pending_.release();  // a connection now, under the guard's per-address cap
        std::make_shared<websocket_session>(std::move(stream_), app_, std::move(outcome))->accept(request);
    }

    // Refused before any 101: the status, a short body and Retry-After.
    void refuse(unsigned version, wsguard::decision verdict) {
        auto response = std::make_shared<http::response<http::string_body>>(
            static_cast<http::status>(verdict.http_status()), version);
        response->keep_alive(false);
        response->set(http::field::content_type, "text/plain; charset=utf-8");
        if (verdict.retry_after_seconds() > 0)
            response->set(http::field::retry_after, std::to_string(verdict.retry_after_seconds()));
        response->body() = std::string(wsguard::to_string(verdict.reason)) + "\n";
        write(std::move(response));
    }

    void write(std::shared_ptr<http::response<http::string_body>> response) {
        response->prepare_payload();
        http::async_write(stream_, *response,
                          [self = shared_from_this(), response](beast::error_code ec, std::size_t) {
                              if (ec) return;
                              if (response->keep_alive()) return self->read();
                              beast::error_code ignored;
                              self->stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
                          });
    }

    std::string remote_address() {
        beast::error_code ec;
        const tcp::endpoint peer = stream_.socket().remote_endpoint(ec);
        return ec ? std::string() : peer.address().to_string();
    }

    static std::string_view text(beast::string_view s) { return std::string_view(s.data(), s.size()); }

    template <class Field>
    static std::string_view header(const http::request<http::string_body>& request, Field field) {
        const auto it = request.find(field);
        if (it == request.end()) return {};
        return std::string_view(it->value().data(), it->value().size());
    }

    session_slot slot_;
    beast::tcp_stream stream_;
    demo::app& app_;
    wsguard::accept_permit pending_;  // the accept_gate's slot until the upgrade
    std::chrono::steady_clock::time_point deadline_;
    beast::flat_buffer buffer_;
    std::optional<http::request_parser<http::string_body>> parser_;
};

// Admission before any HTTP byte: over the global cap, or over its address's
// pending cap in the accept_gate (null: no gate), the socket just closes.
void admit(tcp::socket socket, demo::app& app, wsguard::accept_gate* gate) {
    if (open_sessions >= max_open_sessions) return;
    const auto now = std::chrono::steady_clock::now();
    wsguard::accept_permit pending;
    auto deadline = now + std::chrono::milliseconds(app.options.handshake_deadline_ms);
    if (gate != nullptr) {
        beast::error_code ec;
        const asio::ip::address peer = socket.remote_endpoint(ec).address();
        if (ec) return;
        const std::optional<wsguard::address_key> key =
            peer.is_v4() ? gate->address_of(peer.to_v4().to_bytes().data(), 4) : gate->address_of(peer.to_v6().to_bytes().data(), 16);
        pending = gate->try_admit(*key, now);  // 4 or 16 bytes: always a key
        if (!pending) return app.count_refusal(pending.decision().reason);
        deadline = pending.deadline();
    }
    std::make_shared<http_session>(std::move(socket), app, std::move(pending), deadline)->read();
}

void accept_loop(tcp::acceptor& acceptor, demo::app& app, wsguard::accept_gate* gate) {
    acceptor.async_accept([&acceptor, &app, gate](beast::error_code ec, tcp::socket socket) {
        if (ec == asio::error::operation_aborted) return;
        if (!ec) admit(std::move(socket), app, gate);
        accept_loop(acceptor, app, gate);
    });
}

}  // namespace

int main(int argc, char** argv) {
    std::optional<demo::options> options = demo::parse_options(argc, argv);
    if (!options) return 2;

    // Declared before the io_context so that they outlive it: sessions destroyed
    // with the io_context release their slots into the guard and the gate.
    std::unique_ptr<demo::app> app;
    std::optional<wsguard::accept_gate> gate;
    asio::io_context io;
    tcp::acceptor acceptor(io);
    beast::error_code ec;
    const tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), options->port);
    acceptor.open(endpoint.protocol(), ec);
    if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor.bind(endpoint, ec);
    if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
        std::cerr << "cannot listen on 127.0.0.1:" << options->port << ": " << ec.message() << "\n";
        return 1;
    }
    options->port = acceptor.local_endpoint().port();  // --port 0 picks a free port
    app = demo::app::create(*options);
    if (!app) return 2;
    if (!example::make_accept_gate(*options, gate)) return 2;

    asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](beast::error_code, int) {
        acceptor.close();
        io.stop();
    });
    accept_loop(acceptor, *app, gate ? &*gate : nullptr);
    std::printf("listening %u\n", static_cast<unsigned>(options->port));
    std::fflush(stdout);
    io.run();
    std::printf("stopped\n");
    return 0;
}
