/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * STAND-IN for Platform EGO's client API header, vem.api.h.
 *
 * This is NOT IBM's header. EGO is proprietary and cannot be installed on the
 * machines that build and test Snowflock, so this file declares the subset of
 * the API that libegosf (native/ego/egosf.c) calls, with the names that EGO's
 * documentation and public users of the API use: vem_initialize, ego_open,
 * ego_logon, ego_register, ego_alloc, ego_select, ego_read, ego_release,
 * ego_allocfree, ego_unregister, ego_close, egoerrno, ego_strerror, and the
 * request/reply structures ego_registerreq_t, ego_allocreq_t,
 * ego_allocreply_t, ego_releasereq_t. Field sets and exact signatures are our
 * reconstruction and were not checked against the real header: building
 * libegosf against a real EGO SDK may need small edits in egosf.c (only
 * there; nothing else sees EGO's types).
 *
 * The stand-in library (vem_standin.c) simulates one EGO master in-process:
 * see that file for the behaviour and the conf dir it reads.
 */
#ifndef VEM_API_H
#define VEM_API_H

#include <sys/time.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Error numbers (egoerrno). */
#define EGOE_NO_ERR 0
#define EGOE_BAD_ARG 1        /* bad argument */
#define EGOE_NO_MEM 2         /* out of memory */
#define EGOE_CONN 3           /* cannot connect to the EGO master */
#define EGOE_AUTH 4           /* logon failed: bad user or password */
#define EGOE_NOT_LOGGED_ON 5  /* operation needs ego_logon first */
#define EGOE_NOT_REGISTERED 6 /* operation needs ego_register first */
#define EGOE_BAD_CONSUMER 7   /* unknown consumer */
#define EGOE_BAD_RG 8         /* unknown resource group */
#define EGOE_BAD_ALLOC 9      /* unknown allocation id */
#define EGOE_NO_MSG 10        /* ego_read with nothing to read */
#define EGOE_BAD_HANDLE 11    /* closed or invalid handle */

extern int egoerrno;
char *ego_strerror(int errnum);

typedef struct ego_handle *EGO_HANDLE_T;

/* Flags of ego_registerreq_t. */
#define EGO_REG_RECOVER 0x1 /* keep allocations of a previous registration */

typedef struct ego_openreq {
	char *confdir; /* the directory holding ego.conf (EGO_CONFDIR) */
} ego_openreq_t;

typedef struct ego_logonreq {
	char *username;
	char *password;
} ego_logonreq_t;

typedef struct ego_registerreq {
	char *clientName;
	char *clientDesc;
	int flags;
} ego_registerreq_t;

typedef struct ego_registerreply {
	int nallocs; /* allocations recovered (EGO_REG_RECOVER) */
} ego_registerreply_t;

typedef struct ego_allocreq {
	char *name;          /* a label for the allocation */
	char *consumer;      /* e.g. "/SnowFlock" */
	char *resourceGroup; /* e.g. "ComputeHosts" */
	char *resreq;        /* resource requirement string, may be NULL */
	int minslots;        /* the allocation is granted only once this many are free */
	int maxslots;        /* never more than this many */
	int flags;
} ego_allocreq_t;

typedef struct ego_hostslots {
	char *name;       /* host name */
	char *schedDecID; /* the scheduler's decision id for this host */
	int slots;
} ego_hostslots_t;

/* The body of RESOURCE_ADD and RESOURCE_RECLAIM messages. */
typedef struct ego_allocreply {
	char *allocId;
	char *consumer;
	int nhosts;
	ego_hostslots_t *hosts;
} ego_allocreply_t;

typedef enum ego_msgcode {
	EGO_MSG_NONE = 0,
	EGO_MSG_RESOURCE_ADD = 1,     /* hosts/slots added to an allocation */
	EGO_MSG_RESOURCE_RECLAIM = 2, /* hosts/slots the master takes back */
} ego_msgcode_t;

typedef struct ego_msg {
	ego_msgcode_t code;
	ego_allocreply_t *reply;
} ego_msg_t;

typedef struct ego_releasereq {
	char *allocId;
	int nhosts;             /* 0: every host of the allocation */
	ego_hostslots_t *hosts; /* hosts (and slots) to give back */
} ego_releasereq_t;

typedef struct ego_unregisterreq {
	char *clientName;
	int flags;
} ego_unregisterreq_t;

int vem_initialize(void);
EGO_HANDLE_T ego_open(ego_openreq_t *req);
int ego_logon(EGO_HANDLE_T h, ego_logonreq_t *req);
int ego_register(EGO_HANDLE_T h, ego_registerreq_t *req, ego_registerreply_t *reply);
/* Queues an allocation request; the id is malloc'ed (free with free()). Slots
 * arrive later as RESOURCE_ADD messages, possibly fewer than maxslots and in
 * several messages. */
int ego_alloc(EGO_HANDLE_T h, ego_allocreq_t *req, char **allocId);
/* Waits up to timeout (NULL: forever) for messages; returns how many are
 * ready, 0 on timeout, -1 on error. */
int ego_select(EGO_HANDLE_T h, struct timeval *timeout);
/* Takes the next message; free it with ego_msgfree(). */
int ego_read(EGO_HANDLE_T h, ego_msg_t **msg);
void ego_msgfree(ego_msg_t *msg);
int ego_release(EGO_HANDLE_T h, ego_releasereq_t *req);
int ego_allocfree(EGO_HANDLE_T h, char *allocId);
int ego_unregister(EGO_HANDLE_T h, ego_unregisterreq_t *req);
int ego_close(EGO_HANDLE_T h);

#ifdef __cplusplus
}
#endif

#endif /* VEM_API_H */
