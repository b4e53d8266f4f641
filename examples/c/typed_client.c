/*
 * A client that sends typed messages (a small header with a message type
 * and a sequence number, as the classic length/type framing does) to the
 * echo server, with timeouts on every call, and checks each reply.
 *
 *   typed_client PATH [COUNT]
 *
 * Exits 0 if every reply matched, 1 otherwise. On a message socket each
 * send is one message, so no length prefix is needed: shmsock preserves
 * message boundaries like SOCK_SEQPACKET.
 */
#define _DEFAULT_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <shmsock.h>

enum msg_type { MSG_PING = 1, MSG_TEXT = 2, MSG_SAMPLES = 3, MSG_BLOB = 4 };

struct msg_header {
    uint16_t type;
    uint16_t flags;
    uint32_t seq;
};

#define TIMEOUT_NS (5ull * 1000 * 1000 * 1000)
#define MAX_PAYLOAD (3u << 20)

static int fail(const char *what, shmsock_status st) {
    const char *msg = shmsock_last_error();
    fprintf(stderr, "typed_client: %s: %s (%s)\n", what, shmsock_status_str(st),
            st == SHMSOCK_OK ? "mismatch" : (msg ? msg : ""));
    return 1;
}

/* Fills the payload of message `seq` of `type`; returns its length. */
static size_t make_payload(uint8_t *p, enum msg_type type, uint32_t seq) {
    switch (type) {
    case MSG_PING:
        return 0;
    case MSG_TEXT:
        return (size_t)snprintf((char *)p, 64, "message %u says hello", seq);
    case MSG_SAMPLES: {
        size_t n = 16 + seq % 200;
        for (size_t i = 0; i < n; i++) {
            int32_t v = (int32_t)(seq * 31 + i);
            memcpy(p + 4 * i, &v, 4);
        }
        return 4 * n;
    }
    case MSG_BLOB: {
        /* Above one ring record with the default 1 MiB ring: streamed. */
        size_t n = (1u << 20) + seq % 4096;
        for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(i * 7 + seq);
        return n;
    }
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s PATH [COUNT]\n", argv[0]);
        return 2;
    }
    unsigned count = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 10) : 1000;

    shmsock_options *opts;
    shmsock_status st = shmsock_options_new(&opts);
    if (st != SHMSOCK_OK) return fail("options", st);
    /* Default timeout of send/recv, so a dead server cannot hang us. */
    shmsock_options_set_timeout(opts, TIMEOUT_NS);
    shmsock_options_set_handshake_timeout(opts, TIMEOUT_NS);
    shmsock_options_set_credentials(opts, SHMSOCK_PEER_SAME_UID, 0);

    shmsock_conn *conn = NULL;
    /* Retry while the server is starting (ENOENT/ECONNREFUSED). */
    for (int tries = 0; tries < 100; tries++) {
        st = shmsock_connect(argv[1], opts, &conn);
        if (st != SHMSOCK_IO) break;
        usleep(50 * 1000);
    }
    shmsock_options_free(opts);
    if (st != SHMSOCK_OK) return fail("connect", st);

    shmsock_credentials peer;
    shmsock_conn_peer_credentials(conn, &peer);

    uint8_t *buf = malloc(sizeof(struct msg_header) + MAX_PAYLOAD);
    if (!buf) return 1;
    int rc = 0;
    for (uint32_t seq = 0; seq < count && rc == 0; seq++) {
        enum msg_type type = (enum msg_type)(1 + seq % 4);
        if (type == MSG_BLOB && seq % 64 != 3) type = MSG_TEXT; /* few blobs */
        struct msg_header h = {.type = (uint16_t)type, .flags = 0, .seq = seq};
        memcpy(buf, &h, sizeof h);
        size_t len = sizeof h + make_payload(buf + sizeof h, type, seq);

        st = shmsock_send_timeout(conn, buf, len, TIMEOUT_NS);
        if (st != SHMSOCK_OK) {
            rc = fail("send", st);
            break;
        }
        shmsock_message m;
        st = shmsock_recv_timeout(conn, TIMEOUT_NS, &m);
        if (st != SHMSOCK_OK) {
            rc = fail("recv", st);
            break;
        }
        /* The reply lies in shared memory: copy the header before
         * trusting it, then compare. */
        struct msg_header r;
        if (m.len < sizeof r) {
            rc = fail("short reply", SHMSOCK_OK);
        } else {
            memcpy(&r, m.data, sizeof r);
            if (r.type != h.type || r.seq != h.seq || m.len != len ||
                memcmp(m.data, buf, len) != 0)
                rc = fail("reply", SHMSOCK_OK);
        }
        shmsock_release(conn, &m);
    }
    free(buf);
    shmsock_conn_free(conn);
    if (rc == 0)
        printf("typed_client: %u typed messages echoed (server pid %d)\n", count,
               (int)peer.pid);
    return rc;
}
