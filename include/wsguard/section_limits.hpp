// Section 6 of wsguard.hpp (inlined into the release header). Not a public header.
// ===========================================================================
// 6. Rate limits: token_bucket, keyed_limiter, connection_limiter, address keys
// ===========================================================================
#ifndef WSGUARD_HPP
#error "include <wsguard.hpp>, not this file"
#endif

namespace wsguard {
inline namespace WSGUARD_ABI_NS {

}  // inline namespace WSGUARD_ABI_NS
}  // namespace wsguard
