/*
 * Benchmark guest for the avoidance heuristics (lib/memory/heuristics.ts):
 * before it forks, the parent's memory holds every kind of page a clone need
 * not fetch, and the clones use each kind the way a real program would.
 *
 * The parent
 *  - reads its input into a staging buffer, builds the records (the working
 *    set, never zero) from it and frees the staging buffer: free dlmalloc
 *    chunks, which a clone's malloc hands out again ("free");
 *  - reserves a scratch arena for the clones and never writes it ("untouched");
 *  - callocs a table of counters that each clone fills ("zero");
 *  - keeps a result buffer, marked "not computed" (all ones), that each clone
 *    overwrites completely after announcing it with sf_hint_overwrite
 *    ("hinted").
 * Each clone reads every record, works through the arena, the counters and a
 * buffer it mallocs, writes the results, and publishes their checksum in
 * /out/sum and on stdout. After the join the parent redoes each clone's work
 * on its own memory and checks the checksums: exit 1 on a mismatch.
 *
 * usage: avoidance <clones> <mib>   (<mib>: size of the records; the staging
 *                                    buffer and the arena are twice that)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sf.h"

struct job {
	const uint32_t *records;
	size_t records_n;
	uint32_t *arena; /* scratch, written before it is read */
	size_t arena_n;
	uint32_t *counts; /* zero when a worker starts */
	size_t counts_n;
	uint32_t *results; /* overwritten completely by a worker */
	size_t results_n;
	size_t temp_n; /* words of the buffer a worker mallocs */
};

static uint32_t mix(uint32_t x)
{
	x ^= x >> 16;
	x *= 0x7feb352du;
	x ^= x >> 15;
	x *= 0x846ca68bu;
	x ^= x >> 16;
	return x;
}

/* Worker `id`'s share of the job; returns the checksum of its results. */
static uint64_t work(const struct job *j, uint32_t id)
{
	for (size_t i = 0; i < j->arena_n; i++)
		j->arena[i] = mix(j->records[i % j->records_n] ^ id * 0x9e3779b9u ^ (uint32_t)i);
	for (size_t i = 0; i < j->arena_n; i++)
		j->counts[j->arena[i] % j->counts_n]++;
	uint32_t *temp = malloc(j->temp_n * sizeof *temp);
	if (temp == NULL)
		abort();
	for (size_t k = 0; k < j->temp_n; k++)
		temp[k] = j->arena[k % j->arena_n] + j->counts[k % j->counts_n];
	for (size_t r = 0; r < j->results_n; r++) {
		uint32_t x = 0;
		for (size_t k = r; k < j->temp_n; k += j->results_n)
			x ^= temp[k] * (uint32_t)(k | 1);
		j->results[r] = x;
	}
	free(temp);
	uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a over the result words */
	for (size_t r = 0; r < j->results_n; r++) {
		h ^= j->results[r];
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* Builds the records from input staged in `staging` (2n words), then frees it. */
static void load_records(uint32_t *records, size_t n, uint32_t *staging)
{
	uint32_t s = 0x2545f491u; /* xorshift32: the "input" */
	for (size_t i = 0; i < 2 * n; i++) {
		s ^= s << 13;
		s ^= s >> 17;
		s ^= s << 5;
		staging[i] = s;
	}
	for (size_t i = 0; i < n; i++)
		records[i] = mix(staging[2 * i] ^ staging[2 * i + 1]) | 1;
	free(staging);
}

static int check_clone(const struct job *j, int32_t id)
{
	char path[64], text[32] = "";
	snprintf(path, sizeof path, "/out/clone-%d/sum", id);
	FILE *f = fopen(path, "r");
	if (f == NULL || fgets(text, sizeof text, f) == NULL) {
		printf("clone %d: cannot read %s\n", id, path);
		return 1;
	}
	fclose(f);
	memset(j->counts, 0, j->counts_n * sizeof *j->counts);
	char want[32];
	snprintf(want, sizeof want, "%016llx\n", (unsigned long long)work(j, (uint32_t)id));
	int ok = strcmp(text, want) == 0;
	printf("clone %d sum %.16s %s\n", id, text, ok ? "ok" : "MISMATCH");
	return !ok;
}

int main(int argc, char **argv)
{
	if (argc != 3)
		return 2;
	int32_t clones = atoi(argv[1]);
	size_t n = (size_t)atoi(argv[2]) << 18; /* 4-byte words per MiB */
	/* Everything is allocated before the staging buffer is freed, so its
	 * chunk stays free until a clone mallocs its temporary buffer. */
	uint32_t *staging = malloc(2 * n * sizeof(uint32_t));
	uint32_t *records = malloc(n * sizeof(uint32_t));
	struct job j = {
		.records = records,
		.records_n = n,
		.temp_n = 3 * n / 2, /* fits in the freed staging chunk */
	};
	j.counts = calloc(n / 2, sizeof(uint32_t));
	j.counts_n = n / 2;
	j.results = malloc(n / 2 * sizeof(uint32_t));
	j.results_n = n / 2;
	j.arena = malloc(2 * n * sizeof(uint32_t));
	j.arena_n = 2 * n;
	if (n == 0 || staging == NULL || records == NULL || j.counts == NULL ||
	    j.results == NULL || j.arena == NULL)
		return 2;
	load_records(records, n, staging);
	memset(j.results, 0xff, j.results_n * sizeof *j.results);

	int32_t t = sf_request_ticket(clones);
	int32_t m = t < 0 ? t : sf_ticket_size(t);
	if (m < 1) {
		printf("cannot get clones: %s\n", sf_strerror(m));
		return 1;
	}
	fflush(stdout);
	int32_t id = sf_clone(t);
	if (id < 0) {
		printf("cannot clone: %s\n", sf_strerror(id));
		return 1;
	}
	if (id > 0) {
		sf_hint_overwrite(j.results, (uint32_t)(j.results_n * sizeof *j.results));
		uint64_t sum = work(&j, (uint32_t)id);
		FILE *f = fopen("/out/sum", "w");
		if (f == NULL || fprintf(f, "%016llx\n", (unsigned long long)sum) < 0 || fclose(f) != 0)
			sf_exit(1);
		printf("clone %d sum %016llx\n", id, (unsigned long long)sum);
		fflush(stdout);
		sf_exit(0);
	}
	int32_t failed = sf_join(t);
	if (failed != 0) {
		printf("join failed=%d\n", failed);
		return 1;
	}
	int bad = 0;
	for (int32_t c = 1; c <= m; c++)
		bad += check_clone(&j, c);
	printf("checked %d clones, %d bad\n", m, bad);
	return bad == 0 ? 0 : 1;
}
