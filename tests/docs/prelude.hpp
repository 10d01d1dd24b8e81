// The harness that tests/docs/extract_cpp_blocks.py wraps around every docs
// block whose first line is `// fragment`: <wsguard.hpp>, the standard headers
// a fragment may use without including them, and a SMALL set of stand-ins for
// "your application" (the request being handled, how you answer it, a key from
// your configuration). A fragment may use these names and nothing else
// undeclared; docs/maintaining.md lists them. Nothing here is called: the
// fragments are compiled, not run.
#ifndef WSGUARD_DOCS_PRELUDE_HPP
#define WSGUARD_DOCS_PRELUDE_HPP

#include <wsguard.hpp>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace docs_prelude {

// The upgrade request as your HTTP stack hands it over (empty view = header absent).
inline std::string_view method = "GET", target = "/chat", origin = "https://app.example.com",
                        host = "api.example.com", fetch_site, protocols, peer = "192.0.2.1:50000";
// Its header lines, (name, value) in arrival order, as the stack iterates them.
inline const std::vector<std::pair<std::string_view, std::string_view>> header_lines = {
    {"Host", host}, {"Origin", origin}, {"Upgrade", "websocket"}};

// A secret from your configuration (at least 32 random bytes in real life).
inline const std::string secret_of_at_least_32_bytes(32, 'k');
inline const std::string& secret_from_config = secret_of_at_least_32_bytes;

// How your server answers: refuse with a status (a body, a Retry-After), or accept the upgrade.
inline int reject(int /*http_status*/, std::string_view /*body*/ = {}, std::int64_t /*retry_after_seconds*/ = 0) { return 0; }
inline int reject(wsguard::reason /*why*/, std::int64_t /*retry_after_seconds*/ = 0) { return 0; }
inline int accept(std::string_view /*sec_websocket_protocol*/ = {}) { return 0; }
// After the upgrade: close the socket with a close code (1008, ...) and a reason.
inline int close_socket(int /*close_code*/, std::string_view /*reason*/ = {}) { return 0; }

// Your per-connection state.
struct session_state {
    wsguard::handshake_outcome::connection_permit permit;
};
inline session_state session;

}  // namespace docs_prelude

using namespace docs_prelude;

#endif  // WSGUARD_DOCS_PRELUDE_HPP
