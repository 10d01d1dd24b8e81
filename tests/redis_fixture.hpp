// A real redis-server for tests and benchmarks: a child process on a free
// loopback port, in its own temporary directory, stopped by PID (SIGTERM, then
// SIGKILL after 5 s) and ended with this process (PR_SET_PDEATHSIG). Shared by
// tests/test_redis.cpp and bench/bench_redis.cpp, so both start, probe and stop
// Redis the same way.
//
// The binary: WSGUARD_REDIS_SERVER (a path that tests/meson.build defines at
// compile time, or the environment variable of that name), else redis-server
// from PATH.
#ifndef WSGUARD_TESTS_REDIS_FIXTURE_HPP
#define WSGUARD_TESTS_REDIS_FIXTURE_HPP

#include <wsguard/redis.hpp>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

namespace wsguard_test {

using reply_ptr = wsguard::detail::redis_reply_ptr;

inline const char* redis_server_binary() {
#ifdef WSGUARD_REDIS_SERVER
    return WSGUARD_REDIS_SERVER;
#else
    const char* env = std::getenv("WSGUARD_REDIS_SERVER");
    return env != nullptr ? env : "redis-server";
#endif
}

inline int free_loopback_port() {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = 0;
    socklen_t size = sizeof address;
    int port = 0;
    if (fd >= 0 && bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 &&
        getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size) == 0)
        port = ntohs(address.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

// One command on a fresh connection: the tests' view of what is in Redis.
inline reply_ptr admin(int port, const std::vector<std::string>& words) {
    const timeval tv{1, 0};
    redisContext* context = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (context == nullptr) return nullptr;
    reply_ptr reply;
    if (context->err == 0 && redisSetTimeout(context, tv) == REDIS_OK) {
        std::vector<const char*> argv;
        std::vector<std::size_t> lens;
        for (const std::string& w : words) {
            argv.push_back(w.data());
            lens.push_back(w.size());
        }
        reply.reset(static_cast<redisReply*>(
            redisCommandArgv(context, static_cast<int>(argv.size()), argv.data(), lens.data())));
    }
    redisFree(context);
    return reply;
}

inline std::vector<std::string> all_keys(int port) {
    std::vector<std::string> keys;
    const reply_ptr reply = admin(port, {"KEYS", "*"});
    if (reply != nullptr && reply->type == REDIS_REPLY_ARRAY) {
        for (std::size_t i = 0; i < reply->elements; ++i)
            keys.emplace_back(reply->element[i]->str, reply->element[i]->len);
    }
    return keys;
}

// A redis-server child process on 127.0.0.1:port, stopped (SIGTERM, waitpid) by the
// destructor; PR_SET_PDEATHSIG ends it too if this test process dies first.
class redis_server {
public:
    explicit redis_server(int port = free_loopback_port(), std::vector<std::string> extra = {})
        : port_(port), extra_(std::move(extra)) {
        // Its own working directory: a replica writes the RDB it receives there,
        // and a later server must not load it.
        char directory[] = "/tmp/wsguard-redis-XXXXXX";
        if (mkdtemp(directory) != nullptr) directory_ = directory;
        start();
    }
    ~redis_server() {
        stop();
        remove_directory();
    }
    redis_server(const redis_server&) = delete;
    redis_server& operator=(const redis_server&) = delete;

    int port() const { return port_; }
    bool running() const { return pid_ > 0; }

    bool start() {
        if (pid_ > 0) return true;
        const std::string port_text = std::to_string(port_);
        std::vector<std::string> args = {"redis-server", "--port", port_text, "--bind", "127.0.0.1",
                                         "--save", "", "--appendonly", "no", "--daemonize", "no",
                                         "--loglevel", "warning", "--dir", directory_.empty() ? "/tmp" : directory_};
        args.insert(args.end(), extra_.begin(), extra_.end());
        std::vector<char*> argv;
        for (std::string& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        const pid_t parent = getpid();
        const pid_t pid = fork();
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGTERM);
            if (getppid() != parent) _exit(127);
            FILE* devnull = std::fopen("/dev/null", "w");
            if (devnull != nullptr) {
                dup2(fileno(devnull), 1);
                dup2(fileno(devnull), 2);
            }
            execvp(redis_server_binary(), argv.data());  // a bare name is looked up in PATH
            _exit(127);
        }
        if (pid < 0) return false;
        pid_ = pid;
        // Bounded wait until it answers PING (or exits, e.g. port taken).
        for (int attempt = 0; attempt < 1000; ++attempt) {
            int status = 0;
            if (waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;
                return false;
            }
            const reply_ptr pong = admin(port_, {"PING"});
            if (pong != nullptr) return true;  // PONG, or NOAUTH from a server with a password
            std::this_thread::sleep_for(std::chrono::milliseconds{10});
        }
        stop();
        return false;
    }

    void stop() {
        if (pid_ <= 0) return;
        kill(pid_, SIGCONT);
        kill(pid_, SIGTERM);
        for (int attempt = 0; attempt < 500; ++attempt) {
            if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
                pid_ = -1;
                return;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds{10});
        }
        kill(pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
        pid_ = -1;
    }

    // A hung Redis: connections are still accepted by the kernel, nothing answers.
    void pause() { kill(pid_, SIGSTOP); }
    void resume() { kill(pid_, SIGCONT); }

private:
    void remove_directory() {
        if (directory_.empty()) return;
        if (DIR* dir = opendir(directory_.c_str())) {
            while (const dirent* entry = readdir(dir)) {
                const std::string name = entry->d_name;
                if (name != "." && name != "..") unlink((directory_ + "/" + name).c_str());
            }
            closedir(dir);
        }
        rmdir(directory_.c_str());
    }

    int port_;
    std::vector<std::string> extra_;
    std::string directory_;
    pid_t pid_ = -1;
};

}  // namespace wsguard_test

#endif  // WSGUARD_TESTS_REDIS_FIXTURE_HPP
