// Random Origin (and Host, Sec-Fetch-Site) values against a fixed mixed
// policy. Besides the sanitizers, asserts invariants every answer must keep:
// an allowed origin is at most the cap, printable ASCII, scheme://host[:port]
// with no path; ASCII case never changes an answer; appending "/" or
// prepending a space never turns a refusal into a grant.
#include <wsguard.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

const wsguard::origin_policy& policy() {
    static const wsguard::origin_policy p = wsguard::origin_policy::create({
        "https://app.example.com", "https://app.example.com:8443", "http://[::1]:8080", "https://*.example.org",
        "http://localhost:*", "http://127.0.0.1:3000", "https://trailing.example.net.", "https://*.wild.example.net:*",
        "https://[2001:db8::1]", "https://xn--bcher-kva.example",
    }).value();
    return p;
}

const wsguard::host_allowlist& hosts() {
    static const wsguard::host_allowlist h = wsguard::host_allowlist::create(
        {"localhost:8080", "127.0.0.1:8080", "[::1]:8080", "app.example.com", "dev.local:*"}).value();
    return h;
}

std::string map_case(std::string_view s, bool upper) {
    std::string out(s);
    for (char& c : out) {
        if (upper && c >= 'a' && c <= 'z') c = static_cast<char>(c - 32);
        if (!upper && c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
    }
    return out;
}

void require(bool ok) {
    if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    const wsguard::decision d = policy().check(input);

    if (d.allowed()) {
        require(!input.empty() && input.size() <= wsguard::origin_policy::max_header_length);
        for (char c : input) require(c > 0x20 && c < 0x7f);
        const std::size_t sep = input.find("://");
        require(sep != std::string_view::npos);
        const std::string_view rest = input.substr(sep + 3);
        require(rest.find_first_of("/?#@%, ") == std::string_view::npos);
        require(policy().check(std::string(input) + "/").reason == wsguard::reason::origin_malformed);
        require(policy().check(" " + std::string(input)).reason == wsguard::reason::origin_malformed);
    }
    if (input.size() > wsguard::origin_policy::max_header_length) require(d.reason == wsguard::reason::origin_too_long);
    if (input.empty()) require(d.reason == wsguard::reason::origin_missing);
    require(wsguard::category_of(d.reason) == wsguard::reason_category::ok ||
            wsguard::category_of(d.reason) == wsguard::reason_category::origin);

    // ASCII case folds everywhere: scheme, host, IPv6 hex, "null".
    require(policy().check(map_case(input, false)).reason == d.reason);
    require(policy().check(map_case(input, true)).reason == d.reason);

    const wsguard::decision h = hosts().check(input);
    require(hosts().check(map_case(input, false)).reason == h.reason);
    if (h.allowed()) {
        for (char c : input) require(c > 0x20 && c < 0x7f && c != '/' && c != '@');
    }

    const wsguard::decision f = wsguard::check_sec_fetch_site(input);
    if (f.allowed()) require(input.empty() || input == "same-origin" || input == "same-site" || input == "none");
    return 0;
}
