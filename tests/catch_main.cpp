// Catch2 v2 is header-only and needs its main() compiled in exactly one
// translation unit; v3 links Catch2WithMain instead and this file is empty.
#if !defined(WSGUARD_CATCH_V3)
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
#endif
