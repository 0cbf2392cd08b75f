/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * STAND-IN for Platform EGO's client library (libvem), for Snowflock's tests
 * only. It is not EGO and shares no code with it: it simulates one EGO master
 * per handle, in-process, behaving as EGO's documentation and public users of
 * vem.api.h describe the client side:
 *
 *   - ego_open fails with EGOE_CONN when the master cannot be reached (here:
 *     the conf dir has no standin.conf); ego_logon checks user/password
 *     (EGOE_AUTH); ego_register needs a logon, ego_alloc a registration.
 *   - ego_alloc only queues the request and returns an allocation id; slots
 *     arrive asynchronously as RESOURCE_ADD messages (after `delay_ms`, a
 *     few hosts per message), as many as are free up to maxslots and only
 *     once minslots are free; an allocation below maxslots keeps growing as
 *     slots are released (a partial grant can grow later).
 *   - A host listed in the file CONFDIR/reclaim (one name a line; the file is
 *     consumed) is taken back: every allocation holding it gets a
 *     RESOURCE_RECLAIM message and the host leaves the pool.
 *   - ego_release gives hosts back (all when nhosts is 0); ego_allocfree ends
 *     the allocation; ego_unregister ends all of the client's allocations.
 *   - Every failure sets egoerrno; ego_strerror names it.
 *
 * CONFDIR/standin.conf, one directive a line:
 *   user NAME PASSWORD      accepted logon (several allowed)
 *   consumer PATH           known consumer (several allowed)
 *   resourcegroup NAME      known resource group (several allowed)
 *   host NAME SLOTS         a host of the resource group and its slots
 *   delay_ms N              delay before an allocation's first RESOURCE_ADD (default 20)
 *   hosts_per_msg N         hosts per RESOURCE_ADD message (default 1)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vem.api.h"

#define MAX_ITEMS 64
#define NAME_LEN 128

int egoerrno;

struct host {
	char name[NAME_LEN];
	int slots;
	int used;
	int gone; /* reclaimed: no longer in the pool */
};

struct alloc {
	char id[32];
	char consumer[NAME_LEN];
	int min, max, have;
	int active;
	long long ready_at_ms;
	int held[MAX_ITEMS]; /* slots per host index */
};

struct msgq {
	ego_msg_t *items[1024];
	int head, tail;
};

struct ego_handle {
	char confdir[512];
	char users[MAX_ITEMS][2][NAME_LEN];
	int nusers;
	char consumers[MAX_ITEMS][NAME_LEN];
	int nconsumers;
	char groups[MAX_ITEMS][NAME_LEN];
	int ngroups;
	struct host hosts[MAX_ITEMS];
	int nhosts;
	int delay_ms, hosts_per_msg;
	int logged_on, registered, closed;
	struct alloc allocs[MAX_ITEMS];
	int nallocs;
	int next_id;
	struct msgq q;
};

static int fail(int err)
{
	egoerrno = err;
	return -1;
}

char *ego_strerror(int errnum)
{
	switch (errnum) {
	case EGOE_NO_ERR: return "No error";
	case EGOE_BAD_ARG: return "Bad argument";
	case EGOE_NO_MEM: return "Out of memory";
	case EGOE_CONN: return "Cannot connect to the EGO master";
	case EGOE_AUTH: return "Authentication failed: bad user name or password";
	case EGOE_NOT_LOGGED_ON: return "Not logged on";
	case EGOE_NOT_REGISTERED: return "Client not registered";
	case EGOE_BAD_CONSUMER: return "Unknown consumer";
	case EGOE_BAD_RG: return "Unknown resource group";
	case EGOE_BAD_ALLOC: return "Unknown allocation";
	case EGOE_NO_MSG: return "No message to read";
	case EGOE_BAD_HANDLE: return "Bad handle";
	default: return "Unknown error";
	}
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int vem_initialize(void)
{
	egoerrno = EGOE_NO_ERR;
	return 0;
}

static int load_conf(struct ego_handle *h)
{
	char path[600], line[512], a[NAME_LEN], b[NAME_LEN], c[NAME_LEN];
	snprintf(path, sizeof path, "%s/standin.conf", h->confdir);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	h->delay_ms = 20;
	h->hosts_per_msg = 1;
	while (fgets(line, sizeof line, f)) {
		int n = sscanf(line, "%127s %127s %127s", a, b, c);
		if (n == 3 && strcmp(a, "user") == 0 && h->nusers < MAX_ITEMS) {
			strcpy(h->users[h->nusers][0], b);
			strcpy(h->users[h->nusers++][1], c);
		} else if (n == 2 && strcmp(a, "consumer") == 0 && h->nconsumers < MAX_ITEMS) {
			strcpy(h->consumers[h->nconsumers++], b);
		} else if (n == 2 && strcmp(a, "resourcegroup") == 0 && h->ngroups < MAX_ITEMS) {
			strcpy(h->groups[h->ngroups++], b);
		} else if (n == 3 && strcmp(a, "host") == 0 && h->nhosts < MAX_ITEMS) {
			strcpy(h->hosts[h->nhosts].name, b);
			h->hosts[h->nhosts++].slots = atoi(c);
		} else if (n == 2 && strcmp(a, "delay_ms") == 0) {
			h->delay_ms = atoi(b);
		} else if (n == 2 && strcmp(a, "hosts_per_msg") == 0) {
			h->hosts_per_msg = atoi(b) > 0 ? atoi(b) : 1;
		}
	}
	fclose(f);
	return 0;
}

EGO_HANDLE_T ego_open(ego_openreq_t *req)
{
	if (!req || !req->confdir || strlen(req->confdir) >= 512) {
		fail(EGOE_BAD_ARG);
		return NULL;
	}
	struct ego_handle *h = calloc(1, sizeof *h);
	if (!h) {
		fail(EGOE_NO_MEM);
		return NULL;
	}
	strcpy(h->confdir, req->confdir);
	if (load_conf(h) != 0) {
		free(h);
		fail(EGOE_CONN);
		return NULL;
	}
	return h;
}

static int in_list(char list[][NAME_LEN], int n, const char *s)
{
	for (int i = 0; i < n; i++)
		if (strcmp(list[i], s) == 0)
			return 1;
	return 0;
}

int ego_logon(EGO_HANDLE_T h, ego_logonreq_t *req)
{
	if (!h || h->closed)
		return fail(EGOE_BAD_HANDLE);
	if (!req || !req->username || !req->password)
		return fail(EGOE_BAD_ARG);
	for (int i = 0; i < h->nusers; i++) {
		if (strcmp(h->users[i][0], req->username) == 0 &&
		    strcmp(h->users[i][1], req->password) == 0) {
			h->logged_on = 1;
			return 0;
		}
	}
	return fail(EGOE_AUTH);
}

int ego_register(EGO_HANDLE_T h, ego_registerreq_t *req, ego_registerreply_t *reply)
{
	if (!h || h->closed)
		return fail(EGOE_BAD_HANDLE);
	if (!req || !req->clientName)
		return fail(EGOE_BAD_ARG);
	if (!h->logged_on)
		return fail(EGOE_NOT_LOGGED_ON);
	h->registered = 1;
	if (reply)
		reply->nallocs = 0; /* one process, one master: nothing to recover */
	return 0;
}

static struct alloc *find_alloc(EGO_HANDLE_T h, const char *id)
{
	for (int i = 0; i < h->nallocs; i++)
		if (h->allocs[i].active && strcmp(h->allocs[i].id, id) == 0)
			return &h->allocs[i];
	return NULL;
}

int ego_alloc(EGO_HANDLE_T h, ego_allocreq_t *req, char **allocId)
{
	if (!h || h->closed)
		return fail(EGOE_BAD_HANDLE);
	if (!req || !allocId || !req->consumer || !req->resourceGroup || req->maxslots < 1 ||
	    req->minslots < 0 || req->minslots > req->maxslots)
		return fail(EGOE_BAD_ARG);
	if (!h->registered)
		return fail(EGOE_NOT_REGISTERED);
	if (!in_list(h->consumers, h->nconsumers, req->consumer))
		return fail(EGOE_BAD_CONSUMER);
	if (!in_list(h->groups, h->ngroups, req->resourceGroup))
		return fail(EGOE_BAD_RG);
	if (h->nallocs == MAX_ITEMS)
		return fail(EGOE_NO_MEM);
	struct alloc *a = &h->allocs[h->nallocs++];
	memset(a, 0, sizeof *a);
	snprintf(a->id, sizeof a->id, "alloc-%d", ++h->next_id);
	snprintf(a->consumer, sizeof a->consumer, "%s", req->consumer);
	a->min = req->minslots > 0 ? req->minslots : 1;
	a->max = req->maxslots;
	a->active = 1;
	a->ready_at_ms = now_ms() + h->delay_ms;
	*allocId = strdup(a->id);
	if (!*allocId)
		return fail(EGOE_NO_MEM);
	return 0;
}

static void push(EGO_HANDLE_T h, ego_msgcode_t code, struct alloc *a, int *hostIdx, int *slots,
		 int n)
{
	ego_msg_t *m = calloc(1, sizeof *m);
	ego_allocreply_t *r = calloc(1, sizeof *r);
	r->allocId = strdup(a->id);
	r->consumer = strdup(a->consumer);
	r->nhosts = n;
	r->hosts = calloc(n, sizeof *r->hosts);
	for (int i = 0; i < n; i++) {
		char dec[64];
		snprintf(dec, sizeof dec, "%s:%d", a->id, hostIdx[i]);
		r->hosts[i].name = strdup(h->hosts[hostIdx[i]].name);
		r->hosts[i].schedDecID = strdup(dec);
		r->hosts[i].slots = slots[i];
	}
	m->code = code;
	m->reply = r;
	h->q.items[h->q.tail++ % 1024] = m;
}

static void reclaim_hosts(EGO_HANDLE_T h)
{
	char path[600], name[NAME_LEN];
	snprintf(path, sizeof path, "%s/reclaim", h->confdir);
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	while (fscanf(f, "%127s", name) == 1) {
		for (int i = 0; i < h->nhosts; i++) {
			if (strcmp(h->hosts[i].name, name) != 0 || h->hosts[i].gone)
				continue;
			h->hosts[i].gone = 1;
			for (int j = 0; j < h->nallocs; j++) {
				struct alloc *a = &h->allocs[j];
				if (!a->active || a->held[i] == 0)
					continue;
				int idx = i, slots = a->held[i];
				push(h, EGO_MSG_RESOURCE_RECLAIM, a, &idx, &slots, 1);
				a->have -= a->held[i];
				h->hosts[i].used -= a->held[i];
				a->held[i] = 0;
			}
		}
	}
	fclose(f);
	unlink(path);
}

/* Grants free slots to allocations that are due, oldest first. */
static void schedule(EGO_HANDLE_T h)
{
	long long now = now_ms();
	for (int j = 0; j < h->nallocs; j++) {
		struct alloc *a = &h->allocs[j];
		if (!a->active || a->have >= a->max || now < a->ready_at_ms)
			continue;
		int free_total = 0;
		for (int i = 0; i < h->nhosts; i++)
			if (!h->hosts[i].gone)
				free_total += h->hosts[i].slots - h->hosts[i].used;
		if (free_total == 0 || (a->have == 0 && free_total < a->min))
			continue;
		int idx[MAX_ITEMS], slots[MAX_ITEMS], n = 0;
		for (int i = 0; i < h->nhosts && a->have < a->max; i++) {
			struct host *ho = &h->hosts[i];
			int take = ho->slots - ho->used;
			if (ho->gone || take <= 0)
				continue;
			if (take > a->max - a->have)
				take = a->max - a->have;
			ho->used += take;
			a->held[i] += take;
			a->have += take;
			idx[n] = i;
			slots[n++] = take;
			if (n == h->hosts_per_msg) {
				push(h, EGO_MSG_RESOURCE_ADD, a, idx, slots, n);
				n = 0;
			}
		}
		if (n > 0)
			push(h, EGO_MSG_RESOURCE_ADD, a, idx, slots, n);
	}
}

int ego_select(EGO_HANDLE_T h, struct timeval *timeout)
{
	if (!h || h->closed)
		return fail(EGOE_BAD_HANDLE);
	long long deadline = timeout ? now_ms() + timeout->tv_sec * 1000LL + timeout->tv_usec / 1000
				     : -1;
	for (;;) {
		reclaim_hosts(h);
		schedule(h);
		int ready = h->q.tail - h->q.head;
		if (ready > 0)
			return ready;
		if (deadline >= 0 && now_ms() >= deadline)
			return 0;
		usleep(5000);
	}
}

int ego_read(EGO_HANDLE_T h, ego_msg_t **msg)
{
	if (!h || h->closed)
		return fail(EGOE_BAD_HANDLE);
	if (!msg)
		return fail(EGOE_BAD_ARG);
	if (h->q.tail == h->q.head)
		return fail(EGOE_NO_MSG);
	*msg = h->q.items[h->q.head++ % 1024];
	return 0;
}

void ego_msgfree(ego_msg_t *msg)
{
	if (!msg)
		return;
	ego_allocreply_t *r = msg->reply;
	if (r) {
		for (int i = 0; i < r->nhosts; i++) {
			free(r->hosts[i].name);
			free(r->hosts[i].schedDecID);
		}
		free(r->hosts);
		free(r->allocId);
		free(r->consumer);
		free(r);
	}
	free(msg);
}

static void give_back(EGO_HANDLE_T h, struct alloc *a, int i)
{
	if (!h->hosts[i].gone)
		h->hosts[i].used -= a->held[i];
	a->have -= a->held[i];
	a->held[i] = 0;
}

int ego_release(EGO_HANDLE_T h, ego_releasereq_t *req)
{
	if (!h || h->closed)
		return fail(EGOE_BAD_HANDLE);
	if (!req || !req->allocId || req->nhosts < 0 || (req->nhosts > 0 && !req->hosts))
		return fail(EGOE_BAD_ARG);
	struct alloc *a = find_alloc(h, req->allocId);
	if (!a)
		return fail(EGOE_BAD_ALLOC);
	for (int i = 0; i < h->nhosts; i++) {
		int listed = req->nhosts == 0;
		for (int k = 0; k < req->nhosts; k++)
			if (req->hosts[k].name && strcmp(req->hosts[k].name, h->hosts[i].name) == 0)
				listed = 1;
		if (listed)
			give_back(h, a, i);
	}
	if (req->nhosts == 0)
		a->max = a->have; /* everything returned: the allocation stops growing */
	return 0;
}

int ego_allocfree(EGO_HANDLE_T h, char *allocId)
{
	if (!h || h->closed)
		return fail(EGOE_BAD_HANDLE);
	if (!allocId)
		return fail(EGOE_BAD_ARG);
	struct alloc *a = find_alloc(h, allocId);
	if (!a)
		return fail(EGOE_BAD_ALLOC);
	for (int i = 0; i < h->nhosts; i++)
		give_back(h, a, i);
	a->active = 0;
	return 0;
}

int ego_unregister(EGO_HANDLE_T h, ego_unregisterreq_t *req)
{
	if (!h || h->closed)
		return fail(EGOE_BAD_HANDLE);
	if (!req || !req->clientName)
		return fail(EGOE_BAD_ARG);
	if (!h->registered)
		return fail(EGOE_NOT_REGISTERED);
	for (int j = 0; j < h->nallocs; j++)
		if (h->allocs[j].active)
			ego_allocfree(h, h->allocs[j].id);
	h->registered = 0;
	return 0;
}

int ego_close(EGO_HANDLE_T h)
{
	if (!h || h->closed)
		return fail(EGOE_BAD_HANDLE);
	while (h->q.head != h->q.tail)
		ego_msgfree(h->q.items[h->q.head++ % 1024]);
	h->closed = 1;
	free(h);
	return 0;
}
