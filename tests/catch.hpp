// One include for Catch2 v3 (preferred, when the build found it) or v2.13
// (Debian 12's package). Test files include this and nothing else from Catch.
#pragma once
#if defined(WSGUARD_CATCH_V3)
#include <catch2/catch_all.hpp>
#else
#include <catch2/catch.hpp>
#endif
