// Compile-fail test: ticket_verifier::verify takes its ticket, origin and
// audience as three distinct types, so a swap does not compile. Built once per
// case with that macro (the compiler must refuse it) and once with none (the
// correct call compiles cleanly, proving the failures come from the cases alone).
#include <wsguard.hpp>

#include <string>
#include <string_view>

int main() {
    const std::string secret(32, 'k');
    auto keys = wsguard::keyring::create(1, {{1, secret, std::nullopt}});
    if (!keys) return 1;
    auto store = wsguard::memory_replay_store::create(1024);
    if (!store) return 1;
    auto verifier = wsguard::ticket_verifier<>::create(std::move(keys).value(), store.value());
    if (!verifier) return 1;
    wsguard::ticket_claims claims;
    const std::string_view ticket = "not-a-ticket", origin = "https://app.example.com", audience = "api.example.com/chat";
    const wsguard::presented_ticket presented(ticket);
    const wsguard::expected_origin expected(origin);
    const wsguard::expected_audience endpoint(audience);
#if defined(VERIFY_SWAPPED_ORIGIN_AUDIENCE)
    static_cast<void>(verifier.value().verify(presented, endpoint, expected, claims));  // origin <-> audience
#endif
#if defined(VERIFY_TICKET_AS_ORIGIN)
    static_cast<void>(verifier.value().verify(expected, presented, endpoint, claims));  // ticket <-> origin
#endif
#if defined(VERIFY_IMPLICIT_FROM_STRING)
    // No implicit conversion: a bare string is not an expected_origin.
    static_cast<void>(verifier.value().verify(presented, origin, endpoint, claims));
#endif
#if defined(VERIFY_DEPRECATED_STRINGS)
    // The untyped overload is deprecated (-Werror makes that an error).
    static_cast<void>(verifier.value().verify(ticket, origin, audience, claims));
#endif
    return verifier.value().verify(presented, expected, endpoint, claims).reason == wsguard::reason::ticket_malformed
               ? 0
               : 1;
}
