/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Fork semantics: ids, inherited heap/stack/globals, the parent continuing,
 * clones' writes staying in the clones, and every sf_* misuse answered with
 * a negative code. Prints "check <name> ok|FAIL ..." lines and "done <n>".
 *   semantics <clones> [mode] [seconds]   mode: basic (default) | sleep | trap | nested | kill
 * sleep: clones sleep `seconds` (default 3) before exiting, long enough for a
 * test to act on running clones; kill: clones sleep, the parent sf_kills them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sf.h"

static int counter = 41; /* a global the clones inherit */
static int failures = 0;

static void check(const char *name, int ok, long got)
{
	printf("check %s %s (%ld)\n", name, ok ? "ok" : "FAIL", got);
	if (!ok)
		failures++;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 2;
	const char *mode = argc > 2 ? argv[2] : "basic";
	int seconds = argc > 3 ? atoi(argv[3]) : 3;
	int stack_value = 1234;
	int *heap = malloc(1 << 20);
	for (int i = 0; i < (1 << 18); i++)
		heap[i] = i * 7;
	counter++;

	check("clone_id_parent", sf_clone_id() == 0, sf_clone_id());
	check("bad_ticket_size", sf_ticket_size(999) == SF_ENOTICKET, sf_ticket_size(999));
	check("bad_clone", sf_clone(999) == SF_ENOTICKET, sf_clone(999));
	check("bad_join", sf_join(999) == SF_ENOTICKET, sf_join(999));
	check("zero_ticket", sf_request_ticket(0) == SF_EINVAL, sf_request_ticket(0));
	check("ckpt_missing", sf_create_clones(77, 1) == SF_ENOCKPT, sf_create_clones(77, 1));

	int32_t t = sf_request_ticket(n);
	check("ticket", t > 0, t);
	int32_t m = sf_ticket_size(t);
	check("size", m >= 1 && m <= n, m);
	fflush(stdout);
	int32_t id = sf_clone(t);
	if (id > 0) {
		/* In a clone: everything the parent had at the fork is here. */
		int ok = heap[12345] == 12345 * 7 && stack_value == 1234 && counter == 42;
		printf("clone %d of %d inherited %s id=%d\n", id, m, ok ? "ok" : "FAIL",
		       sf_clone_id());
		heap[0] = -id; /* must not reach the parent */
		counter = 1000 + id;
		if (strcmp(mode, "sleep") == 0)
			sleep(seconds);
		if (strcmp(mode, "kill") == 0)
			sleep(3600);
		if (strcmp(mode, "trap") == 0 && id == 1)
			__builtin_trap();
		if (strcmp(mode, "nested") == 0 && id == 1) {
			int32_t t2 = sf_request_ticket(1);
			fflush(stdout);
			int32_t id2 = t2 > 0 ? sf_clone(t2) : t2;
			if (id2 > 0) {
				printf("grandchild inherited counter=%d\n", counter);
				fflush(stdout);
				sf_exit(0);
			}
			printf("nested join %d\n", t2 > 0 ? sf_join(t2) : t2);
		}
		printf("clone join %d\n", sf_join(t));
		FILE *f = fopen("/out/result.txt", "w");
		fprintf(f, "clone %d counter %d\n", id, counter);
		fclose(f);
		fflush(stdout);
		sf_exit(ok ? 0 : 3);
	}
	check("parent_id", id == 0, id);
	check("ticket_used", sf_clone(t) == SF_ETICKETUSED, sf_clone(t));
	check("parent_heap_kept", heap[0] == 0, heap[0]);
	check("parent_global_kept", counter == 42, counter);
	if (strcmp(mode, "kill") == 0)
		printf("kill %d\n", sf_kill(t));
	int32_t failed = sf_join(t);
	printf("join failed=%d\n", failed);
	int found = 0;
	for (int i = 1; i <= m; i++) {
		char path[64], line[64] = "";
		snprintf(path, sizeof path, "/out/clone-%d/result.txt", i);
		FILE *f = fopen(path, "r");
		if (f) {
			if (fgets(line, sizeof line, f))
				found++;
			fclose(f);
		}
	}
	printf("gathered %d\n", found);
	printf("done %d\n", failures);
	return failures == 0 ? (failed == 0 ? 0 : 10 + failed) : 1;
}
