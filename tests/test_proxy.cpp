// The client address behind proxies: trusted_proxies (Forwarded, X-Forwarded-For)
// and the PROXY protocol. Vectors from RFC 7239 and the PROXY protocol spec
// (https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt) cite their section.
#include <wsguard.hpp>

#include <random>
#include <string>
#include <vector>

#include "catch.hpp"

using wsguard::reason;

namespace {

const wsguard::trusted_proxies& proxies() {
    static const wsguard::trusted_proxies p =
        wsguard::trusted_proxies::create({"127.0.0.1", "10.0.0.0/8", "2001:db8:ffff::/48", "::1"}).value();
    return p;
}

}  // namespace

// ---------------------------------------------------------------------------
// trusted_proxies::create
// ---------------------------------------------------------------------------

TEST_CASE("trusted_proxies accepts addresses and CIDR blocks from any range of strings", "[proxy][create]") {
    const std::vector<std::string> strings = {"127.0.0.1", "10.0.0.0/8", "2001:db8::/32", "::1", "192.168.0.0/16",
                                              "fc00::/7", "::ffff:172.16.0.0/108", "0.0.0.0/8"};
    auto from_strings = wsguard::trusted_proxies::create(strings);
    REQUIRE(from_strings);
    CHECK(from_strings->size() == strings.size());
    const std::vector<std::string_view> views = {"10.0.0.0/8"};
    CHECK(wsguard::trusted_proxies::create(views));
    const char* const pointers[] = {"10.0.0.0/8", "::1"};
    CHECK(wsguard::trusted_proxies::create(pointers));
    CHECK(wsguard::trusted_proxies::create({"::1"}, wsguard::trusted_proxy_options{4, false})->settings().max_hops == 4);
}

TEST_CASE("trusted_proxies refuses malformed, host-bit and whole-internet patterns with a readable error",
          "[proxy][create]") {
    struct row {
        const char* pattern;
        const char* says;  // part of the error
    };
    const std::vector<row> table = {
        {"", "not an IPv4 or IPv6 address"},
        {"localhost", "not an IPv4 or IPv6 address"},
        {"10.0.0", "not an IPv4 or IPv6 address"},
        {"010.0.0.1", "not an IPv4 or IPv6 address"},
        {"10.0.0.0/", "invalid prefix length"},
        {"10.0.0.0/33", "invalid prefix length"},
        {"10.0.0.0/08", "invalid prefix length"},
        {"10.0.0.0/8/8", "invalid prefix length"},
        {"2001:db8::/129", "invalid prefix length"},
        {"fe80::1%eth0", "zone id"},
        {"10.0.0.1/8", "host bits set beyond the prefix: write 10.0.0.0/8"},
        {"2001:db8::1/32", "host bits set beyond the prefix: write 2001:db8::/32"},
        {"::ffff:10.0.0.1/104", "write ::ffff:10.0.0.0/104"},
        {"0.0.0.0/0", "trusts a large part of the internet"},
        {"::/0", "trusts a large part of the internet"},
        {"128.0.0.0/1", "trusts a large part of the internet"},
        {"2000::/3", "trusts a large part of the internet"},
        {"::ffff:0:0/96", "trusts a large part of the internet"},
    };
    for (const row& r : table) {
        CAPTURE(r.pattern);
        auto p = wsguard::trusted_proxies::create({r.pattern});
        REQUIRE_FALSE(p);
        CHECK(p.error().find(r.says) != std::string::npos);
        CHECK(p.error().find("trusted_proxies: pattern") == 0);
    }
    // ::/64 (and ::/80) contain every IPv4-mapped address, so they trust everyone too.
    CHECK_FALSE(wsguard::trusted_proxies::create({"::/64"}));
    CHECK_FALSE(wsguard::trusted_proxies::create({"::/80"}));
    CHECK(wsguard::trusted_proxies::create({"::/112"}));  // ::0.0.0.0/16, IPv4-compatible: not the mapped space
    // The loud opt-out lets them through.
    wsguard::trusted_proxy_options unsafe;
    unsafe.trust_everything_unsafe = true;
    CHECK(wsguard::trusted_proxies::create({"0.0.0.0/0", "::/0"}, unsafe));
    // An empty list and a silly hop limit are configuration errors too.
    CHECK_FALSE(wsguard::trusted_proxies::create(std::vector<std::string>{}));
    CHECK_FALSE(wsguard::trusted_proxies::create({"::1"}, wsguard::trusted_proxy_options{0, false}));
    CHECK_FALSE(wsguard::trusted_proxies::create({"::1"}, wsguard::trusted_proxy_options{65, false}));
}

TEST_CASE("trusted_proxies matches blocks, and IPv4-mapped IPv6 peers match IPv4 blocks", "[proxy][create]") {
    struct row {
        const char* address;
        bool trusted;
    };
    const std::vector<row> table = {
        {"127.0.0.1", true},          {"127.0.0.2", false},         {"10.255.255.255", true},
        {"11.0.0.0", false},          {"::ffff:10.0.0.1", true},    {"[::ffff:10.0.0.1]:80", true},
        {"::ffff:a00:1", true},       {"10.0.0.1:4000", true},      {"2001:db8:ffff:1::1", true},
        {"2001:db8:fffe::1", false},  {"::1", true},                {"[::1]:443", true},
        {"::2", false},               {"not an address", false},    {"", false},
    };
    for (const row& r : table) {
        CAPTURE(r.address);
        CHECK(proxies().trusts(r.address) == r.trusted);
    }
    const std::uint8_t v4[4] = {10, 1, 2, 3};
    CHECK(proxies().trusts_bytes(v4, 4));
    CHECK_FALSE(proxies().trusts_bytes(v4, 3));
    CHECK_FALSE(proxies().trusts_bytes(nullptr, 4));
}

// ---------------------------------------------------------------------------
// resolve: the rightmost-trusted walk
// ---------------------------------------------------------------------------

namespace {

struct walk_row {
    const char* peer;
    const char* forwarded;
    const char* xff;
    reason expected;
    const char* client;  // canonical text when ok
    std::size_t hops;
    const char* why;
};

void check_walks(const wsguard::trusted_proxies& p, const std::vector<walk_row>& table) {
    for (const walk_row& r : table) {
        CAPTURE(r.why, r.peer, r.forwarded, r.xff);
        const wsguard::client_address c = p.resolve(r.peer, r.forwarded, r.xff);
        CHECK(c.decision.reason == r.expected);
        CHECK(c.decision.reason == r.expected);
        CHECK(static_cast<bool>(c) == (r.expected == reason::ok));
        if (r.expected == reason::ok) {
            CHECK(c.text() == r.client);
            CHECK(c.hops == r.hops);
            CHECK(c.key() == *wsguard::address_key::from_text(r.client));
        } else {
            CHECK(c.text().empty());
        }
    }
}

}  // namespace

TEST_CASE("resolve takes the rightmost untrusted address and never the spoofed leftmost", "[proxy][resolve]") {
    const std::vector<walk_row> table = {
        // 0 hops: the peer is the client; its headers are never read.
        {"203.0.113.7:5000", "", "", reason::ok, "203.0.113.7", 0, "direct client"},
        {"203.0.113.7:5000", "", "1.2.3.4", reason::ok, "203.0.113.7", 0, "untrusted peer's XFF ignored"},
        {"203.0.113.7:5000", "for=1.2.3.4", "", reason::ok, "203.0.113.7", 0, "untrusted peer's Forwarded ignored"},
        {"203.0.113.7", "garbage\"", "garbage", reason::ok, "203.0.113.7", 0, "untrusted peer's garbage ignored"},
        {"127.0.0.1:40000", "", "", reason::ok, "127.0.0.1", 0, "trusted peer without headers is the client"},
        {"127.0.0.1:40000", "  ", " ", reason::ok, "127.0.0.1", 0, "blank headers count as absent"},
        // 1 hop.
        {"127.0.0.1:40000", "", "203.0.113.7", reason::ok, "203.0.113.7", 1, "one proxy"},
        {"127.0.0.1:40000", "", "1.2.3.4, 203.0.113.7", reason::ok, "203.0.113.7", 1, "spoofed leftmost ignored"},
        {"127.0.0.1:40000", "", "1.2.3.4,203.0.113.7", reason::ok, "203.0.113.7", 1, "no space after comma"},
        {"127.0.0.1:40000", "", "127.0.0.1, 203.0.113.7", reason::ok, "203.0.113.7", 1, "a trusted address on the left does not matter"},
        {"127.0.0.1:40000", "for=1.2.3.4, for=203.0.113.7", "", reason::ok, "203.0.113.7", 1, "Forwarded, spoofed leftmost"},
        {"127.0.0.1:40000", "for=203.0.113.7", "198.51.100.1", reason::ok, "203.0.113.7", 1, "Forwarded wins over XFF"},
        // 3 hops.
        {"10.0.0.3", "", "203.0.113.7, 10.0.0.1, 10.0.0.2", reason::ok, "203.0.113.7", 3, "three proxies"},
        {"10.0.0.3", "", "6.6.6.6, 203.0.113.7, 10.0.0.1, 10.0.0.2", reason::ok, "203.0.113.7", 3, "three proxies, spoofed left"},
        {"10.0.0.3", "for=203.0.113.7, for=10.0.0.1;proto=https, for=\"10.0.0.2:8080\"", "", reason::ok, "203.0.113.7", 3,
         "three proxies in Forwarded"},
        {"::1", "", "[2001:db8::7]:1234, 2001:db8:ffff::2", reason::ok, "2001:db8::7", 2, "IPv6 chain"},
        {"[::1]:8000", "for=\"[2001:DB8:0:0:0:0:0:7]\"", "", reason::ok, "2001:db8::7", 1, "IPv6 canonicalized"},
        // Everyone trusted: the leftmost is the client (nginx).
        {"127.0.0.1", "", "10.0.0.9, 10.0.0.1", reason::ok, "10.0.0.9", 2, "all trusted: leftmost"},
        // IPv4-mapped forms.
        {"::ffff:127.0.0.1", "", "203.0.113.7", reason::ok, "203.0.113.7", 1, "mapped peer trusted by an IPv4 block"},
        {"127.0.0.1", "", "::ffff:203.0.113.7", reason::ok, "203.0.113.7", 1, "mapped client reads as IPv4"},
        {"127.0.0.1", "", "::ffff:10.0.0.5, 203.0.113.7", reason::ok, "203.0.113.7", 1, "mapped hop stops as IPv4"},
        {"127.0.0.1", "", "203.0.113.7, ::ffff:10.0.0.5", reason::ok, "203.0.113.7", 2, "mapped hop stepped over"},
        // XFF ports, as nginx tolerates them.
        {"127.0.0.1", "", "203.0.113.7:5555", reason::ok, "203.0.113.7", 1, "IPv4 with port"},
        {"127.0.0.1", "", "[2001:db8::7]", reason::ok, "2001:db8::7", 1, "bracketed IPv6"},
        {"127.0.0.1", "", "  2001:db8::7\t", reason::ok, "2001:db8::7", 1, "bare IPv6 with OWS"},
    };
    check_walks(proxies(), table);
}

TEST_CASE("resolve ends the walk at unknown and obfuscated hops instead of skipping them", "[proxy][resolve]") {
    const std::vector<walk_row> table = {
        {"127.0.0.1", "for=unknown", "", reason::forwarded_unknown_hop, "", 0, "RFC 7239 6.2 unknown"},
        {"127.0.0.1", "for=UNKNOWN", "", reason::forwarded_unknown_hop, "", 0, "unknown is case-insensitive"},
        {"127.0.0.1", "for=\"_gazonk\"", "", reason::forwarded_unknown_hop, "", 0, "RFC 7239 4 obfuscated"},
        {"127.0.0.1", "for=_hidden", "", reason::forwarded_unknown_hop, "", 0, "RFC 7239 6.3 obfuscated token"},
        {"127.0.0.1", "for=_SEVKISEK", "", reason::forwarded_unknown_hop, "", 0, "RFC 7239 6.3"},
        {"127.0.0.1", "for=203.0.113.7, for=_hidden", "", reason::forwarded_unknown_hop, "", 0,
         "never skips past to an attacker-chosen entry"},
        {"127.0.0.1", "for=203.0.113.7, proto=https", "", reason::forwarded_unknown_hop, "", 0,
         "an element without for= names no one"},
        {"10.0.0.2", "for=203.0.113.7, for=unknown, for=10.0.0.1", "", reason::forwarded_unknown_hop, "", 1,
         "unknown after one trusted hop"},
        {"127.0.0.1", "for=unknown, for=203.0.113.7", "", reason::ok, "203.0.113.7", 1,
         "unknown left of the client is never read"},
        {"127.0.0.1", "", "203.0.113.7, unknown", reason::forwarded_unknown_hop, "", 0, "XFF unknown"},
        {"127.0.0.1", "for=\"[2001:db8:cafe::17]:_hidden\"", "", reason::ok, "2001:db8:cafe::17", 1,
         "an obfuscated port still names the address"},
    };
    check_walks(proxies(), table);
}

TEST_CASE("resolve reads RFC 7239 quoted, bracketed, port and parameter forms", "[proxy][resolve][rfc7239]") {
    const std::vector<walk_row> table = {
        // RFC 7239 section 4 examples, and section 6 node forms.
        {"127.0.0.1", "For=\"[2001:db8:cafe::17]:4711\"", "", reason::ok, "2001:db8:cafe::17", 1, "RFC 7239 4"},
        {"127.0.0.1", "for=192.0.2.60;proto=http;by=203.0.113.43", "", reason::ok, "192.0.2.60", 1, "RFC 7239 4"},
        {"127.0.0.1", "for=192.0.2.43, for=198.51.100.17", "", reason::ok, "198.51.100.17", 1, "RFC 7239 4"},
        {"127.0.0.1", "for=192.0.2.43,for=\"[2001:db8:cafe::17]\",for=unknown", "", reason::forwarded_unknown_hop, "",
         0, "RFC 7239 6.2: the nearest hop is unknown, whatever lies left"},
        {"127.0.0.1", "for=\"192.0.2.43:47011\"", "", reason::ok, "192.0.2.43", 1, "RFC 7239 6: quoted IPv4 with port"},
        {"127.0.0.1", "for=\"_gazonk\"", "", reason::forwarded_unknown_hop, "", 0, "RFC 7239 4"},
        // Names in any case, parameters in any order, OWS around ';' and ','.
        {"127.0.0.1", "PROTO=https;FOR=203.0.113.7;By=_proxy", "", reason::ok, "203.0.113.7", 1, "case and order"},
        {"127.0.0.1", "for=203.0.113.7 ; proto=https", "", reason::ok, "203.0.113.7", 1, "OWS around ;"},
        {"127.0.0.1", "for=1.1.1.1 ,  for=203.0.113.7  ", "", reason::ok, "203.0.113.7", 1, "OWS around ,"},
        {"127.0.0.1", "for=203.0.113.7;host=\"example.com:8080\";ext=\"a,b;c\\\"d\"", "", reason::ok, "203.0.113.7",
         1, "commas, semicolons and escaped quotes inside quoted strings"},
        {"127.0.0.1", "for=\"\\2\\0\\3.0.113.7\"", "", reason::ok, "203.0.113.7", 1, "quoted-pairs are unescaped"},
        {"10.0.0.2", "ext=\"a,b\\\\\";for=203.0.113.7, for=10.0.0.1", "", reason::ok, "203.0.113.7", 2,
         "an escaped backslash before a closing quote, read right to left"},
        // Several header lines, joined with ", " by the stack.
        {"10.0.0.2", "for=203.0.113.7, for=10.0.0.1", "", reason::ok, "203.0.113.7", 2, "two lines joined"},
        {"10.0.0.2", "for=203.0.113.7;proto=https, for=\"[2001:db8:ffff::1]:80\"", "", reason::ok, "203.0.113.7",
         2, "mixed families across lines"},
    };
    check_walks(proxies(), table);
}

TEST_CASE("resolve refuses a malformed entry wherever the walk must read it", "[proxy][resolve][malformed]") {
    // Each bad element, placed as the nearest hop and behind a trusted hop, is
    // forwarded_malformed; placed left of the client, it is never read.
    const std::vector<const char*> bad_forwarded = {
        "for=",                      // empty value
        "for",                       // no '='
        "=1.2.3.4",                  // no name
        "for =1.2.3.4",              // space before '='
        "for= 1.2.3.4",              // space after '='
        "for=1.2.3.4;",              // trailing ';'
        "for=1.2.3.4;for=5.6.7.8",   // duplicate for
        "for=1.2.3.4;proto=a;proto=b",  // duplicate proto
        "for=\"1.2.3.4",             // unterminated quoted string
        "for=[2001:db8::1]",         // IPv6 must be quoted
        "for=\"2001:db8::1\"",       // IPv6 must be bracketed
        "for=\"[2001:db8::1\"",      // no closing bracket
        "for=\"[2001:db8::1]x\"",    // junk after the bracket
        "for=\"[2001:db8::1]:\"",    // empty port
        "for=\"1.2.3.4:99999\"",     // port out of range
        "for=\"1.2.3.4:_\"",         // empty obfuscated port
        "for=\"[fe80::1%25eth0]\"",  // zone ids are not in RFC 7239
        "for=1.2.3",                 // not a dotted quad
        "for=01.2.3.4",              // leading zero
        "for=\"_\"",                 // obfuscated node needs a character after '_'
        "for=\"_a b\"",              // space in an obfuscated node
        "for=1.2.3.4 proto=http",    // missing ';'
        "for=\"1.2.3.4\"x",          // junk after a quoted string
        "for=\"a\x01\"",             // control character in a quoted string
        "proto=ht tp;for=1.2.3.4",   // bad token
        "",                          // empty list element
    };
    for (const char* bad : bad_forwarded) {
        CAPTURE(bad);
        const std::string nearest = std::string("for=203.0.113.7, ") + bad;
        const std::string behind = std::string("for=203.0.113.7, ") + bad + ", for=10.0.0.1";
        const std::string left = std::string(bad) + ", for=203.0.113.7";
        CHECK(proxies().resolve("127.0.0.1", nearest, "").decision.reason == reason::forwarded_malformed);
        const auto behind_hop = proxies().resolve("10.0.0.2", behind, "");
        CHECK(behind_hop.decision.reason == reason::forwarded_malformed);
        CHECK(behind_hop.hops == 1);
        CHECK(proxies().resolve("127.0.0.1", left, "").text() == "203.0.113.7");
    }
    const std::vector<const char*> bad_xff = {"", "1.2.3", "a.b.c.d", "1.2.3.4:", "1.2.3.4:70000", "[::1",
                                              "::1]",  "1.2.3.4 5.6.7.8", "for=1.2.3.4", "_hidden"};
    for (const char* bad : bad_xff) {
        CAPTURE(bad);
        CHECK(proxies().resolve("127.0.0.1", "", std::string("203.0.113.7, ") + bad).decision.reason ==
              reason::forwarded_malformed);
        CHECK(proxies().resolve("10.0.0.2", "", std::string("203.0.113.7, ") + bad + ", 10.0.0.1").decision.reason ==
              reason::forwarded_malformed);
        CHECK(proxies().resolve("127.0.0.1", "", std::string(bad) + ", 203.0.113.7").text() == "203.0.113.7");
    }
    CHECK(proxies().resolve("127.0.0.1", "", ", 203.0.113.7").text() == "203.0.113.7");
    CHECK(proxies().resolve("127.0.0.1", "", "203.0.113.7,").decision.reason == reason::forwarded_malformed);
    // A malformed peer is address_malformed whatever the headers say.
    CHECK(proxies().resolve("nonsense", "", "203.0.113.7").decision.reason == reason::address_malformed);
    CHECK(proxies().resolve_bytes(nullptr, 4, "", "203.0.113.7").decision.reason == reason::address_malformed);
}

TEST_CASE("resolve refuses a chain longer than the hop limit", "[proxy][resolve]") {
    const auto four = wsguard::trusted_proxies::create({"10.0.0.0/8"}, wsguard::trusted_proxy_options{4, false}).value();
    const std::string chain4 = "203.0.113.7, 10.0.0.1, 10.0.0.2, 10.0.0.3";  // peer + 3 entries: 4 hops
    CHECK(four.resolve("10.0.0.4", "", chain4).hops == 4);
    CHECK(four.resolve("10.0.0.4", "", chain4).text() == "203.0.113.7");
    const auto five = four.resolve("10.0.0.5", "", chain4 + ", 10.0.0.4");
    CHECK(five.decision.reason == reason::forwarded_too_many_hops);
    CHECK(five.hops == 4);
    // The default limit of 16, with Forwarded.
    std::string forwarded = "for=203.0.113.7";
    for (int i = 0; i < 16; ++i) forwarded += ", for=10.0.0." + std::to_string(i + 1);
    CHECK(proxies().resolve("10.0.0.99", forwarded, "").decision.reason == reason::forwarded_too_many_hops);
    CHECK(proxies().resolve("10.0.0.99", forwarded.substr(forwarded.find(", ") + 2), "").text() == "10.0.0.1");
}

TEST_CASE("resolve is safe and bounded on a megabyte of header", "[proxy][resolve]") {
    std::string xff;
    while (xff.size() < (1u << 20)) xff += "10.0.0.1, ";
    xff += "10.0.0.2";
    CHECK(proxies().resolve("127.0.0.1", "", xff).decision.reason == reason::forwarded_too_many_hops);
    std::string quotes(1u << 20, '"');
    CHECK(proxies().resolve("127.0.0.1", quotes, "").decision.reason == reason::forwarded_malformed);
    std::string backslashes = "for=\"" + std::string(1u << 20, '\\') + "\"";
    CHECK(proxies().resolve("127.0.0.1", backslashes, "").decision.reason == reason::forwarded_malformed);
    std::string long_token = "for=" + std::string(1u << 20, 'a');
    CHECK(proxies().resolve("127.0.0.1", long_token, "").decision.reason == reason::forwarded_malformed);
}

TEST_CASE("resolve_bytes takes the peer as 4 or 16 raw bytes", "[proxy][resolve]") {
    const std::uint8_t v4[4] = {127, 0, 0, 1};
    const std::uint8_t v6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    const std::uint8_t mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1};
    CHECK(proxies().resolve_bytes(v4, 4, "", "203.0.113.7").text() == "203.0.113.7");
    CHECK(proxies().resolve_bytes(v6, 16, "for=\"[2001:db8::5]\"", "").text() == "2001:db8::5");
    CHECK(proxies().resolve_bytes(mapped, 16, "", "203.0.113.7").hops == 1);
    CHECK(proxies().resolve_bytes(v4, 5, "", "203.0.113.7").decision.reason == reason::address_malformed);
    const std::uint8_t stranger[4] = {198, 51, 100, 1};
    CHECK(proxies().resolve_bytes(stranger, 4, "", "203.0.113.7").text() == "198.51.100.1");
}

TEST_CASE("client_address gives canonical RFC 5952 text and grouped keys", "[proxy][client_address]") {
    struct row {
        const char* peer;
        const char* text;
    };
    const std::vector<row> table = {
        {"192.0.2.1:80", "192.0.2.1"},
        {"[2001:0DB8:0000:0000:0000:0000:0000:0001]:443", "2001:db8::1"},
        {"2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"},
        {"2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"},
        {"fe80::1%eth0", "fe80::1"},
        {"::", "::"},
        {"::ffff:192.0.2.1", "192.0.2.1"},
        {"0.0.0.0", "0.0.0.0"},
        {"255.255.255.255", "255.255.255.255"},
        {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
    };
    for (const row& r : table) {
        CAPTURE(r.peer);
        const auto c = wsguard::client_address::from_peer(r.peer);
        REQUIRE(c);
        CHECK(c.text() == r.text);
        CHECK(c.hops == 0);
    }
    const auto c = wsguard::client_address::from_peer("2001:db8:1:2:3:4:5:6");
    CHECK(c.key() == *wsguard::address_key::from_text("2001:db8:1:2::"));
    CHECK(c.key({32, 128}) == *wsguard::address_key::from_text("2001:db8:1:2:3:4:5:6", {32, 128}));
    CHECK_FALSE(wsguard::client_address::from_peer("1.2.3.4.5"));
    CHECK(wsguard::client_address::from_peer("1.2.3.4.5").decision.reason == reason::address_malformed);
}

// ---------------------------------------------------------------------------
// PROXY protocol
// ---------------------------------------------------------------------------

namespace {

std::vector<std::uint8_t> bytes_of(std::string_view s) { return std::vector<std::uint8_t>(s.begin(), s.end()); }

const std::uint8_t v2_signature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

// A v2 header: signature, ver/cmd, fam/proto, the given body; `length` (when
// not -1) overrides the length field.
std::vector<std::uint8_t> v2(std::uint8_t ver_cmd, std::uint8_t fam, const std::vector<std::uint8_t>& body,
                             int length = -1) {
    std::vector<std::uint8_t> out(v2_signature, v2_signature + 12);
    out.push_back(ver_cmd);
    out.push_back(fam);
    const std::size_t n = length < 0 ? body.size() : static_cast<std::size_t>(length);
    out.push_back(static_cast<std::uint8_t>(n >> 8));
    out.push_back(static_cast<std::uint8_t>(n & 0xff));
    out.insert(out.end(), body.begin(), body.end());
    return out;
}

std::vector<std::uint8_t> inet_body(std::vector<std::uint8_t> tlvs = {}) {
    std::vector<std::uint8_t> body = {192, 0, 2, 1, 198, 51, 100, 2, 0xc3, 0x50, 0x01, 0xbb};  // 50000 -> 443
    for (const std::uint8_t byte : tlvs) body.push_back(byte);  // (insert() trips a g++ 12 -Warray-bounds false positive)
    return body;
}

std::vector<std::uint8_t> inet6_body() {
    std::vector<std::uint8_t> body = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7};
    for (int i = 0; i < 15; ++i) body.push_back(0);
    body.push_back(1);
    body.insert(body.end(), {0x12, 0x34, 0x00, 0x50});
    return body;
}

struct proxy_row {
    std::vector<std::uint8_t> header;
    reason expected;
    const char* source;  // when ok; the header is then all of `header`
    const char* why;
};

// Feeds every prefix of `bytes`: need_more until the whole header has arrived
// (or until a prefix can already be refused), then always the whole answer.
void check_every_split(const std::vector<std::uint8_t>& bytes, const wsguard::proxy_header& whole) {
    bool decided = false;
    for (std::size_t n = 0; n <= bytes.size(); ++n) {
        const wsguard::proxy_header part = wsguard::parse_proxy_header(bytes.data(), n);
        if (!part.need_more()) decided = true;
        if (decided) {
            CAPTURE(n);
            REQUIRE_FALSE(part.need_more());
            CHECK(part.decision.reason == whole.decision.reason);
            CHECK(part.header_size == whole.header_size);
            CHECK(part.source_text() == whole.source_text());
        } else if (whole.allowed()) {
            CHECK(n < whole.header_size);
            CHECK(part.header_size > n);  // says how many bytes it needs at least
        }
    }
}

void check_proxy_table(const std::vector<proxy_row>& table) {
    for (const proxy_row& r : table) {
        CAPTURE(r.why);
        std::vector<std::uint8_t> bytes = r.header;
        const std::string tail = "GET / HTTP/1.1\r\n";
        bytes.insert(bytes.end(), tail.begin(), tail.end());  // what follows is not part of the header
        const wsguard::proxy_header h = wsguard::parse_proxy_header(bytes.data(), bytes.size());
        CHECK(h.decision.reason == r.expected);
        if (r.expected == reason::ok) {
            REQUIRE(h.allowed());
            CHECK(h.source_text() == r.source);
            CHECK(h.header_size == r.header.size());
            CHECK(h.has_source() == (std::string(r.source) != ""));
            if (h.has_source()) {
                CHECK(h.source_key() == wsguard::address_key::from_text(r.source));
                CHECK(*h.source_key() == *wsguard::address_key::from_bytes(h.source_bytes(), 16));
            } else {
                CHECK_FALSE(h.source_key().has_value());
                CHECK(h.source_bytes() == nullptr);
            }
        } else {
            CHECK(h.refused());
            CHECK(h.header_size == 0);
            CHECK(h.decision.reason == r.expected);
        }
        check_every_split(bytes, h);
    }
}

}  // namespace

TEST_CASE("parse_proxy_header reads the v1 examples of the spec, split at every byte", "[proxy][v1]") {
    const std::vector<proxy_row> table = {
        {bytes_of("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"), reason::ok, "192.168.0.1", "spec 2.1"},
        {bytes_of("PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n"), reason::ok, "255.255.255.255",
         "spec 2.1: longest TCP4"},
        {bytes_of("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 "
                  "65535\r\n"),
         reason::ok, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "spec 2.1: longest TCP6"},
        {bytes_of("PROXY UNKNOWN\r\n"), reason::ok, "", "spec 2.1: shortest"},
        {bytes_of("PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                  "65535 65535\r\n"),
         reason::ok, "", "spec 2.1: longest line, 107 bytes"},
        {bytes_of("PROXY TCP6 2001:DB8::1 ::1 0 80\r\n"), reason::ok, "2001:db8::1", "canonical text, port 0"},
        {bytes_of("PROXY TCP6 ::ffff:192.0.2.9 ::1 1 2\r\n"), reason::ok, "192.0.2.9", "mapped reads as IPv4"},
        // Malformations.
        {bytes_of("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\n"), reason::proxy_header_malformed, "", "LF without CR"},
        {bytes_of("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\rX"), reason::proxy_header_malformed, "", "CR without LF"},
        {bytes_of("PROXY TCP4  192.168.0.1 192.168.0.11 56324 443\r\n"), reason::proxy_header_malformed, "", "two spaces"},
        {bytes_of("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443 \r\n"), reason::proxy_header_malformed, "", "trailing space"},
        {bytes_of("PROXY TCP4 192.168.0.1 192.168.0.11 56324\r\n"), reason::proxy_header_malformed, "", "missing port"},
        {bytes_of("PROXY TCP4 192.168.0.1 192.168.0.11 65536 443\r\n"), reason::proxy_header_malformed, "", "port over 65535"},
        {bytes_of("PROXY TCP4 192.168.0.1 192.168.0.11 056324 443\r\n"), reason::proxy_header_malformed, "", "leading zero port"},
        {bytes_of("PROXY TCP4 192.168.0.1 192.168.0.11 -1 443\r\n"), reason::proxy_header_malformed, "", "signed port"},
        {bytes_of("PROXY TCP4 192.168.000.1 192.168.0.11 1 443\r\n"), reason::proxy_header_malformed, "", "leading zero octet"},
        {bytes_of("PROXY TCP4 ::1 ::1 1 443\r\n"), reason::proxy_header_malformed, "", "IPv6 under TCP4"},
        {bytes_of("PROXY TCP6 192.168.0.1 192.168.0.11 1 443\r\n"), reason::proxy_header_malformed, "", "IPv4 under TCP6"},
        {bytes_of("PROXY TCP6 fe80::1%eth0 ::1 1 443\r\n"), reason::proxy_header_malformed, "", "zone id"},
        {bytes_of("PROXY UDP4 192.168.0.1 192.168.0.11 1 443\r\n"), reason::proxy_header_malformed, "", "unknown protocol"},
        {bytes_of("PROXY tcp4 192.168.0.1 192.168.0.11 1 443\r\n"), reason::proxy_header_malformed, "", "lowercase protocol"},
        {bytes_of("PROXY \r\n"), reason::proxy_header_malformed, "", "empty"},
        {bytes_of("PROXY TCP4 192.168.0.1\t192.168.0.11 1 443\r\n"), reason::proxy_header_malformed, "", "tab"},
        {bytes_of("PROXY UNKNOWN " + std::string(92, 'x') + "\r\n"), reason::proxy_header_malformed, "", "108 bytes"},
        {bytes_of("PROXY UNKNOWN " + std::string(200, 'x')), reason::proxy_header_malformed, "", "no CRLF within 107"},
        // Not a PROXY header at all.
        {bytes_of("GET / HTTP/1.1\r\n"), reason::proxy_header_missing, "", "plain HTTP"},
        {bytes_of("PROXYTCP4\r\n"), reason::proxy_header_missing, "", "no space after PROXY"},
        {bytes_of("proxy TCP4 1.2.3.4 1.2.3.4 1 1\r\n"), reason::proxy_header_missing, "", "lowercase signature"},
        {bytes_of("\x16\x03\x01"), reason::proxy_header_missing, "", "a TLS ClientHello"},
    };
    check_proxy_table(table);
    const auto h = wsguard::parse_proxy_header(table[0].header.data(), table[0].header.size());
    CHECK(h.version == 1);
    CHECK(h.family == wsguard::proxy_family::ipv4);
    CHECK(h.source_port == 56324);
    CHECK(h.destination_port == 443);
}

TEST_CASE("parse_proxy_header reads v2 PROXY, LOCAL, UNSPEC, AF_UNIX and TLVs, split at every byte", "[proxy][v2]") {
    std::vector<std::uint8_t> unix_body(216, 0);
    const std::vector<std::uint8_t> tlvs = {0x01, 0x00, 0x02, 'h', '2',          // PP2_TYPE_ALPN "h2"
                                            0x04, 0x00, 0x00,                    // PP2_TYPE_NOOP, empty
                                            0x20, 0x00, 0x01, 0x00};             // PP2_TYPE_SSL, 1 byte
    const std::vector<proxy_row> table = {
        {v2(0x21, 0x11, inet_body()), reason::ok, "192.0.2.1", "PROXY TCP over IPv4"},
        {v2(0x21, 0x12, inet_body()), reason::ok, "192.0.2.1", "PROXY UDP over IPv4"},
        {v2(0x21, 0x21, inet6_body()), reason::ok, "2001:db8::7", "PROXY TCP over IPv6"},
        {v2(0x21, 0x11, inet_body(tlvs)), reason::ok, "192.0.2.1", "TLVs skipped"},
        {v2(0x20, 0x00, {}), reason::ok, "", "LOCAL, UNSPEC (health check)"},
        {v2(0x20, 0x11, inet_body()), reason::ok, "", "LOCAL ignores the address block"},
        {v2(0x20, 0x11, {}, 0), reason::ok, "", "LOCAL with a family but no block"},
        {v2(0x21, 0x00, {}), reason::ok, "", "PROXY UNSPEC"},
        {v2(0x21, 0x31, unix_body), reason::ok, "", "AF_UNIX stream"},
        {v2(0x21, 0x11, inet_body({0x01, 0x00, 0x00})), reason::ok, "192.0.2.1", "empty TLV value"},
        // Malformations: lengths and TLV bounds.
        {v2(0x21, 0x11, std::vector<std::uint8_t>(11, 0)), reason::proxy_header_malformed, "", "IPv4 block too short"},
        {v2(0x21, 0x21, inet_body()), reason::proxy_header_malformed, "", "IPv6 family, IPv4-sized block"},
        {v2(0x21, 0x31, std::vector<std::uint8_t>(215, 0)), reason::proxy_header_malformed, "", "AF_UNIX block too short"},
        {v2(0x21, 0x11, inet_body({0x01, 0x00, 0x05, 'a'})), reason::proxy_header_malformed, "", "TLV runs past the header"},
        {v2(0x21, 0x11, inet_body({0x01, 0x00})), reason::proxy_header_malformed, "", "truncated TLV header"},
        {v2(0x21, 0x11, inet_body({0x01})), reason::proxy_header_malformed, "", "one stray byte"},
        // Versions, commands, families and transports the spec does not define.
        {v2(0x11, 0x11, inet_body()), reason::proxy_header_unsupported, "", "version 1 in binary"},
        {v2(0x31, 0x11, inet_body()), reason::proxy_header_unsupported, "", "version 3"},
        {v2(0x22, 0x11, inet_body()), reason::proxy_header_unsupported, "", "command 2"},
        {v2(0x2f, 0x11, inet_body()), reason::proxy_header_unsupported, "", "command 15"},
        {v2(0x21, 0x41, inet_body()), reason::proxy_header_unsupported, "", "family 4"},
        {v2(0x21, 0x13, inet_body()), reason::proxy_header_unsupported, "", "transport 3"},
        // Not the signature.
        {{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0B, 0x21, 0x11, 0, 0},
         reason::proxy_header_missing, "", "last signature byte wrong"},
        {{0x0D, 0x0A, 0x0D, 0x0A, 0x0D}, reason::proxy_header_missing, "", "CRLFCRLF then not NUL"},
        {{0x00}, reason::proxy_header_missing, "", "a NUL byte"},
    };
    check_proxy_table(table);
    const auto bytes = v2(0x21, 0x21, inet6_body());
    const auto h = wsguard::parse_proxy_header(bytes.data(), bytes.size());
    CHECK(h.version == 2);
    CHECK(h.family == wsguard::proxy_family::ipv6);
    CHECK(h.source_port == 0x1234);
    CHECK(h.destination_port == 80);
    CHECK_FALSE(h.local);
    const auto local = v2(0x20, 0x00, {});
    CHECK(wsguard::parse_proxy_header(local.data(), local.size()).local);
    const auto unix_socket = v2(0x21, 0x31, unix_body);
    CHECK(wsguard::parse_proxy_header(unix_socket.data(), unix_socket.size()).family == wsguard::proxy_family::unix_socket);
}

TEST_CASE("parse_proxy_header waits for a truncated v2 length and says how much it needs", "[proxy][v2]") {
    const auto bytes = v2(0x21, 0x11, inet_body({0x01, 0x00, 0x02, 'h', '2'}));
    for (std::size_t n = 0; n < 16; ++n) CHECK(wsguard::parse_proxy_header(bytes.data(), n).header_size == 16);
    for (std::size_t n = 16; n < bytes.size(); ++n) {
        const auto h = wsguard::parse_proxy_header(bytes.data(), n);
        CHECK(h.need_more());
        CHECK(h.header_size == bytes.size());
        CHECK(h.decision.allowed());
    }
    // The largest length the field can hold is read, not feared.
    auto big = v2(0x21, 0x11, inet_body(), 65534);
    CHECK(wsguard::parse_proxy_header(big.data(), big.size()).header_size == 16 + 65534);
    big.resize(16 + 65534, 0);  // zero-filled TLVs of 3 bytes each, then 2 stray bytes
    CHECK(wsguard::parse_proxy_header(big.data(), big.size()).decision.reason == reason::proxy_header_malformed);
    CHECK(wsguard::parse_proxy_header(nullptr, 10).need_more());
}

TEST_CASE("parse_proxy_header answers random splits of random bytes like the whole buffer", "[proxy][v2]") {
    std::mt19937 rng(7239);
    for (int round = 0; round < 2000; ++round) {
        std::vector<std::uint8_t> bytes = round % 2 == 0 ? v2(0x21, 0x11, inet_body({0x01, 0x00, 0x01, 'x'}))
                                                         : bytes_of("PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\n");
        bytes[rng() % bytes.size()] = static_cast<std::uint8_t>(rng());  // one random byte changed
        const auto whole = wsguard::parse_proxy_header(bytes.data(), bytes.size());
        check_every_split(bytes, whole);
    }
}
