// The other include order: wsguard's own BCryptGenRandom declaration first,
// then <bcrypt.h>'s. Linked into the smoke program by .ci/jobs/47-mingw.sh.
#include <wsguard.hpp>

#ifndef NOMINMAX  // libstdc++ on MinGW may define it already
#define NOMINMAX 1
#endif
#include <windows.h>
#include <bcrypt.h>

// Called by nobody: it only has to compile and link beside smoke.cpp.
long wsguard_smoke_random_after_bcrypt_h(unsigned char* out, unsigned long size) {
    return BCryptGenRandom(nullptr, out, size, BCRYPT_USE_SYSTEM_PREFERRED_RNG);
}
