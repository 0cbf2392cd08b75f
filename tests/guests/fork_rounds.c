/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Test guest: a parent that forks the same work twice. It fills <pages> pages with a pattern,
 * then <rounds> times forks <clones> clones that each read <pages> pages in one pseudo-random
 * order (no scan for read-ahead to follow) and check what they read. A clone prints
 * "round <r> clone <id> ok bad=<n>".
 *   fork_rounds <clones> <rounds> <pages>
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "sf.h"

#define PAGE 4096

int main(int argc, char **argv)
{
	if (argc != 4)
		return 2;
	int clones = atoi(argv[1]), rounds = atoi(argv[2]);
	size_t pages = (size_t)atoi(argv[3]);
	uint8_t *buf = malloc(pages * PAGE);
	if (buf == NULL)
		return 2;
	for (size_t p = 0; p < pages; p++)
		for (size_t i = 0; i < PAGE; i += 512)
			buf[p * PAGE + i] = (uint8_t)(p * 31 + i / 512 + 1);
	for (int r = 0; r < rounds; r++) {
		int32_t t = sf_request_ticket(clones);
		if (t < 0)
			return 3;
		fflush(stdout);
		int32_t id = sf_clone(t);
		if (id < 0)
			return 4;
		if (id > 0) {
			size_t bad = 0;
			uint32_t x = 2463534242u; /* xorshift32: the same random order in every clone */
			for (size_t k = 0; k < pages; k++) {
				x ^= x << 13;
				x ^= x >> 17;
				x ^= x << 5;
				size_t p = x % pages;
				for (size_t i = 0; i < PAGE; i += 512)
					bad += buf[p * PAGE + i] != (uint8_t)(p * 31 + i / 512 + 1);
			}
			printf("round %d clone %d ok bad=%zu\n", r, id, bad);
			fflush(stdout);
			sf_exit(0);
		}
		if (sf_join(t) != 0)
			return 5;
	}
	return 0;
}
