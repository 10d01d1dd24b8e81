// Random pattern lists (one pattern per line) through origin_policy::create
// and host_allowlist::create. A list that is accepted must let through the
// origins its own patterns describe: an exact pattern matches itself, a
// wildcard pattern matches a host one label below it, ":*" matches a port.
// A refused list must say why, naming the component.
#include <wsguard.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace {

void require(bool ok) {
    if (!ok) std::abort();
}

// "https://*.example.com:*" -> "https://a.example.com:1234"
std::string instance_of(std::string_view pattern) {
    std::string s(pattern);
    const std::size_t sep = s.find("://");
    if (sep != std::string::npos && s.compare(sep + 3, 2, "*.") == 0) s[sep + 3] = 'a';
    if (s.size() >= 2 && s.compare(s.size() - 2, 2, ":*") == 0) s.replace(s.size() - 2, 2, ":1234");
    return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    std::vector<std::string_view> patterns;
    for (std::size_t start = 0; start <= input.size() && patterns.size() < 64;) {
        const std::size_t end = input.find('\n', start);
        patterns.push_back(input.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
        if (end == std::string_view::npos) break;
        start = end + 1;
    }

    const auto policy = wsguard::origin_policy::create(patterns);
    if (!policy) {
        require(policy.error().rfind("origin_policy: ", 0) == 0);
    } else {
        require(policy->size() <= patterns.size());
        for (std::string_view pattern : patterns) {
            const std::string origin = instance_of(pattern);
            if (origin.size() > 250) continue;  // "a." may push a 253-byte name over its limit
            require(policy->check(origin).allowed());
            // Every accepted pattern is accepted alone too.
            require(static_cast<bool>(wsguard::origin_policy::create({pattern})));
        }
    }

    const auto hosts = wsguard::host_allowlist::create(patterns);
    if (!hosts) {
        require(hosts.error().rfind("host_allowlist: ", 0) == 0);
    } else {
        for (std::string_view pattern : patterns) require(hosts->check(instance_of(pattern)).allowed());
    }
    return 0;
}
