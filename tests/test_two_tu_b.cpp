#include <wsguard.hpp>

const char* two_tu_name_from_b(wsguard::reason r) { return wsguard::to_string(r); }
