/*
 * Streaming and shutdown through the shmsock C API, fork-based like
 * fork_test.c: a 16 MiB message written chunk by chunk in place
 * (shmsock_writer) and read piece by piece (shmsock_reader), checked byte
 * by byte; a message the sender abandons midway (SHMSOCK_ABANDONED); and
 * shmsock_conn_shutdown from one thread waking another thread blocked in
 * shmsock_recv on the same connection; shmsock_options_set_pipeline_threshold
 * deciding whether shmsock_send splits a message that fits one ring record.
 * Exits 0 only if every check passed.
 *
 *   stream_test
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
    snprintf(path_buf, sizeof path_buf, "/tmp/shmsock-stream-test-%d-%s.sock",
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


/* A byte of the 16 MiB message: position-dependent, not periodic in any
 * ring-sized window, so a misplaced or repeated piece shows. */
static uint8_t pattern(size_t i) { return (uint8_t)((i * 131u) ^ (i >> 13)); }

#define BIG (16u << 20)

/* Writes `len` bytes of `pattern` with a writer, chunk by chunk, straight
 * into the ring. Returns the number of chunks, or -1. */
static long write_pattern(shmsock_conn *c, size_t len) {
    shmsock_writer *w = NULL;
    CHECK_ST(shmsock_write_message(c, len, &w), SHMSOCK_OK);
    if (!w) return -1;
    long chunks = 0;
    shmsock_chunk ch;
    shmsock_status st;
    while ((st = shmsock_writer_next_chunk_timeout(w, LONG_NS, &ch)) == SHMSOCK_OK) {
        for (size_t k = 0; k < ch.len; k++) ch.data[k] = pattern(ch.offset + k);
        CHECK_ST(shmsock_writer_commit(w), SHMSOCK_OK);
        chunks++;
    }
    CHECK_ST(st, SHMSOCK_END);
    size_t n = 0;
    bool done = false;
    CHECK_ST(shmsock_writer_len(w, &n, &done), SHMSOCK_OK);
    CHECK(n == len && done);
    CHECK_ST(shmsock_writer_free(w), SHMSOCK_OK);
    return st == SHMSOCK_END ? chunks : -1;
}

/* The child streams 16 MiB; the parent reads it piece by piece, checks
 * every byte, and answers with the count it saw. */
static void test_big_stream(void) {
    shmsock_listener *l = listen_at("big", NULL);
    const char *path = sock_path("big");
    pid_t pid = fork_child();
    if (pid == 0) {
        shmsock_conn *c = connect_to(path);
        long chunks = write_pattern(c, BIG);
        CHECK(chunks > 1); /* far larger than one ring record */
        shmsock_message m;
        CHECK_ST(shmsock_recv_timeout(c, LONG_NS, &m), SHMSOCK_OK);
        uint64_t seen = 0;
        CHECK(m.len == sizeof seen);
        if (m.len == sizeof seen) memcpy(&seen, m.data, sizeof seen);
        CHECK(seen == BIG);
        CHECK_ST(shmsock_release(c, &m), SHMSOCK_OK);
        CHECK_ST(shmsock_conn_free(c), SHMSOCK_OK);
        child_exit();
    }
    shmsock_conn *s = accept_one(l);
    shmsock_reader *r = NULL;
    size_t len = 0;
    CHECK_ST(shmsock_read_message_timeout(s, LONG_NS, &r, &len), SHMSOCK_OK);
    CHECK(len == BIG);
    /* Other receives wait for the reader. */
    shmsock_message m;
    CHECK_ST(shmsock_try_recv(s, &m), SHMSOCK_BUSY);
    uint64_t seen = 0, bad = 0, pieces = 0;
    shmsock_chunk ch;
    shmsock_status st;
    while ((st = shmsock_reader_next_chunk_timeout(r, LONG_NS, &ch)) == SHMSOCK_OK) {
        CHECK(ch.offset == seen);
        for (size_t k = 0; k < ch.len; k++)
            if (ch.data[k] != pattern(seen + k)) bad++;
        seen += ch.len;
        pieces++;
    }
    CHECK_ST(st, SHMSOCK_END);
    CHECK(bad == 0);
    CHECK(seen == BIG);
    CHECK(pieces > 1);
    size_t n = 0, left = 1;
    CHECK_ST(shmsock_reader_len(r, &n, &left), SHMSOCK_OK);
    CHECK(n == BIG && left == 0);
    CHECK_ST(shmsock_reader_free(r), SHMSOCK_OK);
    CHECK_ST(shmsock_reader_free(r), SHMSOCK_BAD_HANDLE);
    CHECK_ST(shmsock_send(s, &seen, sizeof seen), SHMSOCK_OK);
    reap(pid, "big_stream");
    CHECK_ST(shmsock_conn_free(s), SHMSOCK_OK);
    CHECK_ST(shmsock_listener_free(l), SHMSOCK_OK);
    printf("stream_test: 16 MiB streamed in %llu pieces, every byte checked\n",
           (unsigned long long)pieces);
}

/* Pieces the parent's reader sees of a 1 MiB message the child sends with
 * shmsock_send through a 4 MiB ring (one record would hold it), with
 * shmsock_options_set_pipeline_threshold(threshold); every byte checked. */
static uint64_t pieces_of_send(const char *name, size_t threshold) {
    shmsock_listener *l = listen_at(name, NULL);
    const char *path = sock_path(name);
    const size_t len = 1u << 20;
    pid_t pid = fork_child();
    if (pid == 0) {
        shmsock_options *o = NULL;
        CHECK_ST(shmsock_options_new(&o), SHMSOCK_OK);
        CHECK_ST(shmsock_options_set_ring_capacity(o, 4u << 20), SHMSOCK_OK);
        CHECK_ST(shmsock_options_set_pipeline_threshold(o, threshold), SHMSOCK_OK);
        shmsock_conn *c = NULL;
        CHECK_ST(shmsock_connect(path, o, &c), SHMSOCK_OK);
        CHECK_ST(shmsock_options_free(o), SHMSOCK_OK);
        uint8_t *buf = malloc(len);
        CHECK(buf != NULL);
        if (buf && c) {
            for (size_t i = 0; i < len; i++) buf[i] = pattern(i);
            CHECK_ST(shmsock_send(c, buf, len), SHMSOCK_OK);
            /* Until the parent has read it. */
            shmsock_message m;
            CHECK_ST(shmsock_recv_timeout(c, LONG_NS, &m), SHMSOCK_OK);
            CHECK_ST(shmsock_release(c, &m), SHMSOCK_OK);
        }
        free(buf);
        CHECK_ST(shmsock_conn_free(c), SHMSOCK_OK);
        child_exit();
    }
    shmsock_conn *s = accept_one(l);
    shmsock_reader *r = NULL;
    size_t n = 0;
    CHECK_ST(shmsock_read_message_timeout(s, LONG_NS, &r, &n), SHMSOCK_OK);
    CHECK(n == len);
    uint64_t seen = 0, bad = 0, pieces = 0;
    shmsock_chunk ch;
    shmsock_status st;
    while ((st = shmsock_reader_next_chunk_timeout(r, LONG_NS, &ch)) == SHMSOCK_OK) {
        CHECK(ch.offset == seen);
        for (size_t k = 0; k < ch.len; k++)
            if (ch.data[k] != pattern(seen + k)) bad++;
        seen += ch.len;
        pieces++;
    }
    CHECK_ST(st, SHMSOCK_END);
    CHECK(bad == 0);
    CHECK(seen == len);
    CHECK_ST(shmsock_reader_free(r), SHMSOCK_OK);
    CHECK_ST(shmsock_send(s, "ok", 2), SHMSOCK_OK);
    reap(pid, name);
    CHECK_ST(shmsock_conn_free(s), SHMSOCK_OK);
    CHECK_ST(shmsock_listener_free(l), SHMSOCK_OK);
    return pieces;
}

/* shmsock_options_set_pipeline_threshold: below the message's size, a
 * 1 MiB send is split into 128 KiB fragments (9 pieces with the start
 * header); SIZE_MAX sends it as one record (one piece). */
static void test_pipeline_threshold(void) {
    uint64_t split = pieces_of_send("pipe-on", 64u << 10);
    CHECK(split == ((1u << 20) + 8 + (128u << 10) - 1) / (128u << 10));
    uint64_t whole = pieces_of_send("pipe-off", SIZE_MAX);
    CHECK(whole == 1);
    printf("stream_test: pipeline threshold: 1 MiB in %llu pieces at 64 KiB, "
           "%llu with SIZE_MAX\n",
           (unsigned long long)split, (unsigned long long)whole);
}

/* The child gives a large message up after its first chunk, then sends
 * another: the parent's reader gets SHMSOCK_ABANDONED, and the next
 * message arrives intact. */
static void test_abandoned(void) {
    shmsock_listener *l = listen_at("abandon", NULL);
    const char *path = sock_path("abandon");
    pid_t pid = fork_child();
    if (pid == 0) {
        shmsock_conn *c = connect_to(path);
        shmsock_writer *w = NULL;
        CHECK_ST(shmsock_write_message(c, 4u << 20, &w), SHMSOCK_OK);
        shmsock_chunk ch;
        CHECK_ST(shmsock_writer_next_chunk_timeout(w, LONG_NS, &ch), SHMSOCK_OK);
        memset(ch.data, 0xab, ch.len);
        CHECK_ST(shmsock_writer_commit(w), SHMSOCK_OK);
        CHECK_ST(shmsock_writer_free(w), SHMSOCK_OK); /* abandons it */
        CHECK_ST(shmsock_send(c, "next", 4), SHMSOCK_OK);
        shmsock_message m;
        CHECK_ST(shmsock_recv_timeout(c, LONG_NS, &m), SHMSOCK_DISCONNECTED);
        CHECK_ST(shmsock_conn_free(c), SHMSOCK_OK);
        child_exit();
    }
    shmsock_conn *s = accept_one(l);
    shmsock_reader *r = NULL;
    CHECK_ST(shmsock_read_message_timeout(s, LONG_NS, &r, NULL), SHMSOCK_OK);
    shmsock_chunk ch;
    shmsock_status st;
    size_t got = 0;
    while ((st = shmsock_reader_next_chunk_timeout(r, LONG_NS, &ch)) == SHMSOCK_OK) {
        for (size_t k = 0; k < ch.len; k++) CHECK(ch.data[k] == 0xab);
        got += ch.len;
    }
    CHECK_ST(st, SHMSOCK_ABANDONED);
    CHECK(got > 0 && got < (4u << 20));
    CHECK_ST(shmsock_reader_free(r), SHMSOCK_OK);
    shmsock_message m;
    CHECK_ST(shmsock_recv_timeout(s, LONG_NS, &m), SHMSOCK_OK);
    CHECK(m.len == 4 && memcmp(m.data, "next", 4) == 0);
    CHECK_ST(shmsock_release(s, &m), SHMSOCK_OK);
    CHECK_ST(shmsock_conn_free(s), SHMSOCK_OK);
    reap(pid, "abandoned");
    CHECK_ST(shmsock_listener_free(l), SHMSOCK_OK);
}

static void *recv_forever(void *p) {
    shmsock_message m;
    shmsock_status st = shmsock_recv_timeout((shmsock_conn *)p, SHMSOCK_FOREVER, &m);
    return (void *)(intptr_t)st;
}

/* A thread blocks in shmsock_recv without a timeout; the main thread
 * shuts the connection down (the one call allowed while the handle is in
 * use): the blocked call returns SHMSOCK_DISCONNECTED, and the peer
 * process sees the connection end. */
static void test_shutdown(void) {
    shmsock_listener *l = listen_at("shutdown", NULL);
    const char *path = sock_path("shutdown");
    pid_t pid = fork_child();
    if (pid == 0) {
        shmsock_conn *c = connect_to(path);
        shmsock_message m;
        /* Sends nothing; waits for the parent's shutdown. */
        CHECK_ST(shmsock_recv_timeout(c, LONG_NS, &m), SHMSOCK_DISCONNECTED);
        CHECK_ST(shmsock_conn_free(c), SHMSOCK_OK);
        child_exit();
    }
    shmsock_conn *s = accept_one(l);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, recv_forever, s) == 0);
    /* Wait until the thread is inside its call: the handle is then busy
     * for anything but a shutdown. */
    int fd = -1, busy = 0;
    for (int i = 0; i < 20000 && !busy; i++) {
        shmsock_status st = shmsock_conn_recv_fd(s, &fd);
        if (st == SHMSOCK_BUSY)
            busy = 1;
        else
            usleep(1000);
    }
    CHECK(busy);
    CHECK_ST(shmsock_conn_shutdown(s), SHMSOCK_OK);
    void *ret = NULL;
    CHECK(pthread_join(t, &ret) == 0);
    CHECK((shmsock_status)(intptr_t)ret == SHMSOCK_DISCONNECTED);
    CHECK_ST(shmsock_send(s, "x", 1), SHMSOCK_DISCONNECTED);
    CHECK_ST(shmsock_conn_shutdown(s), SHMSOCK_OK); /* again: harmless */
    reap(pid, "shutdown");
    CHECK_ST(shmsock_conn_free(s), SHMSOCK_OK);
    CHECK_ST(shmsock_conn_shutdown(s), SHMSOCK_BAD_HANDLE);
    CHECK_ST(shmsock_conn_shutdown(NULL), SHMSOCK_INVALID_ARGUMENT);
    CHECK_ST(shmsock_listener_free(l), SHMSOCK_OK);
}

/* NULL and freed stream handles are errors, never UB. */
static void test_bad_handles(void) {
    shmsock_chunk ch;
    size_t n;
    CHECK_ST(shmsock_writer_next_chunk(NULL, &ch), SHMSOCK_INVALID_ARGUMENT);
    CHECK_ST(shmsock_writer_commit(NULL), SHMSOCK_INVALID_ARGUMENT);
    CHECK_ST(shmsock_reader_next_chunk(NULL, &ch), SHMSOCK_INVALID_ARGUMENT);
    CHECK_ST(shmsock_reader_len(NULL, &n, NULL), SHMSOCK_INVALID_ARGUMENT);
    CHECK_ST(shmsock_writer_free(NULL), SHMSOCK_OK);
    CHECK_ST(shmsock_reader_free(NULL), SHMSOCK_OK);
    /* A handle value never returned by shmsock. */
    CHECK_ST(shmsock_writer_commit((shmsock_writer *)(uintptr_t)0x12345),
             SHMSOCK_BAD_HANDLE);
}

int main(void) {
    CHECK(shmsock_version() == SHMSOCK_VERSION_NUMBER);
    test_bad_handles();
    test_big_stream();
    test_abandoned();
    test_pipeline_threshold();
    test_shutdown();
    if (failures) {
        fprintf(stderr, "stream_test: %d checks failed\n", failures);
        return 1;
    }
    printf("stream_test: all checks passed\n");
    return 0;
}
