/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * ic.h - how the example guests share work in an impromptu cluster.
 *
 * Every example runs as `app <clones> [params]`. With clones = 0 it computes
 * alone and makes no sf_* call at all (so it also runs on any WASI runtime);
 * otherwise the parent forks, keeps a share as worker 0, and each clone writes
 * its partial result to /out/<name> and exits; after the join the parent reads
 * them back from /out/clone-<id>/<name>.
 */
#ifndef SNOWFLOCK_IC_H
#define SNOWFLOCK_IC_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "sf.h"

/* This VM's place in the cluster; {0, 1, 0} while computing alone. */
static struct {
	int32_t ticket;
	int32_t workers; /* m + 1: the clones plus the parent */
	int32_t id;      /* 0 in the parent, 1..m in the clones */
} ic = {0, 1, 0};

/* Reports a fatal error and ends this VM the way its role requires. */
static inline __attribute__((noreturn, format(printf, 1, 2))) void
ic_die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (ic.id > 0)
		fprintf(stderr, "worker %d: ", ic.id);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stdout);
	if (ic.id > 0)
		sf_exit(1);
	exit(1);
}

static inline double ic_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Parses a non-negative integer argument, naming it on error. */
static inline int64_t ic_arg(const char *text, const char *what, int64_t min,
			     int64_t max)
{
	char *end;
	long long value = strtoll(text, &end, 10);
	if (*text == '\0' || *end != '\0' || value < min || value > max)
		ic_die("bad %s '%s': want an integer in %lld..%lld", what, text,
		       (long long)min, (long long)max);
	return value;
}

/*
 * Forks into up to `clones` clones; afterwards ic.id says who we are. Works by
 * the granted size m, never by the number asked for.
 */
static inline void ic_fork(int32_t clones)
{
	if (clones == 0)
		return;
	int32_t ticket = sf_request_ticket(clones);
	if (ticket < 0)
		ic_die("cannot request %d clones: %s", clones, sf_strerror(ticket));
	int32_t m = sf_ticket_size(ticket);
	if (m < 1)
		ic_die("cannot size ticket %d: %s", ticket, sf_strerror(m));
	printf("granted %d of %d clones\n", m, clones);
	/* Clones inherit the stdio buffer: anything unflushed would print twice. */
	fflush(stdout);
	int32_t id = sf_clone(ticket);
	if (id < 0)
		ic_die("cannot clone: %s", sf_strerror(id));
	ic.ticket = ticket;
	ic.workers = m + 1;
	ic.id = id;
}

/*
 * Worker `worker`'s share [*first, *end) of `total` units. Shares are
 * contiguous and in worker order, so concatenating them in worker order is
 * the sequential order.
 */
static inline void ic_share(int32_t worker, uint64_t total, uint64_t *first,
			    uint64_t *end)
{
	*first = total * (uint64_t)worker / (uint64_t)ic.workers;
	*end = total * (uint64_t)(worker + 1) / (uint64_t)ic.workers;
}

/* Tells memory-on-demand this clone overwrites `buf` before reading it. */
static inline void ic_hint_overwrite(void *buf, size_t len)
{
	if (ic.id > 0 && len > 0)
		sf_hint_overwrite(buf, (uint32_t)len);
}

/* In a clone: publishes the partial result as /out/<name>, then exits. */
static inline __attribute__((noreturn)) void
ic_finish_clone(const char *name, const void *buf, size_t len)
{
	char path[256];
	snprintf(path, sizeof(path), "/out/%s", name);
	FILE *f = fopen(path, "wb");
	if (f == NULL || fwrite(buf, 1, len, f) != len || fclose(f) != 0)
		ic_die("cannot write %s", path);
	/* sf_exit does not run atexit handlers, so nothing else flushes stdout. */
	fflush(stdout);
	sf_exit(0);
}

/* In the parent: waits for every clone; any failure ends the run. */
static inline void ic_join(void)
{
	if (ic.ticket == 0)
		return;
	int32_t failed = sf_join(ic.ticket);
	if (failed < 0)
		ic_die("cannot join: %s", sf_strerror(failed));
	if (failed > 0)
		ic_die("cannot combine results: %d of %d clones failed", failed,
		       ic.workers - 1);
}

/* In the parent, after ic_join: reads clone `id`'s /out/<name>, exactly `len` bytes. */
static inline void ic_gather(int32_t id, const char *name, void *buf, size_t len)
{
	char path[256];
	snprintf(path, sizeof(path), "/out/clone-%d/%s", id, name);
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		ic_die("cannot read %s", path);
	size_t got = fread(buf, 1, len, f);
	int trailing = fgetc(f) != EOF;
	fclose(f);
	if (got != len || trailing)
		ic_die("cannot read %s: want exactly %zu bytes", path, len);
}

#endif /* SNOWFLOCK_IC_H */
