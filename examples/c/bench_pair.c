/*
 * The C echo pair, on shmsock and on a plain Unix socket, for the bench
 * row "through the C ABI" (scripts/c-bench.sh runs it).
 *
 *   bench_pair shm|uds rtt|bulk [SECONDS]
 *
 * rtt:  64 B messages echoed back; prints the median and p99 round trip.
 * bulk: 1 MiB messages one way for SECONDS (default 1), then an
 *       acknowledgement; prints the throughput.
 *
 * Both peers are processes (fork), pinned to CPUs 0 and 1 when there are
 * two. Both transports do the same work per message: the sender copies from
 * its buffer, the receiver copies into its buffer. The Unix socket is a
 * SOCK_STREAM pair with a 4-byte length prefix (the classic framing); the
 * shmsock ring holds four messages (at least 64 KiB), as in the Rust bench.
 * Output: one line per run, "RESULT <transport> <test> <value> <unit>".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
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

#define RTT_SIZE 64
#define BULK_SIZE (1u << 20)
#define TIMEOUT_NS (30ull * 1000 * 1000 * 1000)

static void die(const char *what) {
    const char *e = shmsock_last_error();
    fprintf(stderr, "bench_pair[%d]: %s failed (%s; errno %d)\n", (int)getpid(), what,
            e ? e : "-", errno);
    exit(1);
}

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static void pin(int cpu) {
    if (sysconf(_SC_NPROCESSORS_ONLN) < 2) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof set, &set); /* best effort */
}

/* --- a transport: shmsock connection or framed stream socket ---------- */

struct link {
    shmsock_conn *conn; /* shm */
    int fd;             /* uds */
};

static void write_all(int fd, const void *p, size_t n) {
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) die("send");
        b += w;
        n -= (size_t)w;
    }
}

static void read_all(int fd, void *p, size_t n) {
    uint8_t *b = p;
    while (n > 0) {
        ssize_t r = recv(fd, b, n, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) die("recv");
        b += r;
        n -= (size_t)r;
    }
}

static void link_send(struct link *l, const void *p, size_t n) {
    if (l->conn) {
        if (shmsock_send_timeout(l->conn, p, n, TIMEOUT_NS) != SHMSOCK_OK) die("shmsock_send");
        return;
    }
    uint32_t len = (uint32_t)n;
    if (n <= 4096) { /* one system call for small messages */
        uint8_t frame[4 + 4096];
        memcpy(frame, &len, 4);
        memcpy(frame + 4, p, n);
        write_all(l->fd, frame, 4 + n);
    } else {
        write_all(l->fd, &len, 4);
        write_all(l->fd, p, n);
    }
}

/* Receives one message into buf (capacity cap); returns its length. */
static size_t link_recv(struct link *l, void *buf, size_t cap) {
    if (l->conn) {
        shmsock_message m;
        if (shmsock_recv_timeout(l->conn, TIMEOUT_NS, &m) != SHMSOCK_OK) die("shmsock_recv");
        size_t n = m.len < cap ? m.len : cap;
        memcpy(buf, m.data, n);
        shmsock_release(l->conn, &m);
        return n;
    }
    uint32_t len;
    read_all(l->fd, &len, 4);
    if (len > cap) die("frame too long");
    read_all(l->fd, buf, len);
    return len;
}

/* --- the peer (child): echo or sink ----------------------------------- */

static void peer(struct link *l, int bulk) {
    uint8_t *buf = malloc(BULK_SIZE);
    if (!buf) die("malloc");
    uint64_t count = 0;
    for (;;) {
        size_t n = link_recv(l, buf, BULK_SIZE);
        if (!bulk) {
            if (n == 0) break; /* end of the rtt run */
            link_send(l, buf, n);
        } else if (n == 1) {
            link_send(l, &count, sizeof count); /* end of the bulk run */
            break;
        } else {
            count++;
        }
    }
    free(buf);
}

/* --- the measuring side ---------------------------------------------- */

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void measure_rtt(struct link *l, const char *name, double secs) {
    uint8_t msg[RTT_SIZE], back[RTT_SIZE];
    memset(msg, 0xab, sizeof msg);
    for (int i = 0; i < 2000; i++) { /* warm-up */
        link_send(l, msg, sizeof msg);
        link_recv(l, back, sizeof back);
    }
    size_t cap = 1u << 20, n = 0;
    uint64_t *samples = malloc(cap * sizeof *samples);
    if (!samples) die("malloc");
    uint64_t end = now_ns() + (uint64_t)(secs * 1e9);
    while (n < cap) {
        uint64_t t0 = now_ns();
        link_send(l, msg, sizeof msg);
        if (link_recv(l, back, sizeof back) != sizeof back) die("short echo");
        uint64_t t1 = now_ns();
        samples[n++] = t1 - t0;
        if (t1 >= end) break;
    }
    link_send(l, msg, 0); /* tells the peer to stop */
    qsort(samples, n, sizeof *samples, cmp_u64);
    printf("RESULT %s rtt_p50 %llu ns\n", name, (unsigned long long)samples[n / 2]);
    printf("RESULT %s rtt_p99 %llu ns\n", name, (unsigned long long)samples[n * 99 / 100]);
    fprintf(stderr, "%s: %zu round trips of 64 B\n", name, n);
    free(samples);
}

static void measure_bulk(struct link *l, const char *name, double secs) {
    uint8_t *buf = malloc(BULK_SIZE);
    if (!buf) die("malloc");
    memset(buf, 0x5a, BULK_SIZE);
    for (int i = 0; i < 20; i++) link_send(l, buf, BULK_SIZE); /* warm-up */
    uint64_t sent = 0, t0 = now_ns(), end = t0 + (uint64_t)(secs * 1e9);
    while (now_ns() < end || sent < 64) {
        link_send(l, buf, BULK_SIZE);
        sent++;
    }
    link_send(l, buf, 1);
    uint64_t count = 0;
    link_recv(l, &count, sizeof count);
    uint64_t t1 = now_ns();
    if (count != sent + 20) die("lost messages");
    double gib = (double)sent * BULK_SIZE / (double)(1u << 30);
    printf("RESULT %s bulk %.3f GiB/s\n", name, gib / ((double)(t1 - t0) / 1e9));
    free(buf);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s shm|uds rtt|bulk [SECONDS]\n", argv[0]);
        return 2;
    }
    int shm = strcmp(argv[1], "shm") == 0, bulk = strcmp(argv[2], "bulk") == 0;
    double secs = argc > 3 ? atof(argv[3]) : 1.0;
    char name[32];
    snprintf(name, sizeof name, "c-%s", shm ? "shm" : "uds");

    struct link l = {NULL, -1};
    shmsock_listener *lis = NULL;
    char path[96];
    int sv[2] = {-1, -1};
    shmsock_options *o = NULL;
    if (shm) {
        /* Both rings (ours: the listener's options; the peer's: its
         * connect options) hold four messages, at least 64 KiB. */
        size_t size = bulk ? BULK_SIZE : RTT_SIZE;
        uint64_t ring = 64u << 10;
        while (ring < 4 * (uint64_t)size) ring <<= 1;
        if (shmsock_options_new(&o) != SHMSOCK_OK) die("options");
        shmsock_options_set_ring_capacity(o, ring);
        snprintf(path, sizeof path, "/tmp/shmsock-bench-pair-%d.sock", (int)getpid());
        if (shmsock_listen(path, o, &lis) != SHMSOCK_OK) die("listen");
    } else if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        die("socketpair");
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        pin(1);
        if (shm) {
            /* The forked copy of the handle table holds `o` too. */
            if (shmsock_connect(path, o, &l.conn) != SHMSOCK_OK) die("connect");
        } else {
            close(sv[0]);
            l.fd = sv[1];
        }
        peer(&l, bulk);
        if (l.conn) shmsock_conn_free(l.conn);
        _exit(0);
    }
    pin(0);
    if (shm) {
        if (shmsock_accept_timeout(lis, TIMEOUT_NS, &l.conn) != SHMSOCK_OK) die("accept");
    } else {
        close(sv[1]);
        l.fd = sv[0];
    }
    if (bulk)
        measure_bulk(&l, name, secs);
    else
        measure_rtt(&l, name, secs);
    int status = 0;
    waitpid(pid, &status, 0);
    if (l.conn) shmsock_conn_free(l.conn);
    if (lis) shmsock_listener_free(lis);
    if (o) shmsock_options_free(o);
    if (l.fd >= 0) close(l.fd);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
