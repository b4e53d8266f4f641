/*
 * A fork-based test of the shmsock C API: each test listens in this
 * process, forks a child that connects, and checks both sides. The parent
 * waits for every child with a watchdog, checks its exit status, and kills
 * it on timeout. Exits 0 only if every check passed.
 *
 *   fork_test
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <shmsock.h>

#define MS (1000ull * 1000)
#define LONG_NS (10000 * MS) /* generous: the machine may be busy */

static int failures;

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            const char *e_ = shmsock_last_error();                             \
            fprintf(stderr, "[%d] FAIL %s:%d: %s (last error: %s)\n",          \
                    (int)getpid(), __FILE__, __LINE__, #cond, e_ ? e_ : "-");  \
            failures++;                                                        \
        }                                                                      \
    } while (0)

#define CHECK_ST(call, want)                                                   \
    do {                                                                       \
        shmsock_status st_ = (call);                                           \
        if (st_ != (want)) {                                                   \
            const char *e_ = shmsock_last_error();                             \
            fprintf(stderr, "[%d] FAIL %s:%d: %s = %s, want %s (%s)\n",        \
                    (int)getpid(), __FILE__, __LINE__, #call,                  \
                    shmsock_status_str(st_), shmsock_status_str(want),         \
                    e_ ? e_ : "-");                                            \
            failures++;                                                        \
        }                                                                      \
    } while (0)

/* A child ends with its failure count as exit status. */
static void child_exit(void) { _exit(failures > 255 ? 255 : failures); }

/* fork(2) for a test: the child starts with its own failure count. */
static pid_t fork_child(void) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(1);
    }
    if (pid == 0) failures = 0;
    return pid;
}

static char path_buf[128];
static const char *sock_path(const char *name) {
    snprintf(path_buf, sizeof path_buf, "/tmp/shmsock-fork-test-%d-%s.sock",
             (int)getpid(), name);
    return path_buf;
}

static shmsock_listener *listen_at(const char *name, shmsock_options *opts) {
    shmsock_listener *l = NULL;
    CHECK_ST(shmsock_listen(sock_path(name), opts, &l), SHMSOCK_OK);
    return l;
}

static shmsock_conn *connect_to(const char *path) {
    shmsock_conn *c = NULL;
    CHECK_ST(shmsock_connect(path, NULL, &c), SHMSOCK_OK);
    return c;
}

static shmsock_conn *accept_one(shmsock_listener *l) {
    shmsock_conn *c = NULL;
    CHECK_ST(shmsock_accept_timeout(l, LONG_NS, &c), SHMSOCK_OK);
    return c;
}

/* Waits for `pid` up to 60 s; kills it on timeout. Checks exit 0. */
static void reap(pid_t pid, const char *test) {
    for (int i = 0; i < 6000; i++) {
        int status;
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                fprintf(stderr, "FAIL %s: child %s %d\n", test,
                        WIFEXITED(status) ? "exited with" : "killed by signal",
                        WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
                failures++;
            }
            return;
        }
        if (r < 0 && errno != EINTR) {
            perror("waitpid");
            failures++;
            return;
        }
        usleep(10 * 1000);
    }
    fprintf(stderr, "FAIL %s: child hung; killed\n", test);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    failures++;
}

static uint8_t pattern(size_t i, size_t len) { return (uint8_t)(i * 131 + len); }

/* --- tests ------------------------------------------------------------ */

static const size_t sizes[] = {0, 1, 64, 4095, 100000, 2u << 20};
#define NSIZES (sizeof sizes / sizeof sizes[0])

/* Messages of many sizes (inline and streamed) arrive intact and in
 * order; the parent answers each with its length. */
static void test_roundtrip(void) {
    shmsock_listener *l = listen_at("roundtrip", NULL);
    char path[128];
    strcpy(path, path_buf);
    pid_t pid = fork_child();
    if (pid == 0) {
        shmsock_conn *c = connect_to(path);
        uint8_t *buf = malloc(2u << 20);
        for (size_t k = 0; k < NSIZES && buf; k++) {
            for (size_t i = 0; i < sizes[k]; i++) buf[i] = pattern(i, sizes[k]);
            CHECK_ST(shmsock_send_timeout(c, buf, sizes[k], LONG_NS), SHMSOCK_OK);
            shmsock_message m;
            CHECK_ST(shmsock_recv_timeout(c, LONG_NS, &m), SHMSOCK_OK);
            uint64_t got = 0;
            CHECK(m.len == sizeof got);
            if (m.len == sizeof got) memcpy(&got, m.data, sizeof got);
            CHECK(got == sizes[k]);
            CHECK_ST(shmsock_release(c, &m), SHMSOCK_OK);
        }
        free(buf);
        CHECK_ST(shmsock_conn_free(c), SHMSOCK_OK);
        child_exit();
    }
    shmsock_conn *c = accept_one(l);
    for (size_t k = 0; k < NSIZES && c; k++) {
        shmsock_message m;
        CHECK_ST(shmsock_recv_timeout(c, LONG_NS, &m), SHMSOCK_OK);
        CHECK(m.len == sizes[k]);
        int same = m.len == sizes[k];
        for (size_t i = 0; same && i < m.len; i++) same = m.data[i] == pattern(i, m.len);
        CHECK(same);
        uint64_t len = m.len;
        CHECK_ST(shmsock_release(c, &m), SHMSOCK_OK);
        CHECK_ST(shmsock_send(c, &len, sizeof len), SHMSOCK_OK);
    }
    shmsock_message m;
    CHECK_ST(shmsock_recv_timeout(c, LONG_NS, &m), SHMSOCK_DISCONNECTED);
    CHECK_ST(shmsock_conn_free(c), SHMSOCK_OK);
    reap(pid, "roundtrip");
    CHECK_ST(shmsock_listener_free(l), SHMSOCK_OK);
}

/* Zero-copy: committed grants arrive (truncated to the committed length),
 * aborted ones do not; loans are checked. */
static void test_zero_copy(void) {
    shmsock_listener *l = listen_at("zerocopy", NULL);
    char path[128];
    strcpy(path, path_buf);
    pid_t pid = fork_child();
    if (pid == 0) {
        shmsock_conn *c = connect_to(path);
        shmsock_grant g, stale;
        CHECK_ST(shmsock_reserve(c, 32, &g), SHMSOCK_OK);
        CHECK(g.data != NULL && g.len == 32);
        stale = g;
        CHECK_ST(shmsock_send(c, "x", 1), SHMSOCK_BUSY); /* grant out */
        CHECK_ST(shmsock_abort(c, &g), SHMSOCK_OK);
        CHECK(g.data == NULL && g.len == 0);
        CHECK_ST(shmsock_commit(c, &stale, 1), SHMSOCK_INVALID_ARGUMENT);
        CHECK_ST(shmsock_reserve(c, 32, &g), SHMSOCK_OK);
        memcpy(g.data, "committed", 9);
        CHECK_ST(shmsock_commit(c, &g, 40), SHMSOCK_INVALID_ARGUMENT);
        CHECK_ST(shmsock_commit(c, &g, 9), SHMSOCK_OK);
        size_t max = 0;
        CHECK_ST(shmsock_conn_max_inline(c, &max), SHMSOCK_OK);
        CHECK_ST(shmsock_reserve(c, max + 1, &g), SHMSOCK_TOO_LARGE);
        shmsock_message m;
        CHECK_ST(shmsock_recv_timeout(c, LONG_NS, &m), SHMSOCK_OK); /* "done" */
        CHECK_ST(shmsock_release(c, &m), SHMSOCK_OK);
        CHECK_ST(shmsock_conn_free(c), SHMSOCK_OK);
        child_exit();
    }
    shmsock_conn *c = accept_one(l);
    shmsock_message m, m2;
    CHECK_ST(shmsock_recv_timeout(c, LONG_NS, &m), SHMSOCK_OK);
    CHECK(m.len == 9 && memcmp(m.data, "committed", 9) == 0);
    /* One message at a time: a second receive waits for the release. */
    CHECK_ST(shmsock_try_recv(c, &m2), SHMSOCK_BUSY);
    shmsock_message forged = m;
    forged.id += 1;
    CHECK_ST(shmsock_release(c, &forged), SHMSOCK_INVALID_ARGUMENT);
    CHECK_ST(shmsock_release(c, &m), SHMSOCK_OK);
    CHECK_ST(shmsock_release(c, &m), SHMSOCK_INVALID_ARGUMENT); /* zeroed: id 0 */
    CHECK_ST(shmsock_send(c, "done", 4), SHMSOCK_OK);
    CHECK_ST(shmsock_recv_timeout(c, LONG_NS, &m), SHMSOCK_DISCONNECTED);
    CHECK_ST(shmsock_conn_free(c), SHMSOCK_OK);
    reap(pid, "zero_copy");
    CHECK_ST(shmsock_listener_free(l), SHMSOCK_OK);
}

/* try_recv says WOULD_BLOCK, and the receive fd wakes poll when the peer
 * sends; a receive with a timeout on an idle connection times out. */
static void test_poll_and_timeouts(void) {
    shmsock_listener *l = listen_at("poll", NULL);
    char path[128];
    strcpy(path, path_buf);
    pid_t pid = fork_child();
    if (pid == 0) {
        shmsock_conn *c = connect_to(path);
        shmsock_message m;
        /* Wait for "go", then send after a pause. */
        CHECK_ST(shmsock_recv_timeout(c, LONG_NS, &m), SHMSOCK_OK);
        CHECK_ST(shmsock_release(c, &m), SHMSOCK_OK);
        usleep(50 * 1000);
        CHECK_ST(shmsock_send(c, "late", 4), SHMSOCK_OK);
        CHECK_ST(shmsock_recv_timeout(c, LONG_NS, &m), SHMSOCK_DISCONNECTED);
        CHECK_ST(shmsock_conn_free(c), SHMSOCK_OK);
        child_exit();
    }
    /* The listener's fd is readable while a client waits. */
    int lfd = -1;
    CHECK_ST(shmsock_listener_fd(l, &lfd), SHMSOCK_OK);
    struct pollfd lp = {.fd = lfd, .events = POLLIN};
    CHECK(poll(&lp, 1, 10000) == 1);
    shmsock_conn *c = NULL;
    shmsock_status st;
    for (int i = 0; i < 1000; i++) {
        st = shmsock_try_accept(l, &c);
        if (st != SHMSOCK_WOULD_BLOCK) break;
        poll(&lp, 1, 10);
    }
    CHECK_ST(st, SHMSOCK_OK);

    shmsock_message m;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK_ST(shmsock_recv_timeout(c, 20 * MS, &m), SHMSOCK_TIMEOUT);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long waited_ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    CHECK(waited_ms >= 20); /* never early; no upper bound on a busy machine */
    CHECK_ST(shmsock_try_recv(c, &m), SHMSOCK_WOULD_BLOCK);

    int fd = -1;
    CHECK_ST(shmsock_conn_recv_fd(c, &fd), SHMSOCK_OK);
    CHECK_ST(shmsock_send(c, "go", 2), SHMSOCK_OK);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int n;
    do n = poll(&p, 1, 10000); while (n < 0 && errno == EINTR);
    CHECK(n == 1);
    CHECK_ST(shmsock_try_recv(c, &m), SHMSOCK_OK);
    CHECK(m.len == 4 && memcmp(m.data, "late", 4) == 0);
    CHECK_ST(shmsock_release(c, &m), SHMSOCK_OK);
    CHECK_ST(shmsock_conn_free(c), SHMSOCK_OK);
    reap(pid, "poll_and_timeouts");
    CHECK_ST(shmsock_listener_free(l), SHMSOCK_OK);
}

/* A peer killed with SIGKILL: what it sent arrives, then DISCONNECTED
 * (ECONNRESET on a socket); sends fail too, without SIGPIPE. */
static void test_peer_death(void) {
    shmsock_listener *l = listen_at("death", NULL);
    char path[128];
    strcpy(path, path_buf);
    pid_t pid = fork_child();
    if (pid == 0) {
        shmsock_conn *c = connect_to(path);
        CHECK_ST(shmsock_send(c, "last words", 10), SHMSOCK_OK);
        if (failures) child_exit();
        kill(getpid(), SIGKILL);
        child_exit();
    }
    shmsock_conn *c = accept_one(l);
    shmsock_credentials cr;
    CHECK_ST(shmsock_conn_peer_credentials(c, &cr), SHMSOCK_OK);
    CHECK(cr.pid == pid && cr.uid == getuid() && cr.gid == getgid());
    shmsock_message m;
    CHECK_ST(shmsock_recv_timeout(c, LONG_NS, &m), SHMSOCK_OK);
    CHECK(m.len == 10 && memcmp(m.data, "last words", 10) == 0);
    CHECK_ST(shmsock_release(c, &m), SHMSOCK_OK);
    CHECK_ST(shmsock_recv_timeout(c, LONG_NS, &m), SHMSOCK_DISCONNECTED);
    shmsock_status st = SHMSOCK_OK;
    for (int i = 0; i < 1000 && st == SHMSOCK_OK; i++)
        st = shmsock_send_timeout(c, "x", 1, LONG_NS);
    CHECK_ST(st, SHMSOCK_DISCONNECTED);
    CHECK_ST(shmsock_conn_free(c), SHMSOCK_OK);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid && WIFSIGNALED(status) &&
          WTERMSIG(status) == SIGKILL);
    CHECK_ST(shmsock_listener_free(l), SHMSOCK_OK);
}

struct sender_arg {
    shmsock_sender *tx;
    uint32_t n;
    int failures;
};

static void *send_numbers(void *p) {
    struct sender_arg *a = p;
    for (uint32_t i = 0; i < a->n; i++) {
        shmsock_status st = shmsock_sender_send_timeout(a->tx, &i, sizeof i, LONG_NS);
        if (st != SHMSOCK_OK) {
            fprintf(stderr, "send %u: %s\n", i, shmsock_status_str(st));
            a->failures++;
            break;
        }
    }
    return NULL;
}

/* Split halves on two threads (in the child) against an echoing parent. */
static void test_split(void) {
    shmsock_listener *l = listen_at("split", NULL);
    char path[128];
    strcpy(path, path_buf);
    const uint32_t n = 20000;
    pid_t pid = fork_child();
    if (pid == 0) {
        shmsock_conn *c = connect_to(path);
        shmsock_sender *tx = NULL;
        shmsock_receiver *rx = NULL;
        CHECK_ST(shmsock_conn_split(c, &tx, &rx), SHMSOCK_OK);
        CHECK_ST(shmsock_send(c, "x", 1), SHMSOCK_BAD_HANDLE); /* consumed */
        int fd = -1;
        CHECK_ST(shmsock_sender_fd(tx, &fd), SHMSOCK_OK);
        CHECK(fd >= 0);
        struct sender_arg a = {.tx = tx, .n = n, .failures = 0};
        pthread_t t;
        CHECK(pthread_create(&t, NULL, send_numbers, &a) == 0);
        for (uint32_t i = 0; i < n; i++) {
            shmsock_message m;
            shmsock_status st = shmsock_receiver_recv_timeout(rx, LONG_NS, &m);
            CHECK_ST(st, SHMSOCK_OK);
            if (st != SHMSOCK_OK) break;
            uint32_t v = UINT32_MAX;
            if (m.len == sizeof v) memcpy(&v, m.data, sizeof v);
            if (v != i) {
                CHECK(v == i);
                shmsock_receiver_release(rx, &m);
                break;
            }
            CHECK_ST(shmsock_receiver_release(rx, &m), SHMSOCK_OK);
        }
        pthread_join(t, NULL);
        failures += a.failures;
        CHECK_ST(shmsock_sender_free(tx), SHMSOCK_OK);
        CHECK_ST(shmsock_receiver_free(rx), SHMSOCK_OK);
        CHECK_ST(shmsock_receiver_free(rx), SHMSOCK_BAD_HANDLE);
        child_exit();
    }
    shmsock_conn *c = accept_one(l);
    for (;;) {
        shmsock_message m;
        shmsock_status st = shmsock_recv_timeout(c, LONG_NS, &m);
        if (st == SHMSOCK_DISCONNECTED) break;
        CHECK_ST(st, SHMSOCK_OK);
        if (st != SHMSOCK_OK) break;
        CHECK_ST(shmsock_send_timeout(c, m.data, m.len, LONG_NS), SHMSOCK_OK);
        CHECK_ST(shmsock_release(c, &m), SHMSOCK_OK);
    }
    CHECK_ST(shmsock_conn_free(c), SHMSOCK_OK);
    reap(pid, "split");
    CHECK_ST(shmsock_listener_free(l), SHMSOCK_OK);
}

/* A listener that admits only another uid refuses us before sharing
 * memory; the server sees SHMSOCK_CREDENTIALS and keeps accepting. */
static void test_credentials_policy(void) {
    shmsock_options *o = NULL;
    CHECK_ST(shmsock_options_new(&o), SHMSOCK_OK);
    CHECK_ST(shmsock_options_set_credentials(o, SHMSOCK_PEER_UID, getuid() + 1), SHMSOCK_OK);
    shmsock_listener *l = listen_at("policy", o);
    CHECK_ST(shmsock_options_free(o), SHMSOCK_OK);
    char path[128];
    strcpy(path, path_buf);
    pid_t pid = fork_child();
    if (pid == 0) {
        shmsock_conn *c = NULL;
        shmsock_status st = shmsock_connect(path, NULL, &c);
        CHECK(st != SHMSOCK_OK && c == NULL);
        child_exit();
    }
    shmsock_conn *c = NULL;
    CHECK_ST(shmsock_accept_timeout(l, LONG_NS, &c), SHMSOCK_CREDENTIALS);
    CHECK(c == NULL);
    reap(pid, "credentials_policy");
    CHECK_ST(shmsock_listener_free(l), SHMSOCK_OK);
}

/* socketpair + fork, the other classic pattern: the handshake runs over
 * an inherited socket, no listener involved. */
static void test_socketpair(void) {
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
    pid_t pid = fork_child();
    if (pid == 0) {
        close(sv[0]);
        shmsock_conn *c = NULL;
        CHECK_ST(shmsock_connect_fd(sv[1], NULL, &c), SHMSOCK_OK);
        CHECK_ST(shmsock_send(c, "pair", 4), SHMSOCK_OK);
        shmsock_message m;
        CHECK_ST(shmsock_recv_timeout(c, LONG_NS, &m), SHMSOCK_DISCONNECTED);
        CHECK_ST(shmsock_conn_free(c), SHMSOCK_OK);
        child_exit();
    }
    close(sv[1]);
    shmsock_conn *c = NULL;
    CHECK_ST(shmsock_accept_fd(sv[0], NULL, &c), SHMSOCK_OK);
    shmsock_credentials cr;
    CHECK_ST(shmsock_conn_peer_credentials(c, &cr), SHMSOCK_OK);
    /* As SO_PEERCRED on any socketpair: the process that created the
     * pair (us), not the child that inherited the other end. */
    CHECK(cr.pid == getpid() && cr.uid == getuid());
    shmsock_message m;
    CHECK_ST(shmsock_recv_timeout(c, LONG_NS, &m), SHMSOCK_OK);
    CHECK(m.len == 4 && memcmp(m.data, "pair", 4) == 0);
    CHECK_ST(shmsock_release(c, &m), SHMSOCK_OK);
    CHECK_ST(shmsock_conn_free(c), SHMSOCK_OK);
    reap(pid, "socketpair");
    CHECK_ST(shmsock_connect_fd(-1, NULL, &c), SHMSOCK_INVALID_ARGUMENT);
}

/* Errors without a peer: NULLs, freed handles, errno. */
static void test_errors(void) {
    shmsock_conn *c = NULL;
    CHECK_ST(shmsock_connect(NULL, NULL, &c), SHMSOCK_INVALID_ARGUMENT);
    CHECK(shmsock_last_error() != NULL);
    CHECK_ST(shmsock_send(NULL, "x", 1), SHMSOCK_INVALID_ARGUMENT);
    CHECK_ST(shmsock_conn_free(NULL), SHMSOCK_OK);
    errno = 0;
    CHECK_ST(shmsock_connect("/nonexistent/dir/sock", NULL, &c), SHMSOCK_IO);
    CHECK(errno == ENOENT && shmsock_last_errno() == ENOENT);

    shmsock_listener *l = listen_at("errors", NULL);
    char path[128];
    strcpy(path, path_buf);
    shmsock_listener *l2 = NULL;
    CHECK_ST(shmsock_listen(path, NULL, &l2), SHMSOCK_IO); /* live socket */
    CHECK(shmsock_last_errno() == EADDRINUSE);
    CHECK_ST(shmsock_try_accept(l, &c), SHMSOCK_WOULD_BLOCK);
    CHECK_ST(shmsock_accept_timeout(l, 1 * MS, &c), SHMSOCK_TIMEOUT);
    CHECK_ST(shmsock_listener_free(l), SHMSOCK_OK);
    CHECK(access(path, F_OK) != 0); /* socket file removed */
    CHECK_ST(shmsock_listener_free(l), SHMSOCK_BAD_HANDLE);
    int fd;
    CHECK_ST(shmsock_listener_fd(l, &fd), SHMSOCK_BAD_HANDLE);
    /* A handle of the wrong type. */
    shmsock_options *o = NULL;
    CHECK_ST(shmsock_options_new(&o), SHMSOCK_OK);
    CHECK_ST(shmsock_conn_free((shmsock_conn *)o), SHMSOCK_BAD_HANDLE);
    CHECK_ST(shmsock_options_set_wait(o, 42, 0), SHMSOCK_INVALID_ARGUMENT);
    CHECK_ST(shmsock_options_free(o), SHMSOCK_OK);
    CHECK(strcmp(shmsock_status_str(SHMSOCK_TIMEOUT), "SHMSOCK_TIMEOUT") == 0);
}

int main(void) {
    /* No SIGPIPE handler is needed: shmsock never raises it. */
    CHECK(shmsock_version() == SHMSOCK_VERSION_NUMBER);
    test_errors();
    test_roundtrip();
    test_zero_copy();
    test_poll_and_timeouts();
    test_peer_death();
    test_split();
    test_credentials_policy();
    test_socketpair();
    if (failures) {
        fprintf(stderr, "fork_test: %d checks failed\n", failures);
        return 1;
    }
    printf("fork_test: all checks passed\n");
    return 0;
}
