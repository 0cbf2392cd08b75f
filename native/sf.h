/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * sf.h - the Snowflock guest SDK: SnowFlock's impromptu-cluster calls for
 * WebAssembly (WASI preview1) guests written in C.
 *
 * Copyright (C) the Snowflock authors.
 *
 * This program is free software; you can redistribute it and/or modify it
 * under the terms of the GNU General Public License as published by the Free
 * Software Foundation; either version 2 of the License, or (at your option)
 * any later version.
 *
 * This program is distributed in the hope that it will be useful, but WITHOUT
 * ANY WARRANTY; without even the implied warranty of MERCHANTABILITY or
 * FITNESS FOR A PARTICULAR PURPOSE. See the GNU General Public License for
 * more details.
 *
 * Every call is a Wasm import from the module "snowflock"; the host provides
 * them. Build a guest with `snowflock cc app.c -o app.wasm` (or
 * `clang --target=wasm32-wasi --sysroot=/usr -I native app.c`).
 *
 * The typical shape of a parallel section:
 *
 *     int32_t t = sf_request_ticket(n);         // ask for n clones
 *     int32_t m = sf_ticket_size(t);            // the allocator granted m <= n
 *     fflush(stdout);                           // clones inherit stdio buffers
 *     int32_t id = sf_clone(t);                 // 0 here, 1..m in the clones
 *     do_share(id, m + 1);                      // the parent is worker 0
 *     if (id > 0) { write_result("/out/part"); sf_exit(0); }
 *     int32_t failed = sf_join(t);              // clones' /out is now in
 *                                               // /out/clone-<id>/
 *
 * Environment every VM sees:
 *   - a preopened directory "/out"; what a clone writes under its /out is
 *     gathered into the parent's "/out/clone-<id>/" by the time sf_join
 *     returns, with "/out/clone-<id>/.snowflock/exit.json" saying how that
 *     clone ended: {"ticket", "state", "exit_code", "reason"};
 *   - stdout of a clone is streamed to the user line by line, tagged with the
 *     clone id.
 *
 * Errors are negative SF_E* codes, never traps; sf_strerror() names them.
 */
#ifndef SNOWFLOCK_SF_H
#define SNOWFLOCK_SF_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SF_IMPORT(name) \
	__attribute__((import_module("snowflock"), import_name(#name)))

/* Error codes returned (negated) by the calls below. */
#define SF_EINVAL (-1)        /* bad argument */
#define SF_ENOTICKET (-2)     /* unknown ticket */
#define SF_ETICKETUSED (-3)   /* ticket already used */
#define SF_ENOSLOTS (-4)      /* the allocator granted nothing */
#define SF_ECLONE (-5)        /* not allowed in a clone (e.g. sf_join) */
#define SF_ECONTROL (-6)      /* control plane unreachable */
#define SF_EFORK (-7)         /* fork failed */
#define SF_ENOTSUP (-8)       /* not supported by this backend */
#define SF_ETIMEDOUT (-9)     /* timed out */
#define SF_ENOCKPT (-10)      /* unknown checkpoint */

/**
 * Asks the allocator for up to `n` clones (n >= 1). Returns a ticket handle
 * > 0, or a negative error (SF_EINVAL, SF_ENOSLOTS, SF_ECONTROL, ...). The
 * grant may be smaller than `n`: ask sf_ticket_size() how many.
 */
SF_IMPORT(sf_request_ticket) int32_t sf_request_ticket(int32_t n);

/**
 * Returns m, the number of clones `ticket` grants (1 <= m <= n), or a
 * negative error (SF_ENOTICKET). Split work by m, never by the n asked for.
 */
SF_IMPORT(sf_ticket_size) int32_t sf_ticket_size(int32_t ticket);

/**
 * Forks this VM into the m clones of `ticket`. Returns 0 in the parent and the
 * clone id 1..m in each clone, which continues from this call with a copy of
 * the parent's memory (fetched on demand). Returns a negative error in the
 * parent (SF_ENOTICKET, SF_ETICKETUSED, SF_EFORK, SF_ECLONE, ...) when no
 * clone was started. Flush stdio first: clones inherit unwritten buffers.
 */
SF_IMPORT(sf_clone) int32_t sf_clone(int32_t ticket);

/**
 * Blocks the parent until every clone of `ticket` has exited or failed, then
 * releases the ticket. Returns 0 when every clone exited with code 0, else the
 * number of clones that failed or exited non-zero, or a negative error
 * (SF_ENOTICKET, SF_ECLONE in a clone, ...). When it returns, each clone's
 * /out has been gathered into the parent's /out/clone-<id>/.
 */
SF_IMPORT(sf_join) int32_t sf_join(int32_t ticket);

/**
 * Ends this clone with exit code `code` (0 = success for sf_join). Does not
 * flush stdio or run atexit handlers: fflush/fclose what must survive first.
 */
SF_IMPORT(sf_exit) __attribute__((noreturn)) void sf_exit(int32_t code);

/**
 * Ends every clone of `ticket` at once and releases the ticket; their /out is
 * not gathered. Returns 0 or a negative error (SF_ENOTICKET, SF_ECLONE).
 */
SF_IMPORT(sf_kill) int32_t sf_kill(int32_t ticket);

/**
 * Makes an immutable checkpoint of this VM to start clones from later with
 * sf_create_clones(). Returns a checkpoint handle > 0 in the parent, 0 in the
 * clones started from it (which continue from this call), or a negative error.
 */
SF_IMPORT(sf_checkpoint_parent) int32_t sf_checkpoint_parent(void);

/**
 * Starts the m clones of `ticket` from `checkpoint`; they return 0 from the
 * sf_checkpoint_parent() call that made it, while the parent carries on here.
 * Returns 0 or a negative error (SF_ENOCKPT, SF_ENOTICKET, SF_ETICKETUSED,
 * SF_EFORK, ...). Join or kill them with the ticket as usual.
 */
SF_IMPORT(sf_create_clones)
int32_t sf_create_clones(int32_t checkpoint, int32_t ticket);

/**
 * Tells memory-on-demand that [ptr, ptr + len) will be overwritten before it
 * is read, so the parent's pages there need not be fetched (they start as
 * zero pages). In a clone it applies at once; in the parent it applies to the
 * clones of its next fork. Only whole pages inside the range are affected.
 * Returns 0 or a negative error (SF_EINVAL).
 */
SF_IMPORT(sf_hint_overwrite) int32_t sf_hint_overwrite(void *ptr, uint32_t len);

/** Returns 0 in the parent, this clone's id (1..m) in a clone. */
SF_IMPORT(sf_clone_id) int32_t sf_clone_id(void);

#undef SF_IMPORT

/** Returns a static description of an SF_E* code (or of success, >= 0). */
static inline const char *sf_strerror(int32_t code)
{
	switch (code) {
	case SF_EINVAL:
		return "bad argument";
	case SF_ENOTICKET:
		return "unknown ticket";
	case SF_ETICKETUSED:
		return "ticket already used";
	case SF_ENOSLOTS:
		return "the allocator granted no clones";
	case SF_ECLONE:
		return "not allowed in a clone";
	case SF_ECONTROL:
		return "control plane unreachable";
	case SF_EFORK:
		return "fork failed";
	case SF_ENOTSUP:
		return "not supported";
	case SF_ETIMEDOUT:
		return "timed out";
	case SF_ENOCKPT:
		return "unknown checkpoint";
	default:
		return code >= 0 ? "success" : "unknown error";
	}
}

#ifdef __cplusplus
}
#endif

#endif /* SNOWFLOCK_SF_H */
