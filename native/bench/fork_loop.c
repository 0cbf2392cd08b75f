/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The guest of `snowflock bench clone`: forks `clones` clones `rounds` times.
 * Each clone touches a little of the inherited heap and exits at once, so a
 * round measures the fork itself. The parent holds `mib` MiB of heap and
 * works `think_ms` between forks, as a real program would.
 *   fork_loop <clones> <rounds> [mib [think_ms]]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sf.h"

int main(int argc, char **argv)
{
	int clones = argc > 1 ? atoi(argv[1]) : 16;
	int rounds = argc > 2 ? atoi(argv[2]) : 10;
	size_t mib = argc > 3 ? (size_t)atoi(argv[3]) : 4;
	int think_ms = argc > 4 ? atoi(argv[4]) : 500;
	unsigned char *heap = malloc(mib << 20);
	if (!heap) {
		fprintf(stderr, "cannot allocate %zu MiB\n", mib);
		return 1;
	}
	for (size_t i = 0; i < mib << 20; i += 4096)
		heap[i] = (unsigned char)(i >> 12);
	for (int r = 0; r < rounds; r++) {
		struct timespec think = {think_ms / 1000, (think_ms % 1000) * 1000000L};
		nanosleep(&think, NULL);
		int32_t t = sf_request_ticket(clones);
		if (t < 0) {
			fprintf(stderr, "round %d: %s\n", r, sf_strerror(t));
			return 2;
		}
		fflush(stdout);
		int32_t id = sf_clone(t);
		if (id < 0) {
			fprintf(stderr, "round %d: sf_clone: %s\n", r, sf_strerror(id));
			return 3;
		}
		if (id > 0)
			sf_exit(heap[(size_t)id << 12] == (unsigned char)id ? 0 : 1);
		int32_t failed = sf_join(t);
		if (failed != 0) {
			fprintf(stderr, "round %d: %d clones failed\n", r, failed);
			return 4;
		}
	}
	printf("forked %d clones %d times\n", clones, rounds);
	return 0;
}
