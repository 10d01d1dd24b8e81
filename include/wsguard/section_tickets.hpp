// Section 5 of wsguard.hpp (inlined into the release header). Not a public header.
// ===========================================================================
// 5. Tickets: keyring, issuer, verifier, replay store, transport helpers
// ===========================================================================
#ifndef WSGUARD_HPP
#error "include <wsguard.hpp>, not this file"
#endif

namespace wsguard {
inline namespace WSGUARD_ABI_NS {

}  // inline namespace WSGUARD_ABI_NS
}  // namespace wsguard
