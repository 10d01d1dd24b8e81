// Section 4 of wsguard.hpp (inlined into the release header). Not a public header.
// ===========================================================================
// 4. Crypto: sha256, hmac_sha256, base64url, random bytes
// ===========================================================================
#ifndef WSGUARD_HPP
#error "include <wsguard.hpp>, not this file"
#endif

namespace wsguard {
inline namespace WSGUARD_ABI_NS {

}  // inline namespace WSGUARD_ABI_NS
}  // namespace wsguard
