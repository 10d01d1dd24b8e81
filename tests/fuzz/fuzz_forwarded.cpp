// libFuzzer target for wsguard::trusted_proxies::resolve (Forwarded and
// X-Forwarded-For).
//
// Input: byte 0 picks the peer and the hop limit; the rest is split at the
// first NUL into a Forwarded value and an X-Forwarded-For value. Checked:
//  - the answer is ok or one of the resolver's refusals; an ok client's text
//    is canonical (it parses back to the same address and prints the same);
//    hops never exceed the limit;
//  - a model written independently walks the same chain: it splits the whole
//    header left to right (honouring quoted strings, as a forward HTTP parser
//    does) into a vector and walks it from the right. Where the whole header
//    splits cleanly and every element is readable, the library's right-to-left
//    split must give the same client, reason and hop count (for a Forwarded
//    value with quotes: when every element is well-formed, since a backward
//    and a forward reader may cut malformed quoting at different commas).
#include <wsguard.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace {

using wsguard::reason;

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "fuzz_forwarded: %s\n", what);
    std::abort();
}
void require(bool ok, const char* what) {
    if (!ok) fail(what);
}

const char* const peers[] = {"127.0.0.1", "10.0.0.9:4000", "[::1]:80", "203.0.113.7", "::ffff:10.1.1.1", "2001:db8:ffff::5"};

// Left to right, as a forward parser: commas outside quoted strings, with
// backslash escapes inside them. False when a quoted string never closes.
bool split_forward(std::string_view s, std::vector<std::string_view>& out) {
    std::size_t begin = 0;
    bool quoted = false;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (quoted) {
            if (s[i] == '\\') ++i;
            else if (s[i] == '"') quoted = false;
        } else if (s[i] == '"') {
            quoted = true;
        } else if (s[i] == ',') {
            out.push_back(s.substr(begin, i - begin));
            begin = i + 1;
        }
    }
    if (quoted) return false;
    out.push_back(s.substr(begin));
    return true;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    static const auto wide = wsguard::trusted_proxies::create({"127.0.0.0/8", "10.0.0.0/8", "::1", "2001:db8:ffff::/48"}).value();
    static const auto short_limit =
        wsguard::trusted_proxies::create({"127.0.0.0/8", "10.0.0.0/8", "::1", "2001:db8:ffff::/48"},
                                         wsguard::trusted_proxy_options{3, false})
            .value();
    const auto& proxies = (data[0] & 0x80) != 0 ? short_limit : wide;
    const std::string_view peer = peers[(data[0] & 0x7f) % (sizeof peers / sizeof peers[0])];
    const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
    const std::size_t nul = rest.find('\0');
    const std::string_view forwarded = rest.substr(0, nul);
    const std::string_view xff = nul == std::string_view::npos ? std::string_view() : rest.substr(nul + 1);

    const wsguard::client_address got = proxies.resolve(peer, forwarded, xff);
    switch (got.decision.reason) {
        case reason::ok: case reason::forwarded_malformed: case reason::forwarded_too_many_hops:
        case reason::forwarded_unknown_hop: break;
        default: fail("unexpected reason");
    }
    require(got.hops <= proxies.settings().max_hops, "hops over the limit");
    if (got) {
        const auto parsed = wsguard::client_address::from_peer(got.text());
        require(parsed && parsed.text() == got.text(), "client text is not canonical");
        require(parsed.key({32, 128}) == got.key({32, 128}), "client text and key disagree");
    } else {
        require(got.text().empty(), "refusal with text");
    }

    // The model.
    const bool use_forwarded = !trim(forwarded).empty();
    const std::string_view header = trim(use_forwarded ? forwarded : xff);
    if (!proxies.trusts(peer) || header.empty()) {
        require(got && got.hops == 0 && got.key({32, 128}) == wsguard::client_address::from_peer(peer).key({32, 128}),
                "untrusted peer or no header: the peer is the client");
        return 0;
    }
    std::vector<std::string_view> elements;
    if (use_forwarded) {
        if (!split_forward(header, elements)) return 0;
    } else {
        std::size_t begin = 0;
        for (std::size_t i = 0; i <= header.size(); ++i) {
            if (i == header.size() || header[i] == ',') {
                elements.push_back(header.substr(begin, i - begin));
                begin = i + 1;
            }
        }
    }
    // With quotes in a malformed header, a forward and a backward reader may
    // cut it at different commas; the library reads only what the trusted
    // proxies appended (well-formed), so compare only well-formed headers then.
    if (use_forwarded && header.find('"') != std::string_view::npos) {
        for (const std::string_view e : elements) {
            std::uint8_t ignored[16];
            if (wsguard::detail::forwarded_parse_element(e, ignored) == wsguard::detail::proxy_hop::malformed) return 0;
        }
    }
    std::size_t hops = 0;
    std::uint8_t current[16];
    wsguard::client_address expect = wsguard::client_address::from_peer(peer);
    for (std::size_t k = elements.size(); k-- > 0;) {
        if (hops == proxies.settings().max_hops) {
            require(got.decision.reason == reason::forwarded_too_many_hops && got.hops == hops, "model: too many hops");
            return 0;
        }
        wsguard::detail::proxy_hop hop;
        if (use_forwarded) {
            hop = wsguard::detail::forwarded_parse_element(elements[k], current);
        } else {
            const std::string_view e = trim(elements[k]);
            const bool unknown = e.size() == 7 && (e[0] | 0x20) == 'u' && (e[1] | 0x20) == 'n' && (e[2] | 0x20) == 'k' &&
                                 (e[3] | 0x20) == 'n' && (e[4] | 0x20) == 'o' && (e[5] | 0x20) == 'w' && (e[6] | 0x20) == 'n';
            const auto as_peer = wsguard::client_address::from_peer(e);
            hop = unknown ? wsguard::detail::proxy_hop::unknown
                  : as_peer ? wsguard::detail::proxy_hop::address : wsguard::detail::proxy_hop::malformed;
            if (as_peer) expect = as_peer;
        }
        if (hop == wsguard::detail::proxy_hop::malformed) {
            require(got.decision.reason == reason::forwarded_malformed, "model: malformed");
            return 0;
        }
        if (hop == wsguard::detail::proxy_hop::unknown) {
            require(got.decision.reason == reason::forwarded_unknown_hop && got.hops == hops, "model: unknown hop");
            return 0;
        }
        ++hops;
        if (use_forwarded) expect = wsguard::client_address::from_peer_bytes(current, 16);
        if (!proxies.trusts(expect.text())) break;
    }
    require(got && got.hops == hops && got.text() == expect.text(), "model: client differs");
    return 0;
}
