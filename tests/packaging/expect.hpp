// The packaging consumers' one assertion: prints what failed, counts it.
#pragma once
#include <cstdio>

struct consumer_checks {
    int failures = 0;
    void operator()(bool ok, const char* what) {
        if (ok) return;
        std::fprintf(stderr, "FAIL: %s\n", what);
        ++failures;
    }
};
