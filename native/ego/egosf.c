/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libegosf over EGO's vem.api.h: see egosf.h for the interface. This is the
 * only file that knows EGO's structures; built against the operator's EGO
 * SDK by scripts/build-libegosf.sh SDK_DIR (or, in tests, against the
 * stand-in in native/ego/standin/).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "egosf.h"
#include "vem.api.h"

#define EVENT_MAX 512

struct event {
	char line[EVENT_MAX];
	struct event *next;
};

struct egosf {
	EGO_HANDLE_T h;
	char client[128];
	/* One EGO message may name several hosts: they wait here as one event each. */
	struct event *head, *tail;
};

static __thread char last_error[512];

const char *egosf_last_error(void)
{
	return last_error;
}

int egosf_abi_version(void)
{
	return EGOSF_ABI_VERSION;
}

/* The one checker every EGO return code goes through. */
static int check(int rc, const char *operation)
{
	if (rc >= 0)
		return rc;
	int err = egoerrno;
	snprintf(last_error, sizeof last_error, "Cannot %s: %s (egoerrno %d)", operation,
		 err ? ego_strerror(err) : "unknown failure", err);
	return err > 0 ? -err : -1;
}

static int misuse(const char *operation, const char *why)
{
	snprintf(last_error, sizeof last_error, "Cannot %s: %s", operation, why);
	return -1;
}

egosf_t *egosf_open(const char *confdir, const char *user, const char *password,
		    const char *client)
{
	if (!confdir || !user || !password || !client || strlen(client) >= 128) {
		misuse("open EGO session", "missing confdir, user, password or client name");
		return NULL;
	}
	if (check(vem_initialize(), "initialize the EGO client") < 0)
		return NULL;
	ego_openreq_t open = { .confdir = (char *)confdir };
	EGO_HANDLE_T h = ego_open(&open);
	if (!h) {
		check(-1, "open EGO session");
		return NULL;
	}
	ego_logonreq_t logon = { .username = (char *)user, .password = (char *)password };
	ego_registerreq_t reg = { .clientName = (char *)client, .clientDesc = "Snowflock master" };
	ego_registerreply_t reply;
	if (check(ego_logon(h, &logon), "log on to EGO") < 0 ||
	    check(ego_register(h, &reg, &reply), "register with EGO") < 0) {
		ego_close(h);
		return NULL;
	}
	egosf_t *s = calloc(1, sizeof *s);
	if (!s) {
		ego_close(h);
		misuse("open EGO session", "out of memory");
		return NULL;
	}
	s->h = h;
	strcpy(s->client, client);
	return s;
}

int egosf_request(egosf_t *s, const char *consumer, const char *resource_group, int min_slots,
		  int max_slots, char *id_out, int id_len)
{
	if (!s || !consumer || !resource_group || !id_out || id_len < 2)
		return misuse("request EGO slots", "bad arguments");
	ego_allocreq_t req = {
		.name = "snowflock",
		.consumer = (char *)consumer,
		.resourceGroup = (char *)resource_group,
		.minslots = min_slots,
		.maxslots = max_slots,
	};
	char *id = NULL;
	int rc = check(ego_alloc(s->h, &req, &id), "request EGO slots");
	if (rc < 0)
		return rc;
	if ((int)strlen(id) >= id_len) {
		free(id);
		return misuse("request EGO slots", "allocation id longer than the buffer");
	}
	strcpy(id_out, id);
	free(id);
	return 0;
}

static int queue(egosf_t *s, const char *kind, const ego_allocreply_t *r)
{
	for (int i = 0; i < r->nhosts; i++) {
		struct event *e = calloc(1, sizeof *e);
		if (!e)
			return misuse("read EGO message", "out of memory");
		snprintf(e->line, EVENT_MAX, "%s %s %s %d", kind, r->allocId, r->hosts[i].name,
			 r->hosts[i].slots);
		if (s->tail)
			s->tail->next = e;
		else
			s->head = e;
		s->tail = e;
	}
	return 0;
}

int egosf_poll(egosf_t *s, int timeout_ms, char *event_out, int event_len)
{
	if (!s || !event_out || event_len < EVENT_MAX || timeout_ms < 0)
		return misuse("poll EGO", "bad arguments (event buffer needs 512 bytes)");
	if (!s->head) {
		struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };
		int ready = check(ego_select(s->h, &tv), "wait for EGO messages");
		if (ready < 0)
			return ready;
		for (int i = 0; i < ready; i++) {
			ego_msg_t *m = NULL;
			if (check(ego_read(s->h, &m), "read EGO message") < 0)
				return -1;
			int rc = 0;
			if (m->code == EGO_MSG_RESOURCE_ADD)
				rc = queue(s, "add", m->reply);
			else if (m->code == EGO_MSG_RESOURCE_RECLAIM)
				rc = queue(s, "reclaim", m->reply);
			ego_msgfree(m);
			if (rc < 0)
				return rc;
		}
	}
	if (!s->head)
		return 0;
	struct event *e = s->head;
	s->head = e->next;
	if (!s->head)
		s->tail = NULL;
	strcpy(event_out, e->line);
	free(e);
	return 1;
}

int egosf_release_host(egosf_t *s, const char *alloc_id, const char *host)
{
	if (!s || !alloc_id || !host)
		return misuse("release EGO host", "bad arguments");
	ego_hostslots_t hs = { .name = (char *)host };
	ego_releasereq_t req = { .allocId = (char *)alloc_id, .nhosts = 1, .hosts = &hs };
	return check(ego_release(s->h, &req), "release EGO host");
}

int egosf_release(egosf_t *s, const char *alloc_id)
{
	if (!s || !alloc_id)
		return misuse("release EGO allocation", "bad arguments");
	ego_releasereq_t req = { .allocId = (char *)alloc_id, .nhosts = 0 };
	int rc = check(ego_release(s->h, &req), "release EGO allocation");
	if (rc < 0)
		return rc;
	return check(ego_allocfree(s->h, (char *)alloc_id), "free EGO allocation");
}

int egosf_close(egosf_t *s)
{
	if (!s)
		return misuse("close EGO session", "no session");
	ego_unregisterreq_t req = { .clientName = s->client };
	int rc = check(ego_unregister(s->h, &req), "unregister from EGO");
	int rc2 = check(ego_close(s->h), "close EGO session");
	while (s->head) {
		struct event *e = s->head;
		s->head = e->next;
		free(e);
	}
	free(s);
	return rc < 0 ? rc : rc2;
}
