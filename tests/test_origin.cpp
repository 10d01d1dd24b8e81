// origin_policy, host_allowlist and check_sec_fetch_site: table-driven,
// adversarial. Every row says why its answer is the right one.
#include <wsguard.hpp>

#include <array>
#include <atomic>
#include <cstdlib>
#include <new>
#include <string>
#include <string_view>
#include <vector>

#include "catch.hpp"

using wsguard::reason;

// Counts allocations so a test can prove check() makes none. (g++ 12 sees
// malloc/free behind new/delete and warns about a mismatch that is not one.)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
namespace {
std::atomic<long> allocations{0};
}
// Every replaceable form is replaced, so no allocation and its release ever
// come from different allocators (ASan checks that).
void* operator new(std::size_t size) {
    ++allocations;
    if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
    std::abort();
}
void* operator new[](std::size_t size) { return operator new(size); }
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
    ++allocations;
    return std::malloc(size == 0 ? 1 : size);
}
void* operator new[](std::size_t size, const std::nothrow_t& tag) noexcept { return operator new(size, tag); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }

namespace {

struct check_row {
    std::string header;
    reason expected;
    const char* why;
};

wsguard::origin_policy mixed_policy() {
    auto policy = wsguard::origin_policy::create({
        "https://app.example.com",
        "https://app.example.com:8443",
        "http://[::1]:8080",
        "https://*.example.org",
        "http://localhost:*",
        "http://127.0.0.1:3000",
        "https://trailing.example.net.",
        "https://*.wild.example.net:*",
        "https://[2001:db8::1]",
    });
    REQUIRE(policy);
    return *policy;
}

void run_checks(const wsguard::origin_policy& policy, const std::vector<check_row>& rows) {
    for (const check_row& row : rows) {
        INFO("origin: \"" << row.header << "\" -- " << row.why);
        const wsguard::decision d = policy.check(row.header);
        CHECK(wsguard::to_string(d.reason) == std::string(wsguard::to_string(row.expected)));
    }
}

std::string with_byte(std::string s, std::size_t at, char c) {
    s.insert(at, 1, c);
    return s;
}

}  // namespace

TEST_CASE("origin_policy allows exactly the listed origins, folding only case and default ports", "[origin]") {
    const wsguard::origin_policy policy = mixed_policy();
    const std::vector<check_row> rows = {
        {"https://app.example.com", reason::ok, "listed exactly"},
        {"HTTPS://App.Example.COM", reason::ok, "scheme and host compare ASCII case-insensitively"},
        {"https://app.example.com:443", reason::ok, "an explicit default port folds to the default"},
        {"HTTPS://App.Example.COM:443", reason::ok, "case and default port fold together"},
        {"https://app.example.com:8443", reason::ok, "a non-default port listed on its own"},
        {"https://app.example.com:8444", reason::origin_not_allowed, "the port is significant"},
        {"http://app.example.com", reason::origin_not_allowed, "the scheme is significant: http is not https"},
        {"https://app.example.com:80", reason::origin_not_allowed, "80 is not https's default port"},
        {"https://www.app.example.com", reason::origin_not_allowed, "an exact pattern does not cover subdomains"},
        {"https://app.example.com.evil.com", reason::origin_not_allowed, "a listed host as a prefix of another host"},
        {"https://evilapp.example.com", reason::origin_not_allowed, "a listed host as a suffix of a label"},
        {"https://pp.example.com", reason::origin_not_allowed, "a substring of a listed host"},
        {"http://[::1]:8080", reason::ok, "canonical IPv6 loopback, listed"},
        {"http://[::1]:8081", reason::origin_not_allowed, "IPv6 host, wrong port"},
        {"http://[::1]", reason::origin_not_allowed, "IPv6 host, default port not listed"},
        {"http://[0:0:0:0:0:0:0:1]:8080", reason::origin_malformed, "IPv6 not in RFC 5952 form (uncompressed)"},
        {"http://[::0:1]:8080", reason::origin_malformed, "IPv6 not in RFC 5952 form (zero group left)"},
        {"http://[::1%25eth0]:8080", reason::origin_malformed, "an IPv6 zone id never appears in an origin"},
        {"http://[::1%eth0]:8080", reason::origin_malformed, "a raw zone id is not even a URL"},
        {"http://[::ffff:127.0.0.1]:8080", reason::origin_malformed, "browsers serialize mapped IPv4 in hex"},
        {"http://[::1:8080", reason::origin_malformed, "unclosed IPv6 bracket"},
        {"http://::1:8080", reason::origin_malformed, "IPv6 without brackets"},
        {"http://[1::2::3]", reason::origin_malformed, "two :: in one IPv6 literal"},
        {"https://[2001:db8::1]", reason::ok, "IPv6 literal with default port, listed"},
        {"https://[2001:DB8::1]", reason::ok, "IPv6 hex digits fold case like any ASCII"},
        {"https://[2001:0db8::1]", reason::origin_malformed, "an IPv6 group with a leading zero is not canonical"},
        {"https://[2001:db8:0:0:1:0:0:1]", reason::origin_malformed, "RFC 5952: compress the first longest zero run"},
        {"https://a.example.org", reason::ok, "one label under a wildcard"},
        {"https://a.b.c.example.org", reason::ok, "several labels under a wildcard"},
        {"https://A.EXAMPLE.ORG:443", reason::ok, "wildcard match folds case and the default port"},
        {"https://under_score.example.org", reason::ok, "browsers allow '_' in host labels"},
        {"https://xn--bcher-kva.example.org", reason::ok, "a punycode label is plain ASCII"},
        {"https://example.org", reason::origin_not_allowed, "a wildcard does not include its apex"},
        {"https://evilexample.org", reason::origin_not_allowed, "a wildcard matches whole labels, not a string suffix"},
        {"https://a.example.org.evil.com", reason::origin_not_allowed, "a wildcard parent inside another domain"},
        {"https://a.example.org.", reason::origin_not_allowed, "a trailing dot is a different host unless listed"},
        {"http://a.example.org", reason::origin_not_allowed, "the scheme is significant for wildcards too"},
        {"https://a.example.org:8443", reason::origin_not_allowed, "a wildcard without :* means the default port"},
        {"https://x.wild.example.net:9999", reason::ok, "a wildcard with :* takes any port"},
        {"https://x.y.wild.example.net", reason::ok, "a wildcard with :* takes the default port too"},
        {"https://wild.example.net", reason::origin_not_allowed, "a wildcard with :* still excludes its apex"},
        {"http://localhost", reason::ok, ":* includes the default port"},
        {"http://localhost:1", reason::ok, ":* includes the lowest port"},
        {"http://localhost:65535", reason::ok, ":* includes the highest port"},
        {"http://LocalHost:3000", reason::ok, ":* with a folded host"},
        {"https://localhost:3000", reason::origin_not_allowed, ":* does not relax the scheme"},
        {"http://localhost.:3000", reason::origin_not_allowed, "localhost. is a different host"},
        {"http://a.localhost:3000", reason::origin_not_allowed, "an exact pattern does not cover subdomains"},
        {"https://trailing.example.net.", reason::ok, "a trailing-dot host matches when listed as such"},
        {"https://trailing.example.net", reason::origin_not_allowed, "the listed host had a trailing dot"},
        {"http://127.0.0.1:3000", reason::ok, "a dotted quad, listed"},
        {"http://127.0.0.1:3001", reason::origin_not_allowed, "a dotted quad, wrong port"},
        {"http://127.0.0.2:3000", reason::origin_not_allowed, "another loopback address is another host"},
    };
    run_checks(policy, rows);
}

TEST_CASE("origin_policy refuses anything that is not exactly one canonical serialized origin", "[origin]") {
    const wsguard::origin_policy policy = mixed_policy();
    const std::vector<check_row> rows = {
        {"", reason::origin_missing, "an empty view means no Origin header"},
        {"null", reason::origin_null, "the opaque origin: sandboxed iframes, file:, data:, redirects"},
        {"NULL", reason::origin_null, "null folds case like everything else"},
        {"null ", reason::origin_malformed, "whitespace is never stripped here"},
        {"https://app.example.com/", reason::origin_malformed, "a path, even \"/\": that is a URL, not an origin"},
        {"https://app.example.com/chat", reason::origin_malformed, "a path"},
        {"https://app.example.com?x=1", reason::origin_malformed, "a query"},
        {"https://app.example.com#top", reason::origin_malformed, "a fragment"},
        {"https://user@app.example.com", reason::origin_malformed, "userinfo"},
        {"https://user:pass@app.example.com", reason::origin_malformed, "userinfo with a password"},
        {"https://evil.com@app.example.com", reason::origin_malformed, "userinfo that looks like a host"},
        {"https://app.example.com https://evil.com", reason::origin_malformed, "two origins separated by a space"},
        {"https://app.example.com,https://app.example.com", reason::origin_malformed, "a list of origins"},
        {" https://app.example.com", reason::origin_malformed, "leading whitespace"},
        {"https://app.example.com\t", reason::origin_malformed, "trailing tab"},
        {"https://app.example.com\r\nX-Evil: 1", reason::origin_malformed, "header injection bytes"},
        {"https://app%2eexample.com", reason::origin_malformed, "a %-escape in the host"},
        {"https://app.example.com%00", reason::origin_malformed, "a %-escaped NUL"},
        {"https://app.example.com:0443", reason::origin_malformed, "a port with a leading zero"},
        {"https://app.example.com:65536", reason::origin_malformed, "a port over 65535"},
        {"https://app.example.com:99999999999999999999", reason::origin_malformed, "a port that overflows"},
        {"https://app.example.com:", reason::origin_malformed, "an empty port"},
        {"https://app.example.com:-1", reason::origin_malformed, "a negative port"},
        {"https://app.example.com:443:443", reason::origin_malformed, "two ports"},
        {"https://app.example.com:44a", reason::origin_malformed, "a port with a letter"},
        {"http://127.1:3000", reason::origin_malformed, "short IPv4: browsers write 127.0.0.1"},
        {"http://0x7f.1:3000", reason::origin_malformed, "hex IPv4: browsers write 127.0.0.1"},
        {"http://0x7f000001:3000", reason::origin_malformed, "one hex number IPv4"},
        {"http://2130706433:3000", reason::origin_malformed, "one decimal number IPv4"},
        {"http://0127.0.0.1:3000", reason::origin_malformed, "an octal-looking IPv4 part"},
        {"http://127.0.0.1.:3000", reason::origin_malformed, "a trailing dot after an IPv4 address"},
        {"http://1.2.3.4.5", reason::origin_malformed, "five numeric parts"},
        {"http://256.0.0.1", reason::origin_malformed, "an IPv4 part over 255"},
        {"http://app.example.123", reason::origin_malformed, "a numeric last label makes the host an IPv4 address"},
        {"ws://app.example.com", reason::origin_malformed, "ws: is never a page's origin"},
        {"wss://app.example.com", reason::origin_malformed, "wss: is never a page's origin"},
        {"https://b\xc3\xbc" "cher.example.org", reason::origin_malformed, "non-ASCII host: browsers send punycode"},
        {"https://app.example.com\x80", reason::origin_malformed, "a high byte"},
        {"app.example.com", reason::origin_malformed, "no scheme"},
        {"//app.example.com", reason::origin_malformed, "scheme-relative"},
        {"https://", reason::origin_malformed, "no host"},
        {"https://:443", reason::origin_malformed, "a port but no host"},
        {"https:app.example.com", reason::origin_malformed, "no //"},
        {"https:/app.example.com", reason::origin_malformed, "one slash"},
        {"https:///app.example.com", reason::origin_malformed, "three slashes"},
        {"https://*.example.org", reason::origin_malformed, "a wildcard is a pattern, never an origin"},
        {"*", reason::origin_malformed, "an Origin of * is not an origin"},
        {"https://a..example.org", reason::origin_malformed, "an empty label"},
        {"https://.example.org", reason::origin_malformed, "a leading empty label"},
        {"https://a.example.org..", reason::origin_malformed, "two trailing dots"},
        {"https://" + std::string(64, 'a') + ".example.org", reason::origin_malformed, "a label over 63 bytes"},
        {"https://" + std::string(63, 'a') + ".example.org", reason::ok, "a label of exactly 63 bytes"},
        {"https://a\\b.example.org", reason::origin_malformed, "a backslash"},
        {"chrome-extension://abcdefghijklmnopabcdefghijklmnop", reason::origin_not_allowed,
         "another scheme is a well-formed origin that can never be listed"},
        {"file://", reason::origin_malformed, "file: pages send null; file:// has no host"},
    };
    run_checks(policy, rows);
}

TEST_CASE("origin_policy refuses every byte 0x00-0x20 and 0x7f-0xff anywhere in an origin", "[origin]") {
    const wsguard::origin_policy policy = mixed_policy();
    const std::string good = "https://a.example.org:443";
    REQUIRE(policy.check(good).allowed());
    std::vector<int> bytes;
    for (int c = 0x00; c <= 0x20; ++c) bytes.push_back(c);
    for (int c = 0x7f; c <= 0xff; ++c) bytes.push_back(c);
    for (int c : bytes) {
        for (std::size_t at = 0; at <= good.size(); ++at) {
            const std::string bad = with_byte(good, at, static_cast<char>(c));
            INFO("byte 0x" << std::hex << c << std::dec << " at " << at);
            CHECK(policy.check(bad).reason == reason::origin_malformed);
        }
    }
}

TEST_CASE("origin_policy decides a 1 MB origin as too long without parsing it", "[origin]") {
    const wsguard::origin_policy policy = mixed_policy();
    const std::string huge = "https://" + std::string(1 << 20, 'a') + ".example.org";
    CHECK(policy.check(huge).reason == reason::origin_too_long);
    const std::string at_cap(wsguard::origin_policy::max_header_length, 'a');
    CHECK(policy.check(at_cap).reason == reason::origin_malformed);  // parsed: not an origin
    CHECK(policy.check(at_cap + "a").reason == reason::origin_too_long);
    const std::string labels = "https://" + std::string(1500, '.') ;
    CHECK(policy.check(labels).reason == reason::origin_malformed);
}

TEST_CASE("origin_policy follows RFC 6454's examples of one origin and of different origins", "[origin]") {
    // RFC 6454 section 3.2.1 and 6.2: these URLs share the origin
    // http://example.com; a different scheme, host or port is another origin.
    auto policy = wsguard::origin_policy::create({"http://example.com"});
    REQUIRE(policy);
    const std::vector<check_row> rows = {
        {"http://example.com", reason::ok, "the serialization of http://example.com/"},
        {"http://example.com:80", reason::ok, "http://example.com:80/ is the same origin"},
        {"http://Example.com", reason::ok, "http://Example.com/ is the same origin (host case)"},
        {"http://example.com:8080", reason::origin_not_allowed, "a different port is a different origin"},
        {"https://example.com", reason::origin_not_allowed, "a different scheme is a different origin"},
        {"http://www.example.com", reason::origin_not_allowed, "a different host is a different origin"},
        {"http://example.com/", reason::origin_malformed, "a URL, not its serialized origin"},
        {"http://example.com/path/file", reason::origin_malformed, "a URL with a path, not an origin"},
    };
    run_checks(*policy, rows);
}

TEST_CASE("origin_policy::create refuses unsafe or malformed patterns with a clear message", "[origin]") {
    struct pattern_row {
        std::string pattern;
        const char* message_part;
        const char* why;
    };
    const std::vector<pattern_row> rows = {
        {"*", "allow_any_origin_unsafe", "allow-any is an explicit option, never a pattern"},
        {"null", "opaque origin", "any site can produce null"},
        {"Null", "opaque origin", "null in any case"},
        {"", "no scheme", "an empty pattern"},
        {"example.com", "no scheme", "scheme-less"},
        {"localhost:8080", "no scheme", "host:port is a Host, not an origin"},
        {"//example.com", "no scheme", "scheme-relative"},
        {"https://", "no host", "host-less"},
        {"https://:8080", "no host", "a port but no host"},
        {"https://*example.com", "wildcard", "a wildcard inside a label"},
        {"https://a.*.example.com", "wildcard", "a wildcard that is not the leftmost label"},
        {"https://ex*.com", "wildcard", "a wildcard inside a label"},
        {"https://*", "wildcard", "a wildcard alone"},
        {"https://*.", "wildcard", "a wildcard over nothing"},
        {"https://*.*.example.com", "wildcard", "two wildcard labels"},
        {"https://example.*", "wildcard", "a wildcard top-level domain"},
        {"*.example.com", "wildcard", "a wildcard scheme-less"},
        {"https://example.com:8*", "port", "a partial port wildcard"},
        {"https://*.com", "top-level domain", "a wildcard over a TLD"},
        {"https://*.localhost", "top-level domain", "a single label is a public suffix by the implicit * rule"},
        {"https://*.co.uk", "public suffix", "a wildcard over an ICANN public suffix"},
        {"https://*.CO.UK", "public suffix", "the public-suffix check folds case"},
        {"https://*.co.uk.", "public suffix", "the public-suffix check ignores a trailing dot"},
        {"https://*.github.io", "public suffix", "a wildcard over a private-section public suffix"},
        {"https://*.foo.ck", "public suffix", "foo.ck is a public suffix through the rule *.ck"},
        {"https://*.compute.amazonaws.com", "beneath", "each child is a public suffix (*.compute.amazonaws.com)"},
        {"https://*.amazonaws.com", "beneath", "it would cover s3.amazonaws.com customers"},
        {"https://*.127.0.0.1", "IP address", "a wildcard over an IPv4 address"},
        {"https://*.[::1]", "IP address", "a wildcard over an IPv6 address"},
        {"https://app.example.com/", "path", "a trailing slash is a path"},
        {"https://app.example.com/chat", "path", "a path"},
        {"https://app.example.com?x", "path", "a query"},
        {"https://app.example.com#x", "path", "a fragment"},
        {"https://user@app.example.com", "userinfo", "userinfo"},
        {"https://user:pw@app.example.com", "userinfo", "userinfo with a password"},
        {"https://b\xc3\xbc" "cher.example", "punycode", "a non-ASCII host"},
        {"https://app.example.com:65536", "port", "a port over 65535"},
        {"https://app.example.com:08443", "port", "a port with a leading zero"},
        {"https://app.example.com:", "port", "an empty port"},
        {"https://app.example.com:http", "port", "a named port"},
        {"ws://app.example.com", "ws:", "the page's scheme, not the socket's"},
        {"wss://app.example.com", "ws:", "the page's scheme, not the socket's"},
        {"ftp://app.example.com", "http or https", "only http and https pages"},
        {"http://127.1", "dotted quad", "a non-canonical IPv4 address"},
        {"http://[0:0:0:0:0:0:0:1]", "write [::1]", "a non-canonical IPv6 address, with the fix"},
        {"http://[::1%25eth0]", "zone", "an IPv6 zone id"},
        {"https://app .example.com", "character", "a space"},
        {"https://app.example.com https://b.example.com", "character", "two origins in one pattern"},
        {"https://a..example.com", "label", "an empty label"},
    };
    for (const pattern_row& row : rows) {
        INFO("pattern: \"" << row.pattern << "\" -- " << row.why);
        const auto policy = wsguard::origin_policy::create({std::string_view(row.pattern)});
        REQUIRE_FALSE(policy);
        INFO("message: " << policy.error());
        CHECK(policy.error().find(row.message_part) != std::string::npos);
        CHECK(policy.error().find("origin_policy") == 0);
    }
}

TEST_CASE("origin_policy::create accepts wildcards beneath a public suffix that someone owns", "[origin]") {
    for (const char* pattern : {"https://*.example.co.uk", "https://*.myapp.github.io", "https://*.www.ck",
                                "https://*.city.kawasaki.jp", "https://*.example.com.", "http://*.example.com:*",
                                "https://*.a.b.c.example.com:8443"}) {
        INFO(pattern);
        const auto policy = wsguard::origin_policy::create({pattern});
        INFO(policy.error());
        CHECK(policy);
    }
}

TEST_CASE("origin_policy treats duplicate patterns as one", "[origin]") {
    const auto policy = wsguard::origin_policy::create(
        {"https://a.example.com", "HTTPS://A.EXAMPLE.COM:443", "https://a.example.com", "https://*.example.com",
         "https://*.Example.com"});
    REQUIRE(policy);
    CHECK(policy->size() == 2);
    CHECK(policy->check("https://a.example.com").allowed());
}

TEST_CASE("origin_policy refuses an empty list unless missing origins are the intent", "[origin]") {
    const auto empty = wsguard::origin_policy::create(std::vector<std::string>{});
    REQUIRE_FALSE(empty);
    CHECK(empty.error().find("empty") != std::string::npos);

    wsguard::origin_policy::options opts;
    opts.allow_missing_origin = true;
    const auto native_only = wsguard::origin_policy::create(std::vector<std::string>{}, opts);
    REQUIRE(native_only);
    CHECK(native_only->check("").allowed());
    CHECK(native_only->check("https://app.example.com").reason == reason::origin_not_allowed);
    CHECK(native_only->check("null").reason == reason::origin_null);
}

TEST_CASE("origin_policy allows a missing Origin only when told to", "[origin]") {
    wsguard::origin_options opts;
    opts.allow_missing_origin = true;
    const auto policy = wsguard::origin_policy::create({"https://app.example.com"}, opts);
    REQUIRE(policy);
    CHECK(policy->check("").allowed());
    CHECK(policy->check("https://app.example.com").allowed());
    CHECK(policy->check("https://evil.example").reason == reason::origin_not_allowed);
    CHECK(mixed_policy().check("").reason == reason::origin_missing);
}

TEST_CASE("origin_policy's allow-any switch is explicit and still refuses null and malformed origins", "[origin]") {
    wsguard::origin_policy::options opts;
    opts.allow_any_origin_unsafe = true;
    const auto policy = wsguard::origin_policy::create(std::vector<std::string_view>{}, opts);
    REQUIRE(policy);
    CHECK(policy->check("https://anything.example").allowed());
    CHECK(policy->check("http://localhost:1234").allowed());
    CHECK(policy->check("null").reason == reason::origin_null);
    CHECK(policy->check("https://a.example/").reason == reason::origin_malformed);
    CHECK(policy->check("").reason == reason::origin_missing);
    // "*" stays refused as a pattern even when the switch is on.
    CHECK_FALSE(wsguard::origin_policy::create({"*"}, opts));
}

TEST_CASE("origin_policy::create takes a braced list, vectors of strings or views, and arrays", "[origin]") {
    CHECK(wsguard::origin_policy::create({"https://a.example.com"}));
    CHECK(wsguard::origin_policy::create({"https://a.example.com"}, wsguard::origin_policy::options{}));
    const std::vector<std::string> strings = {"https://a.example.com", "https://*.example.org"};
    CHECK(wsguard::origin_policy::create(strings));
    const std::vector<std::string_view> views = {"https://a.example.com"};
    CHECK(wsguard::origin_policy::create(views, wsguard::origin_options{}));
    const std::array<const char*, 2> array = {"https://a.example.com", "http://localhost:*"};
    const auto from_array = wsguard::origin_policy::create(array);
    REQUIRE(from_array);
    CHECK(from_array->check("http://localhost:5173").allowed());
}

TEST_CASE("origin_policy::check allocates nothing", "[origin]") {
    const wsguard::origin_policy policy = mixed_policy();
    const std::vector<std::string> headers = {"https://app.example.com", "https://a.b.example.org", "http://[::1]:8080",
                                              "https://evil.example", "null", "", std::string(5000, 'x'),
                                              "http://0x7f.1", "https://x.wild.example.net:1"};
    const long before = allocations.load();
    int allowed = 0;
    for (int round = 0; round < 100; ++round) {
        for (const std::string& h : headers) allowed += policy.check(h).allowed() ? 1 : 0;
    }
    CHECK(allocations.load() == before);
    CHECK(allowed == 400);
}

TEST_CASE("origin_policy gives the same answer for a large allowlist as for a small one", "[origin]") {
    std::vector<std::string> patterns;
    for (int i = 0; i < 5000; ++i) {
        patterns.push_back("https://app" + std::to_string(i) + ".example.com");
        patterns.push_back("https://*.tenant" + std::to_string(i) + ".example.net:*");
    }
    const auto policy = wsguard::origin_policy::create(patterns);
    REQUIRE(policy);
    CHECK(policy->size() == 10000);
    for (int i = 0; i < 5000; i += 7) {
        const std::string n = std::to_string(i);
        CHECK(policy->check("https://app" + n + ".example.com").allowed());
        CHECK(policy->check("https://APP" + n + ".example.com:443").allowed());
        CHECK(policy->check("https://x.y.tenant" + n + ".example.net:8080").allowed());
        CHECK(policy->check("https://app" + n + ".example.com:8443").reason == reason::origin_not_allowed);
        CHECK(policy->check("https://tenant" + n + ".example.net").reason == reason::origin_not_allowed);
        CHECK(policy->check("http://app" + n + ".example.com").reason == reason::origin_not_allowed);
    }
    CHECK(policy->check("https://app5000.example.com").reason == reason::origin_not_allowed);
}

TEST_CASE("host_allowlist defeats DNS rebinding that an Origin-equals-Host check lets through", "[origin][host]") {
    // attacker.example's DNS answer flips to 127.0.0.1: the browser then sends
    // Origin and Host that both name attacker.example, to the local server.
    const std::string origin = "http://rebind.attacker.example:8080";
    const std::string host = "rebind.attacker.example:8080";
    const bool naive_same_origin_check = origin == "http://" + host;
    CHECK(naive_same_origin_check);  // the hand-written check is fooled

    const auto hosts = wsguard::host_allowlist::create({"localhost:8080", "127.0.0.1:8080", "[::1]:8080"});
    REQUIRE(hosts);
    CHECK(hosts->check(host).reason == reason::host_not_allowed);
    CHECK(hosts->check("localhost:8080").allowed());
}

TEST_CASE("host_allowlist matches host and port exactly, folding only case", "[origin][host]") {
    const auto hosts = wsguard::host_allowlist::create(
        {"localhost:8080", "127.0.0.1:8080", "[::1]:8080", "app.example.com", "dev.local:*"});
    REQUIRE(hosts);
    struct host_row {
        std::string header;
        reason expected;
        const char* why;
    };
    const std::vector<host_row> rows = {
        {"localhost:8080", reason::ok, "listed"},
        {"LocalHost:8080", reason::ok, "host case folds"},
        {"localhost:8081", reason::host_not_allowed, "the port is significant when given"},
        {"localhost", reason::host_not_allowed, "the pattern named a port"},
        {"127.0.0.1:8080", reason::ok, "a listed dotted quad"},
        {"[::1]:8080", reason::ok, "a listed IPv6 literal"},
        {"[::1]", reason::host_not_allowed, "the pattern named a port"},
        {"app.example.com", reason::ok, "no port on either side"},
        {"app.example.com:443", reason::ok, "a port-less pattern accepts an explicit default port (443)"},
        {"app.example.com:80", reason::ok, "a port-less pattern accepts an explicit default port (80)"},
        {"app.example.com:8443", reason::host_not_allowed, "a port-less pattern means the default ports"},
        {"dev.local:1234", reason::ok, ":* takes any port"},
        {"dev.local", reason::ok, ":* takes no port"},
        {"rebind.attacker.example", reason::host_not_allowed, "not listed"},
        {"", reason::host_missing, "an empty view means no Host header"},
        {"localhost:8080 ", reason::host_malformed, "trailing whitespace"},
        {"localhost:8080/", reason::host_malformed, "a path"},
        {"user@localhost:8080", reason::host_malformed, "userinfo"},
        {"127.1:8080", reason::host_malformed, "a short IPv4 form"},
        {"localhost:08080", reason::host_malformed, "a leading zero in the port"},
        {"localhost:99999", reason::host_malformed, "a port over 65535"},
        {"http://localhost:8080", reason::host_malformed, "a scheme"},
        {"localhost:8080,localhost:8080", reason::host_malformed, "two hosts"},
        {std::string(1 << 20, 'a'), reason::host_malformed, "1 MB of host"},
    };
    for (const host_row& row : rows) {
        INFO("host: \"" << row.header.substr(0, 80) << "\" -- " << row.why);
        CHECK(wsguard::to_string(hosts->check(row.header).reason) == std::string(wsguard::to_string(row.expected)));
    }
}

TEST_CASE("host_allowlist::create refuses schemes, wildcards, bad ports and an empty list", "[origin][host]") {
    for (const char* pattern : {"http://localhost:8080", "*.example.com", "*", "", "localhost:99999", "localhost:",
                                "localhost/", "user@localhost", "[::1%25lo]:80", "127.1"}) {
        INFO(pattern);
        const auto hosts = wsguard::host_allowlist::create({pattern});
        REQUIRE_FALSE(hosts);
        CHECK(hosts.error().find("host_allowlist") == 0);
    }
    const auto empty = wsguard::host_allowlist::create(std::vector<std::string>{});
    REQUIRE_FALSE(empty);
    CHECK(empty.error().find("empty") != std::string::npos);
}

TEST_CASE("check_sec_fetch_site only ever denies: cross-site and unknown values", "[origin][fetch]") {
    using wsguard::fetch_site_policy;
    struct fetch_row {
        const char* value;
        reason by_default;
        reason strict;
        const char* why;
    };
    const std::vector<fetch_row> rows = {
        {"", reason::ok, reason::ok, "absent: older browsers and non-browser clients"},
        {"same-origin", reason::ok, reason::ok, "the page's own origin"},
        {"same-site", reason::ok, reason::fetch_site_cross_site, "a sibling subdomain; the strict policy refuses it"},
        {"none", reason::ok, reason::ok, "user-initiated (typed URL)"},
        {"cross-site", reason::fetch_site_cross_site, reason::fetch_site_cross_site, "another site"},
        {"Cross-Site", reason::fetch_site_malformed, reason::fetch_site_malformed, "values are lowercase tokens"},
        {"cross-site ", reason::fetch_site_malformed, reason::fetch_site_malformed, "trailing space"},
        {"same-origin, cross-site", reason::fetch_site_malformed, reason::fetch_site_malformed, "a list"},
        {"other", reason::fetch_site_malformed, reason::fetch_site_malformed, "unknown"},
    };
    for (const fetch_row& row : rows) {
        INFO("Sec-Fetch-Site: \"" << row.value << "\" -- " << row.why);
        CHECK(wsguard::check_sec_fetch_site(row.value).reason == row.by_default);
        CHECK(wsguard::check_sec_fetch_site(row.value, fetch_site_policy::deny_cross_site_and_same_site).reason ==
              row.strict);
    }
}

TEST_CASE("origin decisions carry the documented HTTP status", "[origin]") {
    const wsguard::origin_policy policy = mixed_policy();
    CHECK(policy.check("https://evil.example").http_status() == 403);
    CHECK(policy.check("").http_status() == 403);
    CHECK(policy.check("https://app.example.com").http_status() == 0);
}
