// Compile-fail test: each DISCARD_* case drops a verdict that must not be
// ignored. Built once per case with that macro (the compiler must report the
// discarded [[nodiscard]] value) and once with none (it must compile cleanly,
// proving the failures come from the discards alone).
#include <wsguard.hpp>

#include <cstdint>

int main() {
    auto policy = wsguard::origin_policy::create({"https://app.example.com"});
#if defined(DISCARD_RESULT)
    wsguard::origin_policy::create({"https://app.example.com"});  // a result<T> dropped
#endif
    if (!policy) return 1;
#if defined(DISCARD_DECISION)
    policy.value().check("https://evil.example");  // a decision dropped
#endif
    std::uint8_t key[32];
#if defined(DISCARD_REASON)
    wsguard::random_bytes(key, sizeof key);  // a bare reason dropped: the key would stay unset
#endif
    const wsguard::reason filled = wsguard::random_bytes(key, sizeof key);
    return policy.value().check("https://app.example.com").allowed() && filled == wsguard::reason::ok ? 0 : 1;
}
