// Includes the header from a second translation unit linked into the same
// program: a function defined in the header without `inline` fails to link.
#include <wsguard.hpp>

#include "catch.hpp"

const char* two_tu_name_from_b(wsguard::reason r);

TEST_CASE("the header links when included from two translation units", "[vocabulary]") {
    CHECK(std::string(two_tu_name_from_b(wsguard::reason::origin_null)) == wsguard::to_string(wsguard::reason::origin_null));
}
