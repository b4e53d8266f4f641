// shmsock from C++: RAII owners for the handles (std::unique_ptr with the
// _free functions as deleters), a message guard that releases its loan,
// exceptions carrying the status and shmsock_last_error(), and a server
// thread answering a client thread through split halves.
//
//   raii PATH
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

#include <shmsock.h>

namespace shm {

struct error : std::runtime_error {
    shmsock_status status;
    error(const char *what, shmsock_status st)
        : std::runtime_error(std::string(what) + ": " + shmsock_status_str(st) + " (" +
                             (shmsock_last_error() ? shmsock_last_error() : "") + ")"),
          status(st) {}
};

inline void check(const char *what, shmsock_status st) {
    if (st != SHMSOCK_OK) throw error(what, st);
}

template <class T, shmsock_status (*Free)(T *)> struct deleter {
    void operator()(T *p) const noexcept { Free(p); }
};
using listener = std::unique_ptr<shmsock_listener, deleter<shmsock_listener, shmsock_listener_free>>;
using conn = std::unique_ptr<shmsock_conn, deleter<shmsock_conn, shmsock_conn_free>>;
using sender = std::unique_ptr<shmsock_sender, deleter<shmsock_sender, shmsock_sender_free>>;
using receiver = std::unique_ptr<shmsock_receiver, deleter<shmsock_receiver, shmsock_receiver_free>>;

constexpr uint64_t seconds(uint64_t s) { return s * 1000 * 1000 * 1000; }

// A received message; releases its loan when it goes out of scope.
class message {
  public:
    explicit message(shmsock_conn *c) : c_(c) {
        check("recv", shmsock_recv_timeout(c, seconds(10), &m_));
    }
    message(const message &) = delete;
    message &operator=(const message &) = delete;
    ~message() { shmsock_release(c_, &m_); }
    std::string str() const { return std::string(reinterpret_cast<const char *>(m_.data), m_.len); }

  private:
    shmsock_conn *c_;
    shmsock_message m_{};
};

}  // namespace shm

int main(int argc, char **argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s PATH\n", argv[0]);
        return 2;
    }
    try {
        shmsock_listener *lp = nullptr;
        shm::check("listen", shmsock_listen(argv[1], nullptr, &lp));
        shm::listener l(lp);

        std::thread server([&l] {
            shmsock_conn *cp = nullptr;
            shm::check("accept", shmsock_accept_timeout(l.get(), shm::seconds(10), &cp));
            shm::conn c(cp);
            for (;;) {
                std::string req;
                try {
                    req = shm::message(c.get()).str();
                } catch (const shm::error &e) {
                    if (e.status == SHMSOCK_DISCONNECTED) return;  // client done
                    throw;
                }
                std::string reply = "re: " + req;
                shm::check("send", shmsock_send(c.get(), reply.data(), reply.size()));
            }
        });

        shmsock_conn *cp = nullptr;
        shm::check("connect", shmsock_connect(argv[1], nullptr, &cp));
        shmsock_sender *tp = nullptr;
        shmsock_receiver *rp = nullptr;
        shm::check("split", shmsock_conn_split(cp, &tp, &rp));
        shm::sender tx(tp);
        shm::receiver rx(rp);
        const int n = 1000;
        std::thread writer([&tx] {
            for (int i = 0; i < n; i++) {
                std::string s = "hello " + std::to_string(i);
                shm::check("send", shmsock_sender_send(tx.get(), s.data(), s.size()));
            }
        });
        for (int i = 0; i < n; i++) {
            shmsock_message m{};
            shm::check("recv", shmsock_receiver_recv_timeout(rx.get(), shm::seconds(10), &m));
            std::string got(reinterpret_cast<const char *>(m.data), m.len);
            shmsock_receiver_release(rx.get(), &m);
            if (got != "re: hello " + std::to_string(i)) throw std::runtime_error("bad reply: " + got);
        }
        writer.join();
        tx.reset();  // the server sees DISCONNECTED and returns
        server.join();
        std::printf("raii: %d request/reply pairs through split halves\n", n);
        return 0;
    } catch (const std::exception &e) {
        std::fprintf(stderr, "raii: %s\n", e.what());
        return 1;
    }
}
