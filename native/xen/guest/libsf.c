/* Snowflock guest library for Linux PV guests: see sf.h for the channel. */
#include "sf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* xen/include/public/io/xs_wire.h (Xen 4.17): enum xsd_sockmsg_type, struct xsd_sockmsg. */
enum { XS_READ = 2, XS_WRITE = 11, XS_ERROR = 16 };
struct xsd_sockmsg {
  uint32_t type, req_id, tx_id, len; /* 16 bytes, then len payload bytes */
};
#define XENSTORE_PAYLOAD_MAX 4096
_Static_assert(sizeof(struct xsd_sockmsg) == 16, "xs_wire.h: struct xsd_sockmsg is 16 bytes");

static const char *XENBUS = "/dev/xen/xenbus";
static uint32_t req_id;

/* One XenStore request/reply on a fresh fd: a suspend/resume in between cannot
 * leave a half-read reply behind. Returns the reply length or a negative code. */
static int xs_request(uint32_t type, const char *payload, int plen, char *out, int size) {
  int fd = open(XENBUS, O_RDWR | O_CLOEXEC);
  if (fd < 0) return SF_EIO;
  struct xsd_sockmsg h = {type, ++req_id, 0, (uint32_t)plen};
  char buf[sizeof h + XENSTORE_PAYLOAD_MAX];
  if (plen > XENSTORE_PAYLOAD_MAX) { close(fd); return SF_EINVAL; }
  memcpy(buf, &h, sizeof h);
  memcpy(buf + sizeof h, payload, plen);
  if (write(fd, buf, sizeof h + plen) != (ssize_t)(sizeof h + plen)) { close(fd); return SF_EIO; }
  ssize_t got = 0, want = sizeof h;
  while (got < want) {
    ssize_t r = read(fd, buf + got, sizeof buf - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) { close(fd); return SF_EIO; }
    got += r;
    if (got >= (ssize_t)sizeof h) {
      memcpy(&h, buf, sizeof h);
      if (h.len > XENSTORE_PAYLOAD_MAX) { close(fd); return SF_EIO; }
      want = sizeof h + h.len;
    }
  }
  close(fd);
  if (h.type == XS_ERROR) return -ENOENT;
  int n = (int)h.len < size - 1 ? (int)h.len : size - 1;
  if (out && size > 0) { memcpy(out, buf + sizeof h, n); out[n] = 0; }
  return (int)h.len;
}

int sf_xs_read(const char *path, char *value, int size) {
  return xs_request(XS_READ, path, strlen(path) + 1, value, size);
}

int sf_xs_write(const char *path, const char *value) {
  char p[XENSTORE_PAYLOAD_MAX];
  int pl = strlen(path) + 1, vl = strlen(value);
  if (pl + vl > (int)sizeof p) return SF_EINVAL;
  memcpy(p, path, pl);
  memcpy(p + pl, value, vl);
  char ok[8];
  int r = xs_request(XS_WRITE, p, pl + vl, ok, sizeof ok);
  return r < 0 ? r : 0;
}

static long long now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000LL + t.tv_nsec / 1000000;
}

int sf_call(const char *op, const char *arg, char *value, int size, int timeout_ms) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  unsigned long long seq = ((unsigned long long)t.tv_sec * 1000000ULL + t.tv_nsec / 1000) ^ (unsigned)getpid();
  char req[256], reply[512];
  snprintf(req, sizeof req, "%llu %s%s%s", seq, op, arg && *arg ? " " : "", arg ? arg : "");
  int r = sf_xs_write("data/snowflock/request", req);
  if (r < 0) return r;
  long long deadline = now_ms() + timeout_ms;
  for (;;) {
    /* Polled, not watched: a watch does not survive the restore into a clone's domain. */
    if (sf_xs_read("data/snowflock/reply", reply, sizeof reply) > 0) {
      char *end;
      unsigned long long got = strtoull(reply, &end, 10);
      if (got == seq && *end == ' ') {
        long rc = strtol(end + 1, &end, 10);
        if (value && size > 0) snprintf(value, size, "%s", *end == ' ' ? end + 1 : "");
        return (int)rc;
      }
    }
    if (timeout_ms >= 0 && now_ms() > deadline) return SF_ETIMEDOUT;
    usleep(20000);
  }
}

int sf_request_ticket(int n, char *ticket, int size) {
  char arg[16], value[128];
  if (n <= 0 || !ticket || size <= 0) return SF_EINVAL;
  snprintf(arg, sizeof arg, "%d", n);
  int rc = sf_call("ticket", arg, value, sizeof value, 120000);
  if (rc < 0) return rc;
  /* value: "<ticket> <granted>" */
  char *sp = strchr(value, ' ');
  if (!sp) return SF_EIO;
  *sp = 0;
  snprintf(ticket, size, "%s", value);
  return atoi(sp + 1);
}

int sf_clone(const char *ticket) {
  char value[64];
  int rc = sf_call("clone", ticket, value, sizeof value, 600000);
  return rc < 0 ? rc : atoi(value);
}

int sf_join(const char *ticket) { return sf_call("join", ticket, NULL, 0, -1); }
int sf_kill(const char *ticket) { return sf_call("kill", ticket, NULL, 0, 60000); }

int sf_exit(int code) {
  char arg[16];
  snprintf(arg, sizeof arg, "%d", code);
  return sf_call("exit", arg, NULL, 0, 60000);
}

int sf_clone_id(void) {
  char v[32];
  return sf_xs_read("data/snowflock/clone-id", v, sizeof v) > 0 ? atoi(v) : 0;
}

int sf_domid(void) {
  char v[32];
  int r = sf_xs_read("domid", v, sizeof v);
  return r > 0 ? atoi(v) : r;
}
