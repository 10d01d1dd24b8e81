// The Public Suffix List table generated into wsguard/detail/public_suffix_data.hpp
// matches the list it came from: the snapshot committed as
// tests/psl/public_suffix_list.dat (never the build host's list, which differs
// between distributions), parsed here at test time. Its version, date and
// sha256 are in tests/psl/README.md. Regenerate with:
// python3 tests/psl/generate_psl_table.py (docs/maintaining.md).
#include <wsguard.hpp>

#include <cstdint>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "catch.hpp"

#ifndef WSGUARD_SOURCE_DIR
#error "tests/meson.build defines WSGUARD_SOURCE_DIR (the checkout's root)"
#endif
#define WSGUARD_PSL_PATH WSGUARD_SOURCE_DIR "/tests/psl/public_suffix_list.dat"
#define WSGUARD_PSL_METADATA_PATH WSGUARD_SOURCE_DIR "/tests/psl/README.md"

namespace {

namespace d = wsguard::detail;

std::string read_file(const char* path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string hex(const wsguard::sha256_digest& digest) {
    static const char digits[] = "0123456789abcdef";
    std::string out;
    for (std::uint8_t b : digest) {
        out += digits[b >> 4];
        out += digits[b & 15];
    }
    return out;
}

// A "- key: value" line of tests/psl/README.md, or "" when there is none.
std::string metadata_field(const std::string& readme, const std::string& key) {
    const std::string marker = "\n- " + key + ": ";
    const std::size_t at = readme.find(marker);
    if (at == std::string::npos) return "";
    const std::size_t start = at + marker.size();
    return readme.substr(start, readme.find('\n', start) - start);
}

// RFC 3492 Punycode, encoding only: the list writes IDN rules in Unicode, the
// table (like a browser's Origin) in their xn-- form.
std::u32string utf8_decode(std::string_view s) {
    std::u32string out;
    for (std::size_t i = 0; i < s.size();) {
        const unsigned char c = static_cast<unsigned char>(s[i]);
        const int extra = c < 0x80 ? 0 : c < 0xe0 ? 1 : c < 0xf0 ? 2 : 3;
        char32_t cp = extra == 0 ? c : extra == 1 ? (c & 0x1f) : extra == 2 ? (c & 0x0f) : (c & 0x07);
        for (int k = 1; k <= extra && i + static_cast<std::size_t>(k) < s.size(); ++k) {
            cp = (cp << 6) | (static_cast<unsigned char>(s[i + static_cast<std::size_t>(k)]) & 0x3f);
        }
        out += cp;
        i += static_cast<std::size_t>(extra) + 1;
    }
    return out;
}

std::string punycode(const std::u32string& input) {
    const std::uint32_t base = 36, tmin = 1, tmax = 26, skew = 38, damp = 700;
    const auto adapt = [&](std::uint32_t delta, std::uint32_t points, bool first) {
        delta = first ? delta / damp : delta / 2;
        delta += delta / points;
        std::uint32_t k = 0;
        while (delta > ((base - tmin) * tmax) / 2) {
            delta /= base - tmin;
            k += base;
        }
        return k + (base - tmin + 1) * delta / (delta + skew);
    };
    const auto digit = [](std::uint32_t v) { return static_cast<char>(v < 26 ? 'a' + v : '0' + (v - 26)); };
    std::string out;
    for (char32_t c : input) {
        if (c < 0x80) out += static_cast<char>(c);
    }
    const std::uint32_t basic = static_cast<std::uint32_t>(out.size());
    std::uint32_t handled = basic;
    if (basic > 0) out += '-';
    std::uint32_t n = 128, delta = 0, bias = 72;
    while (handled < input.size()) {
        std::uint32_t m = 0xffffffff;
        for (char32_t c : input) {
            if (c >= n && c < m) m = c;
        }
        delta += (m - n) * (handled + 1);
        n = m;
        for (char32_t c : input) {
            if (c < n) ++delta;
            if (c == n) {
                std::uint32_t q = delta;
                for (std::uint32_t k = base;; k += base) {
                    const std::uint32_t t = k <= bias ? tmin : k >= bias + tmax ? tmax : k - bias;
                    if (q < t) break;
                    out += digit(t + (q - t) % (base - t));
                    q = (q - t) / (base - t);
                }
                out += digit(q);
                bias = adapt(delta, handled + 1, handled == basic);
                delta = 0;
                ++handled;
            }
        }
        ++delta;
        ++n;
    }
    return out;
}

std::string to_ascii_rule(std::string_view rule) {
    std::string out;
    std::size_t start = 0;
    while (true) {
        const std::size_t dot = rule.find('.', start);
        const std::string_view label = rule.substr(start, dot == std::string_view::npos ? dot : dot - start);
        bool ascii = true;
        for (char c : label) ascii = ascii && static_cast<unsigned char>(c) < 0x80;
        if (ascii) {
            for (char c : label) out += (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
        } else {
            out += "xn--" + punycode(utf8_decode(label));
        }
        if (dot == std::string_view::npos) return out;
        out += '.';
        start = dot + 1;
    }
}

struct parsed_list {
    std::set<std::string> rules;  // as written in the list, ASCII: "co.uk", "*.ck", "!www.ck"
    std::size_t rule_lines = 0;
    std::size_t icann = 0;
    std::size_t private_ = 0;
};

parsed_list parse_list(const std::string& text) {
    parsed_list list;
    std::istringstream lines(text);
    std::string line;
    bool in_private = false;
    while (std::getline(lines, line)) {
        if (line.find("===BEGIN PRIVATE DOMAINS===") != std::string::npos) in_private = true;
        const std::size_t first = line.find_first_not_of(" \t\r");
        if (first == std::string::npos || line.compare(first, 2, "//") == 0) continue;
        const std::size_t end = line.find_first_of(" \t\r", first);
        const std::string rule = line.substr(first, end == std::string::npos ? end : end - first);
        ++list.rule_lines;
        ++(in_private ? list.private_ : list.icann);
        const bool exception = rule[0] == '!';
        list.rules.insert((exception ? "!" : "") + to_ascii_rule(exception ? rule.substr(1) : rule));
    }
    return list;
}

// The table, decoded back into list notation.
std::set<std::string> table_rules() {
    std::set<std::string> rules;
    for (std::string_view chunk : d::origin_psl_chunks) {
        std::size_t start = 0;
        while (start < chunk.size()) {
            const std::size_t end = chunk.find('\n', start);
            std::string_view line = chunk.substr(start, end - start);
            start = end + 1;
            std::string prefix;
            if (line.back() == '!') {
                prefix = "!";
                line.remove_suffix(1);
            } else if (line.size() >= 2 && line.substr(line.size() - 2) == ".*") {
                prefix = "*.";
                line.remove_suffix(2);
            }
            rules.insert(prefix + d::origin_psl_reversed(line));
        }
    }
    return rules;
}

std::size_t label_count(std::string_view domain) {
    std::size_t n = 1;
    for (char c : domain) n += (c == '.');
    return n;
}

// The PSL algorithm (publicsuffix.org/list/), straight over the parsed list:
// the number of labels of the public suffix of `domain`.
std::size_t reference_suffix_labels(const std::set<std::string>& rules, const std::string& domain) {
    std::vector<std::string> suffixes;  // suffixes[k] = last k labels
    suffixes.emplace_back();
    std::size_t end = domain.size();
    while (true) {
        const std::size_t dot = domain.rfind('.', end - 1);
        suffixes.push_back(domain.substr(dot == std::string::npos ? 0 : dot + 1));
        if (dot == std::string::npos) break;
        end = dot;
    }
    std::size_t best = 1;
    for (std::size_t k = 1; k < suffixes.size(); ++k) {
        if (rules.count("!" + suffixes[k])) return k - 1;
    }
    for (std::size_t k = 1; k < suffixes.size(); ++k) {
        if (rules.count(suffixes[k])) best = k;
        if (k >= 2 && rules.count("*." + suffixes[k - 1])) best = k;
    }
    return best;
}

const parsed_list& the_list() {
    static const parsed_list list = parse_list(read_file(WSGUARD_PSL_PATH));
    return list;
}

}  // namespace

TEST_CASE("the punycode encoder used to read the list matches known IDN labels", "[psl]") {
    CHECK(punycode(utf8_decode("b\xc3\xbc" "cher")) == "bcher-kva");
    CHECK(punycode(utf8_decode("\xe4\xb8\xad\xe5\x9b\xbd")) == "fiqs8s");           // China
    CHECK(punycode(utf8_decode("\xe9\xa6\x99\xe6\xb8\xaf")) == "j6w193g");          // Hong Kong
    CHECK(punycode(utf8_decode("\xd1\x80\xd1\x84")) == "p1ai");                     // .rf
    CHECK(to_ascii_rule("\xe4\xb8\xad\xe5\x9b\xbd.com") == "xn--fiqs8s.com");
}

TEST_CASE("the public suffix table is pinned to the committed list it was generated from", "[psl]") {
    const std::string text = read_file(WSGUARD_PSL_PATH);
    INFO("list: " WSGUARD_PSL_PATH);
    REQUIRE_FALSE(text.empty());
    const std::string readme = read_file(WSGUARD_PSL_METADATA_PATH);
    REQUIRE_FALSE(readme.empty());

    // The committed list is the one its metadata names, and the header was
    // generated from exactly that list (the generator copies these fields).
    const std::string sha256 = hex(wsguard::sha256(text));
    CHECK(metadata_field(readme, "sha256") == sha256);
    CHECK(sha256 == d::origin_psl_source_sha256);
    CHECK(metadata_field(readme, "version") == d::origin_psl_version);
    CHECK(metadata_field(readme, "date") == d::origin_psl_date);
    CHECK(the_list().rule_lines == d::origin_psl_rule_count);
    CHECK(the_list().icann > 5000);
    CHECK(the_list().private_ > 1000);
}

TEST_CASE("the public suffix table holds exactly the rules of the list, IDN rules in punycode", "[psl]") {
    const std::set<std::string> from_table = table_rules();
    const std::set<std::string>& from_list = the_list().rules;
    REQUIRE_FALSE(from_list.empty());
    CHECK(from_table.size() == from_list.size());
    std::string missing, extra;  // named, so a failure says which rules
    for (const std::string& rule : from_list) {
        if (!from_table.count(rule)) missing += rule + " ";
    }
    for (const std::string& rule : from_table) {
        if (!from_list.count(rule)) extra += rule + " ";
    }
    CAPTURE(missing, extra);
    CHECK(missing.empty());
    CHECK(extra.empty());
    CHECK(from_list.count("*.ck"));
    CHECK(from_list.count("!www.ck"));
    CHECK(from_list.count("github.io"));
    CHECK(from_list.count("xn--fiqs8s"));
}

TEST_CASE("every rule of the list gives the same public suffix from the table as from the list", "[psl]") {
    const std::set<std::string>& rules = the_list().rules;
    std::size_t checked = 0;
    for (const std::string& rule : rules) {
        const bool exception = rule[0] == '!';
        const bool wildcard = rule.compare(0, 2, "*.") == 0;
        const std::string domain = exception ? rule.substr(1) : wildcard ? rule.substr(2) : rule;
        // The rule's own name, a name beneath it, and (for * and !) the names
        // the rule is about.
        std::vector<std::string> names = {domain, "x." + domain, "a.b." + domain};
        for (const std::string& name : names) {
            INFO("rule " << rule << ", name " << name);
            CHECK(d::origin_psl_suffix_labels(name) == reference_suffix_labels(rules, name));
            ++checked;
        }
        INFO("rule " << rule);
        if (exception) {
            CHECK_FALSE(d::origin_psl_is_public_suffix(domain));
            CHECK(d::origin_psl_suffix_labels(domain) == label_count(domain) - 1);
        } else if (wildcard) {
            CHECK(d::origin_psl_is_public_suffix("x." + domain) == !rules.count("!x." + domain));
        } else {
            CHECK(d::origin_psl_is_public_suffix(domain) == !rules.count("!" + domain));
        }
    }
    CHECK(checked == 3 * rules.size());
}

TEST_CASE("the public suffix table answers the examples the origin policy relies on", "[psl]") {
    struct row {
        const char* domain;
        bool public_suffix;
        const char* why;
    };
    const std::vector<row> rows = {
        {"com", true, "an ICANN TLD"},
        {"localhost", true, "any single label, by the implicit * rule"},
        {"co.uk", true, "an ICANN second-level suffix"},
        {"github.io", true, "a private-section suffix"},
        {"foo.ck", true, "covered by the wildcard rule *.ck"},
        {"www.ck", false, "carved out by the exception !www.ck"},
        {"city.kawasaki.jp", false, "carved out by !city.kawasaki.jp"},
        {"example.com", false, "a registrable domain"},
        {"example.co.uk", false, "a registrable domain under a suffix"},
        {"myapp.github.io", false, "one user's site"},
        {"xn--fiqs8s", true, "an IDN TLD in punycode"},
    };
    for (const row& r : rows) {
        INFO(r.domain << " -- " << r.why);
        CHECK(d::origin_psl_is_public_suffix(r.domain) == r.public_suffix);
    }
    CHECK(d::origin_psl_rule_beneath("amazonaws.com").size() > 0);
    CHECK(d::origin_psl_rule_beneath("compute.amazonaws.com") == "*.compute.amazonaws.com");
    CHECK(d::origin_psl_rule_beneath("example.com").empty());
    CHECK(d::origin_psl_rule_beneath("kawasaki.jp") == "*.kawasaki.jp");
}
