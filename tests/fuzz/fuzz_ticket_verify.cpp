// Fuzz target: ticket_verifier::verify and the transport helpers.
// The first input byte picks a mode:
//   0: the rest is presented as a ticket, and as a Sec-WebSocket-Protocol
//      header and a query string: only refusals are allowed.
//   1: the rest mutates a valid ticket (position, xor pairs; or a truncation):
//      anything but the untouched ticket must be refused.
//   2: the rest becomes a ticket body signed with the verifier's key, so the
//      layout parser behind the MAC sees arbitrary authenticated bytes.
#include <wsguard.hpp>

#include <cstdint>
#include <cstdlib>
#include <string>

namespace {

using clock_type = std::chrono::system_clock;
const clock_type::time_point t0{std::chrono::seconds(1'800'000'000)};
const std::string secret(32, 'k');
constexpr std::string_view origin = "https://app.example.com";
constexpr std::string_view audience = "api.example.com/chat";

struct world {
    wsguard::keyring keys = wsguard::keyring::create(7, {{7, secret, std::nullopt}}).value();
    wsguard::ticket_issuer issuer = wsguard::ticket_issuer::create(keys).value();
    std::string valid = issuer.issue({"user-42", origin, audience, "chat:read chat:write", std::chrono::seconds(0)}, t0).ticket;
    wsguard::hmac_sha256_key mac_key{secret};
    // Shared by the inputs that must all be refused (nothing gets stored).
    wsguard::memory_replay_store store = wsguard::memory_replay_store::create(64, t0 - std::chrono::hours(1)).value();
    wsguard::ticket_verifier<> verifier = wsguard::ticket_verifier<>::create(keys, store).value();
};

world& the_world() {
    static world w;
    return w;
}

wsguard::decision verify_shared(std::string_view ticket, wsguard::ticket_claims& claims) {
    return the_world().verifier.verify(wsguard::presented_ticket(ticket), wsguard::expected_origin(origin),
                                       wsguard::expected_audience(audience), claims, t0 + std::chrono::seconds(1));
}

// A fresh store: an accepted ticket must not be remembered across inputs.
wsguard::decision verify_fresh(std::string_view ticket, wsguard::ticket_claims& claims) {
    auto store = wsguard::memory_replay_store::create(64, t0 - std::chrono::hours(1)).value();
    const auto verifier = wsguard::ticket_verifier<>::create(the_world().keys, store).value();
    return verifier.verify(wsguard::presented_ticket(ticket), wsguard::expected_origin(origin),
                           wsguard::expected_audience(audience), claims, t0 + std::chrono::seconds(1));
}

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "fuzz_ticket_verify: %s\n", what);
    std::abort();
}

bool inside(std::string_view part, std::string_view whole) {
    return part.empty() || (part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    world& w = the_world();
    const std::uint8_t mode = data[0] % 3;
    const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
    wsguard::ticket_claims claims;

    if (mode == 0) {
        if (verify_shared(rest, claims).allowed()) fail("a random string verified");
        const wsguard::ticket_source header = wsguard::ticket_from_subprotocol(rest);
        if (header && (!inside(header.ticket, rest) || header.ticket.empty())) fail("subprotocol view out of bounds");
        const wsguard::ticket_source query = wsguard::ticket_from_query(rest);
        if (query && (!inside(query.ticket, rest) || query.ticket.empty())) fail("query view out of bounds");
        if (header && verify_shared(header.ticket, claims).allowed()) fail("a random header verified");
        if (query && verify_shared(query.ticket, claims).allowed()) fail("a random query verified");
    } else if (mode == 1) {
        std::string mutated = w.valid;
        if (!rest.empty() && rest[0] == 'T') {
            mutated.resize(rest.size() > 1 ? static_cast<std::uint8_t>(rest[1]) % (w.valid.size() + 1) : 0);
        } else {
            for (std::size_t i = 0; i + 1 < rest.size(); i += 2) {
                const std::size_t at = static_cast<std::uint8_t>(rest[i]) % mutated.size();
                mutated[at] = static_cast<char>(mutated[at] ^ rest[i + 1]);
            }
        }
        if (mutated == w.valid) {
            if (!verify_fresh(mutated, claims).allowed()) fail("the untouched ticket was refused");
        } else if (verify_shared(mutated, claims).allowed()) {
            fail("a mutated ticket verified");
        }
    } else {
        if (rest.size() > wsguard::ticket_limits::max_bytes) return 0;
        std::uint8_t body[wsguard::ticket_limits::max_bytes + 32];
        std::memcpy(body, rest.data(), rest.size());
        std::size_t body_size = rest.size() < 5 ? 5 : rest.size();
        body[0] = 1;
        body[1] = 0, body[2] = 0, body[3] = 0, body[4] = 7;
        // The documented MAC input: "wsguard-ticket-v1" zero-padded to 64 bytes, then the body.
        std::uint8_t domain[64] = "wsguard-ticket-v1";
        wsguard::hmac_sha256_key::stream stream = w.mac_key.begin();
        stream.update(domain, sizeof domain);
        stream.update(body, body_size);
        const wsguard::sha256_digest mac = stream.finish();
        std::memcpy(body + body_size, mac.data(), mac.size());
        const std::string ticket = wsguard::base64url_encode(body, body_size + mac.size());
        const wsguard::decision d = verify_fresh(ticket, claims);
        if (d.allowed()) {
            if (claims.subject().size() > wsguard::ticket_limits::max_subject) fail("subject over its cap");
            if (claims.scope_count() > wsguard::ticket_limits::max_scopes) fail("too many scopes");
            if (!(claims.issued_at() < claims.expires_at())) fail("expiry not after issue");
        } else if (d.reason == wsguard::reason::ticket_bad_mac || d.reason == wsguard::reason::ticket_unknown_key ||
                   d.reason == wsguard::reason::ticket_bad_version) {
            if (ticket.size() <= wsguard::ticket_limits::max_chars) fail("a correctly signed body failed the MAC");
        }
    }
    return 0;
}
