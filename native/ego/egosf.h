/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libegosf: Snowflock's flat interface to Platform EGO's client API, after
 * SnowFlock's library of the same name. Only ints, C strings and one opaque
 * pointer cross this interface, so Deno FFI and Python ctypes can call it
 * without knowing EGO's structures (whose layouts are not public).
 *
 * Errors: functions returning int give 0 (or a count) on success and a
 * negative number on failure: -egoerrno when EGO set one, else -1.
 * egosf_last_error() then reads "Cannot <operation>: <ego_strerror text>
 * (egoerrno N)". Not thread-safe: one session per thread.
 */
#ifndef EGOSF_H
#define EGOSF_H

#ifdef __cplusplus
extern "C" {
#endif

typedef struct egosf egosf_t;

/* Version of this interface; bumped when a signature changes. */
#define EGOSF_ABI_VERSION 1
int egosf_abi_version(void);

/* vem_initialize + ego_open(confdir) + ego_logon(user, password) +
 * ego_register(client). NULL on failure (see egosf_last_error). */
egosf_t *egosf_open(const char *confdir, const char *user, const char *password,
		    const char *client);

/* ego_alloc for 1..max_slots slots of `consumer` in `resource_group`. Writes
 * the allocation id (NUL-terminated) to id_out. Slots arrive later as "add"
 * events from egosf_poll. */
int egosf_request(egosf_t *s, const char *consumer, const char *resource_group, int min_slots,
		  int max_slots, char *id_out, int id_len);

/* Waits up to timeout_ms (0: just look) for the next event and writes it to
 * event_out as one line "add ALLOC_ID HOST SLOTS" (RESOURCE_ADD) or
 * "reclaim ALLOC_ID HOST SLOTS" (RESOURCE_RECLAIM), one host per event.
 * Returns 1 with an event, 0 without, negative on error. */
int egosf_poll(egosf_t *s, int timeout_ms, char *event_out, int event_len);

/* Gives one host of an allocation back (e.g. acknowledging a reclaim). */
int egosf_release_host(egosf_t *s, const char *alloc_id, const char *host);

/* Gives every host of an allocation back and frees it (ego_release + ego_allocfree). */
int egosf_release(egosf_t *s, const char *alloc_id);

/* ego_unregister + ego_close; frees s. */
int egosf_close(egosf_t *s);

/* The message of the last failure in this thread. */
const char *egosf_last_error(void);

#ifdef __cplusplus
}
#endif

#endif /* EGOSF_H */
