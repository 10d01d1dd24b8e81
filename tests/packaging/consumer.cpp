// A consumer outside the wsguard tree: it only knows the installed header.
// Exits 0 only if the header it found is the one its build system described
// (same version) and a few calls give the documented answers.
#include <wsguard.hpp>

#include <cstdio>
#include <cstring>

#include "expect.hpp"

#ifndef EXPECTED_VERSION
#error "the build must pass -DEXPECTED_VERSION=\"<version the package manager reported>\""
#endif

int main() {
    consumer_checks expect;
    expect(std::strcmp(WSGUARD_VERSION_STRING, EXPECTED_VERSION) == 0, "header version matches the package version");
    expect(std::strcmp(wsguard::to_string(wsguard::reason::origin_null), "origin_null") == 0, "to_string(origin_null)");
    expect(wsguard::http_status_of(wsguard::reason::rate_limited) == 429, "rate_limited answers 429");
    expect(wsguard::close_code_of(wsguard::reason::message_too_large) == 1009, "message_too_large closes with 1009");

    const wsguard::decision refused{wsguard::reason::too_many_connections, std::chrono::milliseconds(1500)};
    expect(!refused && refused.retry_after_seconds() == 2, "a 1.5 s wait is announced as Retry-After: 2");
    expect(static_cast<bool>(wsguard::decision::allow()), "allow() is allowed");

    const auto bad = wsguard::result<int>::failure("limit must be positive");
    expect(!bad && bad.error() == "limit must be positive", "a failed result carries its message");

    // The components, as a user calls them (FIPS 180-4 "abc"; whole-label wildcards).
    const wsguard::sha256_digest abc = wsguard::sha256("abc");
    expect(abc[0] == 0xba && abc[1] == 0x78 && abc[30] == 0x15 && abc[31] == 0xad, "sha256(\"abc\")");
    const auto policy = wsguard::origin_policy::create({"https://*.example.com"});
    expect(static_cast<bool>(policy), "origin_policy accepts a subdomain wildcard");
    if (policy) {
        expect(policy->check("https://app.example.com").allowed(), "a subdomain is allowed");
        expect(policy->check("https://evilexample.com").reason == wsguard::reason::origin_not_allowed, "a suffix lookalike is refused");
        expect(policy->check("null").reason == wsguard::reason::origin_null, "Origin: null is refused");
    }

    if (expect.failures == 0) std::printf("wsguard %s consumer: ok\n", WSGUARD_VERSION_STRING);
    return expect.failures == 0 ? 0 : 1;
}
