/*
 * wave-edge: one WHEP viewer's RTP packets of one shared frame, written, SRTP-protected
 * and sent in one call from Python (edge/streaming/native_rtp.py loads this with cffi).
 *
 * Why C: on the shared fan-out path the edge's CPU per viewer was mostly Python around
 * four small things per packet (12-byte header, header extension, pylibsrtp's protect
 * wrapper, the send), ~30 us per viewer and frame against ~10 us for the send itself
 * (bench/RESULTS.md, "Streaming"). Here the same work is one call per viewer and frame,
 * with the GIL released, or one call per frame for all of a stream's viewers whose
 * sending is in order (wave_rtp_fanout), each viewer's counters and NACK history kept
 * here. What the packets hold is exactly what the Python writer (RtpHeaderWriter)
 * makes; tests/edge/test_native_rtp.py compares them byte for byte.
 *
 * SRTP is libsrtp's own `srtp_protect`, reached through the function pointer and the
 * session pointer the viewer's pylibsrtp session already holds (no second libsrtp).
 *
 * Sending: runs of equal-size datagrams (the last of a run may be shorter) go in one
 * sendmsg with UDP_SEGMENT, as edge/streaming/udp_batch.py does; a kernel that refuses
 * segmentation turns it off for the process and datagrams go one by one. A full socket
 * (EAGAIN) or another error stops the sending: the call returns how many datagrams left,
 * and the caller hands the rest, in order, to the asyncio transport, which queues them
 * or reports the error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#define MAX_SEGMENTS 64     /* UDP_MAX_SEGMENTS */
#define MAX_GSO_BYTES 65000 /* one UDP datagram's payload, with room for headers */
#define HISTORY 128         /* native_rtp.HISTORY */
#define NTP_EPOCH_OFFSET 2208988800ULL /* seconds from 1900 (NTP) to 1970 (Unix) */

typedef int (*wave_protect_fn)(void *srtp, void *packet, int *len);

/* Must match native_rtp.py's cdef. */
struct wave_rtp_viewer {
    wave_protect_fn protect;
    void *srtp;
    int fd;
    uint32_t addr_len;
    uint8_t addr[28]; /* sockaddr_in or sockaddr_in6 */
    uint32_t ssrc;
    uint32_t timestamp_origin;
    uint16_t sequence_number;
    uint8_t payload_type;
    uint8_t ext_len;     /* header extension block: profile, length, elements; 0 = none */
    int16_t abs_offset;  /* where abs-send-time's 3 bytes go in `ext`; -1 = not negotiated */
    uint8_t ext[64];
    /* What was sent since Python last read them (rtp_fanout's sync): RTP packets, their
     * payload bytes, datagram bytes, frames and their encoded bytes, and the NTP time and
     * RTP timestamp of the last frame (the pair an RTCP sender report gives). */
    uint64_t packets;
    uint64_t octets;
    uint64_t wire;
    uint64_t frames;
    uint64_t frame_bytes;
    uint64_t ntp;
    uint32_t rtp_timestamp;
    /* The last HISTORY frames sent, to answer NACKs from: ring[i % HISTORY] is (the shared
     * frame's serial, this viewer's first sequence number in it, its abs-send-time). */
    uint32_t hist_next;
    uint32_t hist_serial[HISTORY];
    uint32_t hist_abs[HISTORY];
    uint16_t hist_first[HISTORY];
};

/* One shared frame's payloads and the scratch its datagrams are written into; the same
 * for every viewer of the frame (Python fills it once). `sent` and `err` are outputs. */
struct wave_rtp_frame {
    const uint8_t *payloads; /* payload i is payloads[offsets[i] .. offsets[i] + lens[i]) */
    const uint32_t *offsets;
    const uint32_t *lens;
    int n;
    uint32_t stride; /* datagram i is written at out + i * stride */
    uint8_t *out;
    uint32_t *out_lens;
    int sent;
    int err;
    uint32_t serial;     /* the shared frame's number, for the viewers' NACK history */
    uint32_t data_bytes; /* the encoded frame's length (the track's byte count) */
};

static int segmentation = 1;

int wave_rtp_segmentation(void) { return segmentation; }

static void put16(uint8_t *p, uint16_t v) { p[0] = v >> 8; p[1] = v; }
static void put32(uint8_t *p, uint32_t v) { p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v; }

/*
 * Write and protect the viewer's packets of one frame into `out` (datagram i at
 * out + i * stride, its length in out_lens[i]); payload i is payloads[offsets[i] ..
 * offsets[i] + lens[i]). Advances the viewer's sequence number by n.
 * Returns 0, or the libsrtp error (> 0) of the first packet it could not protect.
 */
int wave_rtp_write(struct wave_rtp_viewer *v, const uint8_t *payloads, const uint32_t *offsets,
                   const uint32_t *lens, int n, uint32_t media_timestamp, uint32_t abs_send_time,
                   uint8_t *out, uint32_t *out_lens, uint32_t stride) {
    uint32_t timestamp = v->timestamp_origin + media_timestamp;
    uint8_t ext[64];
    memcpy(ext, v->ext, v->ext_len);
    if (v->abs_offset >= 0) {
        ext[v->abs_offset] = abs_send_time >> 16;
        ext[v->abs_offset + 1] = abs_send_time >> 8;
        ext[v->abs_offset + 2] = abs_send_time;
    }
    for (int i = 0; i < n; i++) {
        uint8_t *p = out + (size_t)i * stride;
        p[0] = v->ext_len ? 0x90 : 0x80;
        p[1] = v->payload_type | (i == n - 1 ? 0x80 : 0);
        put16(p + 2, v->sequence_number);
        put32(p + 4, timestamp);
        put32(p + 8, v->ssrc);
        memcpy(p + 12, ext, v->ext_len);
        memcpy(p + 12 + v->ext_len, payloads + offsets[i], lens[i]);
        int len = 12 + v->ext_len + (int)lens[i];
        int err = v->protect(v->srtp, p, &len);
        if (err)
            return err;
        out_lens[i] = (uint32_t)len;
        v->sequence_number++;
    }
    return 0;
}

static int refused_segmentation(int err) {
    return err == EINVAL || err == EIO || err == ENOPROTOOPT || err == EOPNOTSUPP;
}

/*
 * Send datagrams [0, n) of `out` to the viewer in order. Returns how many were sent; when
 * fewer than n, *err is the errno that stopped it.
 */
int wave_rtp_send(const struct wave_rtp_viewer *v, uint8_t *out, const uint32_t *out_lens, int n,
                  uint32_t stride, int *err) {
    struct iovec iov[MAX_SEGMENTS];
    char control[CMSG_SPACE(sizeof(uint16_t))];
    *err = 0;
    int i = 0;
    while (i < n) {
        /* the run starting at i: equal lengths, the last may be shorter */
        int k = 1;
        uint32_t size = out_lens[i], total = size;
        if (segmentation) {
            while (i + k < n && k < MAX_SEGMENTS && out_lens[i + k] <= size && total + out_lens[i + k] <= MAX_GSO_BYTES) {
                total += out_lens[i + k];
                k++;
                if (out_lens[i + k - 1] < size)
                    break;
            }
        }
        for (int j = 0; j < k; j++) {
            iov[j].iov_base = out + (size_t)(i + j) * stride;
            iov[j].iov_len = out_lens[i + j];
        }
        struct msghdr msg;
        memset(&msg, 0, sizeof msg);
        msg.msg_name = (void *)v->addr;
        msg.msg_namelen = v->addr_len;
        msg.msg_iov = iov;
        msg.msg_iovlen = k;
        if (k > 1) {
            memset(control, 0, sizeof control);
            msg.msg_control = control;
            msg.msg_controllen = sizeof control;
            struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
            cm->cmsg_level = SOL_UDP;
            cm->cmsg_type = UDP_SEGMENT;
            cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
            uint16_t segment = (uint16_t)size;
            memcpy(CMSG_DATA(cm), &segment, sizeof segment);
        }
        if (sendmsg(v->fd, &msg, 0) < 0) {
            if (k > 1 && refused_segmentation(errno)) {
                segmentation = 0; /* one by one from now on, this run too */
                continue;
            }
            *err = errno;
            return i;
        }
        i += k;
    }
    return n;
}

/*
 * wave_rtp_write with the abs-send-time of `ntp`, then (when `send`) wave_rtp_send: one
 * crossing from Python per viewer and frame. Counts what was written in the viewer's
 * counters and NACK history. Returns the datagrams' total length, or minus the libsrtp
 * error of a packet that could not be protected (then nothing is counted); f->sent is how
 * many datagrams left (0 when not `send`), f->err the errno that stopped the sending.
 */
long wave_rtp_write_send(struct wave_rtp_viewer *v, struct wave_rtp_frame *f, uint32_t media_timestamp,
                         uint64_t ntp, int send) {
    uint32_t abs_send_time = (uint32_t)(ntp >> 14) & 0xFFFFFF;
    uint16_t first = v->sequence_number;
    f->sent = 0;
    f->err = 0;
    int rc = wave_rtp_write(v, f->payloads, f->offsets, f->lens, f->n, media_timestamp, abs_send_time, f->out,
                            f->out_lens, f->stride);
    if (rc)
        return -(long)rc;
    long wire = 0;
    uint64_t octets = 0;
    for (int i = 0; i < f->n; i++) {
        wire += f->out_lens[i];
        octets += f->lens[i];
    }
    /* written is as good as sent: what does not leave now the caller queues, in order */
    uint32_t slot = v->hist_next++ % HISTORY;
    v->hist_serial[slot] = f->serial;
    v->hist_first[slot] = first;
    v->hist_abs[slot] = abs_send_time;
    v->packets += (uint64_t)f->n;
    v->octets += octets;
    v->wire += (uint64_t)wire;
    v->frames++;
    v->frame_bytes += f->data_bytes;
    v->ntp = ntp;
    v->rtp_timestamp = v->timestamp_origin + media_timestamp;
    if (send)
        f->sent = wave_rtp_send(v, f->out, f->out_lens, f->n, f->stride, &f->err);
    return wire;
}

/* The wall clock as a 64-bit NTP time, as rtp_fanout.ntp_now() makes it. */
static uint64_t ntp_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (((uint64_t)ts.tv_sec + NTP_EPOCH_OFFSET) << 32) | (((uint64_t)ts.tv_nsec << 32) / 1000000000ULL);
}

/*
 * One shared frame to viewers[start..count): for each, wave_rtp_write_send with the clock
 * read for that viewer (so the last of many viewers' abs-send-time is not the first's).
 * One call from Python per frame for every viewer whose sending is in order (rtp_fanout's
 * FanoutGroup), instead of one per viewer. Returns `count` when every datagram of every
 * viewer left; otherwise the index of the viewer it stopped at, with *result that call's
 * return (the datagrams' length, or minus a libsrtp error) and f->sent / f->err / f->out
 * describing that viewer's datagrams, for the caller to queue or report before it goes on
 * from the next viewer.
 */
int wave_rtp_fanout(struct wave_rtp_viewer **viewers, int count, int start, struct wave_rtp_frame *f,
                    uint32_t media_timestamp, long *result) {
    for (int i = start; i < count; i++) {
        long r = wave_rtp_write_send(viewers[i], f, media_timestamp, ntp_now(), 1);
        if (r < 0 || f->sent < f->n) {
            *result = r;
            return i;
        }
    }
    *result = 0;
    return count;
}
