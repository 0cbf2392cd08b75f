/*
 * Benchmark guest: allocates <mib> MiB filled with non-zero bytes, forks
 * <clones> clones, and each clone reads <touch> pages spread evenly over the
 * buffer (its working set), prints their sum and exits.
 *
 * usage: working_set <clones> <mib> <touch>
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sf.h"

int main(int argc, char **argv)
{
	if (argc != 4)
		return 2;
	int32_t clones = atoi(argv[1]);
	size_t bytes = (size_t)atoi(argv[2]) << 20;
	size_t touch = (size_t)atoi(argv[3]);
	uint8_t *buf = malloc(bytes);
	if (buf == NULL)
		return 2;
	memset(buf, 0x5a, bytes);
	int32_t t = sf_request_ticket(clones);
	fflush(stdout);
	int32_t id = sf_clone(t);
	if (id > 0) {
		size_t pages = bytes / 4096, step = touch ? pages / touch : 1;
		uint64_t sum = 0;
		for (size_t i = 0; i < touch; i++)
			sum += buf[(i * step) * 4096 + (size_t)id];
		printf("sum %llu\n", (unsigned long long)sum);
		fflush(stdout);
		sf_exit(0);
	}
	printf("join %d\n", sf_join(t));
	return 0;
}
