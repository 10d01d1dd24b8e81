// Section 3 of wsguard.hpp (inlined into the release header). Not a public header.
// ===========================================================================
// 3. Origin policy, Host allowlist, Sec-Fetch-Site
// ===========================================================================
#ifndef WSGUARD_HPP
#error "include <wsguard.hpp>, not this file"
#endif

namespace wsguard {
inline namespace WSGUARD_ABI_NS {

}  // inline namespace WSGUARD_ABI_NS
}  // namespace wsguard
