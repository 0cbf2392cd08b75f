/*
 * Snowflock guest API for a Linux PV guest on Xen: the sf_* calls of
 * SnowFlock, carried to the dom0 agent through XenStore (as SnowFlock did).
 *
 * Channel (all paths relative to the guest's home, /local/domain/<domid>/):
 *   data/snowflock/request   the guest writes "<seq> <op> [<arg>]"
 *   data/snowflock/reply     the agent writes "<seq> <rc> [<value>]"
 *   data/snowflock/clone-id  the agent writes the clone's id before a clone runs
 * <seq> is a decimal number unique per call; <op> is one of ticket, clone,
 * join, kill, exit, checkpoint; <rc> is 0 or a negative SF_E* code. Relative
 * paths keep working after a restore into a new domain: the clone reads its
 * own home, not its parent's.
 * Errors are negative codes, never crashes.
 */
#ifndef SNOWFLOCK_XEN_SF_H
#define SNOWFLOCK_XEN_SF_H
#include <stdint.h>

#define SF_OK 0
#define SF_EINVAL -22   /* malformed call or argument */
#define SF_EIO -5       /* XenStore unreachable (no /dev/xen/xenbus) */
#define SF_ETIMEDOUT -110 /* the agent did not answer */
#define SF_ENOSLOTS -28 /* the allocator granted nothing */
#define SF_ENOTICKET -2 /* unknown ticket */
#define SF_ECLONE -3    /* the clones could not be made */

/* Asks for up to n clones; on success writes the ticket id (NUL-terminated) to
 * ticket[size] and returns the granted count m >= 1. */
int sf_request_ticket(int n, char *ticket, int size);
/* 0 in the parent, 1..m in the clones (like fork), or a negative code. */
int sf_clone(const char *ticket);
/* Blocks the parent until every clone exited or failed; 0 or a negative code. */
int sf_join(const char *ticket);
/* Ends every clone of the ticket. */
int sf_kill(const char *ticket);
/* Ends this clone with `code` (the agent destroys the domain). */
int sf_exit(int code);
/* This VM's clone id (0 in a parent), read from XenStore. */
int sf_clone_id(void);
/* This domain's id, read from XenStore ("domid" in its home). */
int sf_domid(void);

/* XenStore primitives over /dev/xen/xenbus (exposed for the command and tests). */
int sf_xs_read(const char *path, char *value, int size);
int sf_xs_write(const char *path, const char *value);
/* One call: write the request, wait for the reply with the same seq. timeout_ms < 0: forever. */
int sf_call(const char *op, const char *arg, char *value, int size, int timeout_ms);
#endif
