/*
 * Free-chunk check: the parent mallocs <blocks> blocks of <kib> KiB, fills each
 * with a pattern, frees every odd one (each freed block lies between two blocks
 * still in use, so it stays a free chunk: not merged into the top, not trimmed)
 * and forks. Each clone checks the blocks still in use, then mallocs the freed
 * space again (those pages arrive as zero pages if the free-chunk heuristic
 * avoided them), fills and checks it, and frees it.
 *
 * usage: free_chunks <clones> <blocks> <kib>
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include "sf.h"

static uint32_t pattern(uint32_t block, uint32_t word)
{
	uint32_t x = block * 2654435761u ^ word * 2246822519u;
	x ^= x >> 15;
	return x | 1;
}

static void fill(uint32_t *p, size_t words, uint32_t block)
{
	for (size_t w = 0; w < words; w++)
		p[w] = pattern(block, (uint32_t)w);
}

static uint32_t bad_words(const uint32_t *p, size_t words, uint32_t block)
{
	uint32_t bad = 0;
	for (size_t w = 0; w < words; w++)
		if (p[w] != pattern(block, (uint32_t)w))
			bad++;
	return bad;
}

int main(int argc, char **argv)
{
	if (argc != 4)
		return 2;
	int32_t clones = atoi(argv[1]);
	uint32_t blocks = (uint32_t)atoi(argv[2]);
	size_t words = (size_t)atoi(argv[3]) * 1024 / 4;
	uint32_t **block = calloc(blocks, sizeof *block);
	if (block == NULL)
		return 2;
	for (uint32_t b = 0; b < blocks; b++) {
		block[b] = malloc(words * 4);
		if (block[b] == NULL)
			return 2;
		fill(block[b], words, b);
	}
	for (uint32_t b = 1; b < blocks; b += 2) {
		free(block[b]);
		block[b] = NULL;
	}

	int32_t t = sf_request_ticket(clones);
	fflush(stdout);
	int32_t id = sf_clone(t);
	if (id < 0) {
		printf("clone failed %d\n", id);
		return 1;
	}
	if (id == 0) {
		printf("join %d\n", sf_join(t));
		return 0;
	}
	uint32_t bad = 0;
	for (uint32_t b = 0; b < blocks; b += 2)
		bad += bad_words(block[b], words, b);
	for (uint32_t b = 1; b < blocks; b += 2) {
		block[b] = malloc(words * 4);
		if (block[b] == NULL) {
			bad++;
			continue;
		}
		fill(block[b], words, b + (uint32_t)id * blocks);
	}
	for (uint32_t b = 1; b < blocks; b += 2)
		if (block[b] != NULL)
			bad += bad_words(block[b], words, b + (uint32_t)id * blocks);
	printf("clone %d checked %s bad=%u\n", id, bad == 0 ? "ok" : "FAIL", bad);
	fflush(stdout);
	sf_exit(bad == 0 ? 0 : 3);
}
