/*
 * An echo server that serves many clients from one thread with poll(2),
 * the way a Unix-socket daemon is written, on shmsock.
 *
 *   echo_server PATH [MAX_CLIENTS]
 *
 * Serves until SIGINT/SIGTERM, or until MAX_CLIENTS clients have come and
 * gone (for scripts). Each message is echoed back unchanged with a
 * zero-copy write: reserve ring space, copy the request into it, commit.
 * Messages too large to travel inline are echoed with a plain send.
 *
 * Socket pattern              shmsock
 *   socket+bind+listen        shmsock_listen
 *   poll on the listen fd     poll on shmsock_listener_fd
 *   accept                    shmsock_try_accept until SHMSOCK_WOULD_BLOCK
 *   poll on each client fd    poll on shmsock_conn_recv_fd
 *   recv (EAGAIN)             shmsock_try_recv (SHMSOCK_WOULD_BLOCK)
 *   recv == 0 / ECONNRESET    SHMSOCK_DISCONNECTED
 *   close                     shmsock_conn_free
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <shmsock.h>

/* Messages handled per client per poll round: one busy client cannot
 * starve the others. */
#define BUDGET 64
/* How long an echo may wait for ring space before the client is dropped. */
#define SEND_TIMEOUT_NS (2ull * 1000 * 1000 * 1000)

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

struct client {
    shmsock_conn *conn;
    int fd;
    size_t max_inline;
    unsigned long served;
    int more; /* used its whole budget last round */
};

static void warn_status(const char *what, shmsock_status st) {
    const char *msg = shmsock_last_error();
    fprintf(stderr, "echo_server: %s: %s (%s)\n", what, shmsock_status_str(st),
            msg ? msg : "");
}

/* Echoes one message; returns 0, or -1 if the client must be dropped. */
static int echo(struct client *c, const shmsock_message *m) {
    shmsock_status st;
    if (m->len <= c->max_inline) {
        shmsock_grant g;
        st = shmsock_reserve_timeout(c->conn, m->len, SEND_TIMEOUT_NS, &g);
        if (st == SHMSOCK_OK) {
            memcpy(g.data, m->data, m->len);
            st = shmsock_commit(c->conn, &g, m->len);
        }
    } else {
        st = shmsock_send_timeout(c->conn, m->data, m->len, SEND_TIMEOUT_NS);
    }
    if (st == SHMSOCK_OK) return 0;
    if (st != SHMSOCK_DISCONNECTED) warn_status("echo", st);
    return -1;
}

/* Serves what a client has ready; returns -1 when it is gone. */
static int serve(struct client *c) {
    for (int i = 0; i < BUDGET; i++) {
        shmsock_message m;
        shmsock_status st = shmsock_try_recv(c->conn, &m);
        if (st == SHMSOCK_WOULD_BLOCK) return 0;
        if (st != SHMSOCK_OK) {
            if (st != SHMSOCK_DISCONNECTED) warn_status("recv", st);
            return -1;
        }
        int r = echo(c, &m);
        shmsock_release(c->conn, &m);
        if (r < 0) return -1;
        c->served++;
    }
    return 0; /* budget spent: poll again (the fd may not be readable, so
                 the caller serves us again without waiting) */
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s PATH [MAX_CLIENTS]\n", argv[0]);
        return 2;
    }
    long max_clients = argc > 2 ? strtol(argv[2], NULL, 10) : -1;
    if (shmsock_version() != SHMSOCK_VERSION_NUMBER) {
        fprintf(stderr, "echo_server: header/library version mismatch\n");
        return 1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    shmsock_listener *l = NULL;
    shmsock_status st = shmsock_listen(argv[1], NULL, &l);
    if (st != SHMSOCK_OK) {
        warn_status("listen", st);
        return 1;
    }
    int lfd;
    shmsock_listener_fd(l, &lfd);

    size_t cap = 16, n = 0;
    struct client *clients = calloc(cap, sizeof *clients);
    struct pollfd *pfds = calloc(cap + 1, sizeof *pfds);
    if (!clients || !pfds) return 1;
    long finished = 0;
    int rc = 0, again = 0;

    while (!stop && (max_clients < 0 || finished < max_clients)) {
        pfds[0] = (struct pollfd){.fd = lfd, .events = POLLIN};
        for (size_t i = 0; i < n; i++)
            pfds[i + 1] = (struct pollfd){.fd = clients[i].fd, .events = POLLIN};
        /* A client that used up its budget has more ready: don't sleep. */
        int ready = poll(pfds, n + 1, again ? 0 : 1000);
        if (ready < 0) {
            if (errno == EINTR) continue; /* a signal: re-check `stop` */
            perror("poll");
            rc = 1;
            break;
        }
        again = 0;
        /* Serve the clients whose fd is readable (or that had more than a
         * budget's worth last round). try_recv re-arms the wake-up when it
         * finds nothing, so a readable fd is never missed. */
        for (size_t i = 0; i < n;) {
            if (!pfds[i + 1].revents && !clients[i].more) {
                i++;
                continue;
            }
            unsigned long before = clients[i].served;
            if (serve(&clients[i]) < 0) {
                shmsock_conn_free(clients[i].conn);
                clients[i] = clients[--n];
                pfds[i + 1] = pfds[n + 1];
                finished++;
                continue;
            }
            clients[i].more = clients[i].served - before >= BUDGET;
            again |= clients[i].more;
            i++;
        }
        if (pfds[0].revents & POLLIN) {
            for (;;) {
                shmsock_conn *c;
                st = shmsock_try_accept(l, &c);
                if (st == SHMSOCK_WOULD_BLOCK) break;
                if (st != SHMSOCK_OK) {
                    /* One client failed its handshake: the others go on. */
                    warn_status("accept", st);
                    continue;
                }
                if (n == cap) {
                    cap *= 2;
                    struct client *nc = realloc(clients, cap * sizeof *clients);
                    struct pollfd *np = realloc(pfds, (cap + 1) * sizeof *pfds);
                    if (!nc || !np) {
                        fprintf(stderr, "echo_server: out of memory\n");
                        return 1;
                    }
                    clients = nc;
                    pfds = np;
                }
                struct client *cl = &clients[n++];
                memset(cl, 0, sizeof *cl);
                cl->conn = c;
                shmsock_conn_recv_fd(c, &cl->fd);
                shmsock_conn_max_inline(c, &cl->max_inline);
                /* Its first messages may predate our interest in its fd:
                 * try it once now (that also arms its wake-up). */
                cl->more = 1;
                again = 1;
            }
        }
    }
    for (size_t i = 0; i < n; i++) shmsock_conn_free(clients[i].conn);
    shmsock_listener_free(l);
    free(clients);
    free(pfds);
    fprintf(stderr, "echo_server: %ld clients served\n", finished);
    return rc;
}
