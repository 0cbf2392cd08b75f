/*
 * Memory-on-demand check: the parent fills DATA pages with a pattern of its
 * seed, keeps ZERO pages zero and a HINT buffer non-zero, forks, then at once
 * overwrites everything (copy-on-write must keep the clone-time contents).
 * Each clone hints the HINT buffer, overwrites it, optionally sleeps, then
 * reads every DATA and ZERO page in a random order and checks it.
 *
 * usage: memory_check <clones> <data_pages> <zero_pages> <hint_pages> <seed> [sleep_s]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "sf.h"

#define PAGE 4096

static uint32_t pattern(uint32_t seed, uint32_t page, uint32_t word)
{
	uint32_t x = seed * 2654435761u ^ page * 40503u ^ word * 2246822519u;
	x ^= x >> 15;
	x *= 2246822519u;
	return x ^ (x >> 13);
}

static uint8_t *page_aligned(size_t pages)
{
	uint8_t *p = malloc((pages + 1) * PAGE);
	if (p == NULL)
		exit(2);
	return (uint8_t *)(((uintptr_t)p + PAGE - 1) & ~(uintptr_t)(PAGE - 1));
}

int main(int argc, char **argv)
{
	if (argc < 6)
		return 2;
	int32_t clones = atoi(argv[1]);
	uint32_t data_pages = (uint32_t)atoi(argv[2]);
	uint32_t zero_pages = (uint32_t)atoi(argv[3]);
	uint32_t hint_pages = (uint32_t)atoi(argv[4]);
	uint32_t seed = (uint32_t)atoi(argv[5]);
	int sleep_s = argc > 6 ? atoi(argv[6]) : 0;

	uint32_t *data = (uint32_t *)page_aligned(data_pages);
	uint8_t *zero = page_aligned(zero_pages);
	uint8_t *hint = page_aligned(hint_pages);
	memset(zero, 0, (size_t)zero_pages * PAGE);
	memset(hint, 0xab, (size_t)hint_pages * PAGE);
	for (uint32_t p = 0; p < data_pages; p++)
		for (uint32_t w = 0; w < PAGE / 4; w++)
			data[p * (PAGE / 4) + w] = pattern(seed, p, w);

	int32_t t = sf_request_ticket(clones);
	fflush(stdout);
	int32_t id = sf_clone(t);
	if (id < 0) {
		printf("clone failed %d\n", id);
		return 1;
	}
	if (id == 0) {
		/* The parent keeps writing: clones must still see clone-time bytes. */
		for (uint32_t p = 0; p < data_pages; p++)
			for (uint32_t w = 0; w < PAGE / 4; w += 97)
				data[p * (PAGE / 4) + w] = ~pattern(seed, p, w);
		memset(hint, 0xcd, (size_t)hint_pages * PAGE);
		printf("join %d\n", sf_join(t));
		return 0;
	}
	sf_hint_overwrite(hint, hint_pages * PAGE);
	memset(hint, id, (size_t)hint_pages * PAGE);
	if (sleep_s > 0)
		sleep(sleep_s);
	uint32_t bad = 0, x = seed ^ (uint32_t)id;
	for (uint32_t i = 0; i < data_pages; i++) {
		x = x * 1664525u + 1013904223u;
		uint32_t p = x % data_pages;
		for (uint32_t w = 0; w < PAGE / 4; w++)
			if (data[p * (PAGE / 4) + w] != pattern(seed, p, w))
				bad++;
	}
	for (uint32_t i = 0; i < (size_t)zero_pages * PAGE; i++)
		if (zero[i] != 0)
			bad++;
	for (uint32_t i = 0; i < (size_t)hint_pages * PAGE; i++)
		if (hint[i] != (uint8_t)id)
			bad++;
	printf("clone %d checked %s bad=%u\n", id, bad == 0 ? "ok" : "FAIL", bad);
	fflush(stdout);
	sf_exit(bad == 0 ? 0 : 3);
}
