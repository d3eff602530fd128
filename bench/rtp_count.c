/*
 * bench/whep_load.py's viewers, the part that runs for every packet: read what waits on a
 * viewer's socket, decrypt each SRTP packet with the viewer's own libsrtp session, and
 * count the complete frames. Built by `make` (build/rtp_count.so); the benchmark falls
 * back to the same work in Python when it is missing.
 *
 * Why C: the load process shares the machine's cores with the edge it measures. Doing
 * this in Python cost it about as much CPU per viewer as the edge spent sending
 * (bench/RESULTS.md, "Streaming"), so at the shared path's viewer counts the two cores
 * were full of load generator, which a real audience does not put on the edge's machine.
 *
 * libsrtp is the one pylibsrtp already loaded: `srtp_unprotect` is called through the
 * function pointer and the session pointer of the viewer's pylibsrtp session (as
 * edge/streaming/rtp_send.c does with `srtp_protect`). A packet that fails authentication
 * or is a replay is not counted.
 *
 * A frame counts when its last packet (RTP marker) arrives and every sequence number
 * since the previous frame's last packet arrived too: a complete frame, in order.
 * The edge's SRTCP (its sender reports, about one per viewer and second) is counted and
 * not read: handing it to aiortc's receive loop, to learn a round-trip time nobody here
 * uses, was a third of this process's Python time at 400 viewers. So these viewers'
 * receiver reports carry no LSR, and the edge reports no RTT for them. STUN (the edge's
 * ICE consent checks and the answers to the viewers' own) and DTLS are handed back to
 * Python, which gives them to aioice as before.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>

#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

typedef int (*wave_unprotect_fn)(void *srtp, void *packet, int *len);

/* Must match bench/whep_load.py's cdef. */
struct wave_count_viewer {
    wave_unprotect_fn unprotect;
    void *srtp;
    int fd;
    int started;      /* a packet was seen: last_seq is meaningful */
    int broken;       /* a sequence number is missing since the last frame's end */
    uint16_t last_seq;
    uint64_t frames;  /* complete frames */
    uint64_t packets; /* SRTP packets that decrypted */
    uint64_t rejected;
    uint64_t rtcp;    /* SRTCP packets, not read */
};

static int is_srtp(const uint8_t *p, size_t len) {
    /* RFC 7983: 128..191 is RTP/RTCP; RTCP's packet types 192..223 sit in byte 1 */
    return len >= 12 && p[0] > 127 && p[0] < 192 && !(p[1] > 191 && p[1] < 224);
}

static int is_rtcp(const uint8_t *p, size_t len) {
    return len >= 8 && p[0] > 127 && p[0] < 192 && p[1] > 191 && p[1] < 224;
}

static void count(struct wave_count_viewer *v, uint8_t *p, int len) {
    if (v->unprotect(v->srtp, p, &len)) {
        v->rejected++;
        return;
    }
    v->packets++;
    uint16_t seq = (uint16_t)((p[2] << 8) | p[3]);
    int broken = v->started && (v->broken || (uint16_t)(seq - v->last_seq) != 1);
    if (p[1] & 0x80) { /* marker: the frame's last packet */
        if (!broken)
            v->frames++;
        broken = 0;
    }
    v->started = 1;
    v->broken = broken;
    v->last_seq = seq;
}

/*
 * Read the datagrams waiting on the viewer's socket until it would block. SRTP packets
 * are counted; a read that holds a datagram that is not SRTP ends the call, that datagram
 * copied to `other` (at most `cap` bytes, its sender in `addr`/`*addr_len`). Returns its
 * length, 0 when the socket is drained, or -errno of a failed read.
 */
int wave_count_drain(struct wave_count_viewer *v, uint8_t *buf, int size, uint8_t *other, int cap,
                     uint8_t *addr, uint32_t *addr_len) {
    for (;;) {
        struct iovec iov = {buf, (size_t)size};
        char control[CMSG_SPACE(sizeof(int))];
        struct msghdr msg;
        memset(&msg, 0, sizeof msg);
        msg.msg_name = addr;
        msg.msg_namelen = *addr_len;
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        ssize_t n = recvmsg(v->fd, &msg, 0);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            if (errno == EINTR)
                continue;
            return -errno;
        }
        *addr_len = msg.msg_namelen;
        size_t segment = (size_t)n;
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
            if (cm->cmsg_level == SOL_UDP && cm->cmsg_type == UDP_GRO) {
                int gso;
                memcpy(&gso, CMSG_DATA(cm), sizeof gso);
                if (gso > 0)
                    segment = (size_t)gso;
            }
        }
        int found = -1;
        for (size_t at = 0; at < (size_t)n; at += segment) {
            size_t len = (size_t)n - at < segment ? (size_t)n - at : segment;
            uint8_t *p = buf + at;
            if (is_srtp(p, len)) {
                count(v, p, (int)len);
            } else if (is_rtcp(p, len)) {
                v->rtcp++; /* the edge's sender reports: nothing a counting viewer needs */
            } else if (found < 0) {
                /* STUN, DTLS or SRTCP: sent on their own, so never in a run with another */
                found = (int)(len < (size_t)cap ? len : (size_t)cap);
                memcpy(other, p, (size_t)found);
            }
        }
        if (found >= 0)
            return found;
    }
}

/*
 * Drain every viewer socket that the epoll set `epfd` reports readable; `viewers[fd]`
 * (fd < max_fd) is the viewer reading on fd. One call from Python per wake-up of the
 * process, not one per socket: asyncio's per-socket callbacks were half of this
 * process's Python time. Returns as wave_count_drain does, with *which the descriptor
 * the datagram that is not SRTP came from; 0 when nothing more is ready (or after a few
 * rounds: the caller's event loop calls again while the set stays readable).
 */
int wave_count_poll(int epfd, struct wave_count_viewer **viewers, int max_fd, uint8_t *buf, int size,
                    uint8_t *other, int cap, uint8_t *addr, uint32_t *addr_len, int *which) {
    struct epoll_event events[256];
    uint32_t addr_cap = *addr_len;
    for (int round = 0; round < 8; round++) {
        int n = epoll_wait(epfd, events, 256, 0);
        if (n < 0)
            return errno == EINTR ? 0 : -errno;
        if (n == 0)
            return 0;
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            struct wave_count_viewer *v = fd >= 0 && fd < max_fd ? viewers[fd] : NULL;
            if (!v)
                continue;
            *addr_len = addr_cap;
            int got = wave_count_drain(v, buf, size, other, cap, addr, addr_len);
            if (got > 0) {
                *which = fd;
                return got;
            }
        }
    }
    return 0;
}
