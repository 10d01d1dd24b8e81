// Section 8 of wsguard.hpp (inlined into the release header). Not a public header.
// ===========================================================================
// 8. handshake_guard: the one call that composes them
// ===========================================================================
#ifndef WSGUARD_HPP
#error "include <wsguard.hpp>, not this file"
#endif

namespace wsguard {
inline namespace WSGUARD_ABI_NS {

}  // inline namespace WSGUARD_ABI_NS
}  // namespace wsguard
