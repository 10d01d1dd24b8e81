// A small demo until the Boost.Beast demo server lands: reads Origin header
// values, one per line, and prints the decision for each.
#include <wsguard.hpp>

#include <iostream>
#include <string>

int main() {
    std::cout << "wsguard " << WSGUARD_VERSION_STRING << ": type Origin header values, one per line\n";
    std::string line;
    while (std::getline(std::cin, line)) {
        const wsguard::decision d{line.empty() ? wsguard::reason::origin_missing : wsguard::reason::ok};
        std::cout << wsguard::to_string(d.reason) << " http=" << d.http_status() << "\n";
    }
    return 0;
}
