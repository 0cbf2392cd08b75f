/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * search - counts the occurrences of a pattern in a large sequence that the
 * parent holds in memory before forking; each worker scans a share of it.
 *
 * Usage: search <clones> [pattern [source]]   (defaults GATTACA 32)
 * `source` is either a size in MiB of pseudo-random DNA generated from a fixed
 * seed, or the path of a file to read (e.g. from a preopened /data).
 * Prints the match count, the first and last match positions, and
 * "result: <count> <checksum of the positions>".
 *
 * The clones never load the sequence themselves: they read the parent's copy,
 * which memory-on-demand fetches page by page as they scan.
 */
#include <string.h>

#include "ic.h"

#define MAX_PATTERN 256

struct matches {
	uint64_t count;
	uint64_t checksum; /* sum of mix(position): independent of the split */
	uint64_t first;    /* UINT64_MAX when none */
	uint64_t last;
};

static uint64_t mix(uint64_t x)
{
	x = (x ^ (x >> 33)) * 0xff51afd7ed558ccdULL;
	x = (x ^ (x >> 33)) * 0xc4ceb9fe1a85ec53ULL;
	return x ^ (x >> 33);
}

static uint8_t *generate_dna(size_t len)
{
	static const char bases[4] = {'A', 'C', 'G', 'T'};
	uint8_t *text = malloc(len);
	if (text == NULL)
		ic_die("cannot allocate %zu bytes", len);
	uint64_t state = 0x5eed5eed5eed5eedULL;
	for (size_t i = 0; i < len; i += 32) {
		/* xorshift64: 64 random bits make 32 bases. */
		state ^= state << 13;
		state ^= state >> 7;
		state ^= state << 17;
		uint64_t bits = state;
		for (size_t j = i; j < i + 32 && j < len; j++, bits >>= 2)
			text[j] = (uint8_t)bases[bits & 3];
	}
	return text;
}

static uint8_t *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL || fseek(f, 0, SEEK_END) != 0)
		ic_die("cannot read %s", path);
	long size = ftell(f);
	rewind(f);
	uint8_t *text = malloc(size > 0 ? (size_t)size : 1);
	if (size < 0 || text == NULL || fread(text, 1, (size_t)size, f) != (size_t)size)
		ic_die("cannot read %s", path);
	fclose(f);
	*len = (size_t)size;
	return text;
}

/* Matches that start in [first, end); they may run past `end` into the next share. */
static struct matches scan(const uint8_t *text, size_t len, const char *pattern,
			   size_t first, size_t end)
{
	size_t plen = strlen(pattern);
	struct matches m = {0, 0, UINT64_MAX, 0};
	size_t last_start = len - plen; /* the caller ensures plen <= len */
	if (end > last_start + 1)
		end = last_start + 1;
	const uint8_t *p = text + first;
	while (p < text + end) {
		p = memchr(p, pattern[0], (size_t)(text + end - p));
		if (p == NULL)
			break;
		if (memcmp(p, pattern, plen) == 0) {
			uint64_t pos = (uint64_t)(p - text);
			m.count++;
			m.checksum += mix(pos);
			if (m.first == UINT64_MAX)
				m.first = pos;
			m.last = pos;
		}
		p++;
	}
	return m;
}

static void combine(struct matches *total, const struct matches *part)
{
	if (part->count == 0)
		return;
	if (total->count == 0 || part->first < total->first)
		total->first = part->first;
	if (total->count == 0 || part->last > total->last)
		total->last = part->last;
	total->count += part->count;
	total->checksum += part->checksum;
}

int main(int argc, char **argv)
{
	if (argc < 2 || argc > 4)
		ic_die("usage: search <clones> [pattern [MiB | file]]");
	int32_t clones = (int32_t)ic_arg(argv[1], "clones", 0, 4096);
	const char *pattern = argc > 2 ? argv[2] : "GATTACA";
	const char *source = argc > 3 ? argv[3] : "32";
	size_t plen = strlen(pattern);
	if (plen == 0 || plen > MAX_PATTERN)
		ic_die("bad pattern: want 1..%d bytes", MAX_PATTERN);

	double start = ic_now_ms();
	size_t len;
	uint8_t *text;
	if (strchr(source, '/') != NULL) {
		text = read_file(source, &len);
	} else {
		len = (size_t)ic_arg(source, "size in MiB", 1, 2048) << 20;
		text = generate_dna(len);
	}
	if (plen > len)
		ic_die("bad pattern: longer than the %zu-byte sequence", len);
	printf("search: '%s' in %zu bytes from %s, loaded in %.0f ms, %d clones asked\n",
	       pattern, len, source, ic_now_ms() - start, clones);

	ic_fork(clones);
	uint64_t first, end;
	ic_share(ic.id, len, &first, &end);
	struct matches mine = scan(text, len, pattern, first, end);
	printf("worker %d: bytes %llu..%llu: %llu matches\n", ic.id,
	       (unsigned long long)first, (unsigned long long)end,
	       (unsigned long long)mine.count);
	if (ic.id > 0)
		ic_finish_clone("matches", &mine, sizeof(mine));

	ic_join();
	struct matches total = mine;
	for (int32_t w = 1; w < ic.workers; w++) {
		struct matches part;
		ic_gather(w, "matches", &part, sizeof(part));
		combine(&total, &part);
	}
	if (total.count > 0)
		printf("%llu matches, first at %llu, last at %llu\n",
		       (unsigned long long)total.count, (unsigned long long)total.first,
		       (unsigned long long)total.last);
	else
		printf("no matches\n");
	printf("searched in %.0f ms with %d workers\n", ic_now_ms() - start, ic.workers);
	printf("result: %llu %016llx\n", (unsigned long long)total.count,
	       (unsigned long long)total.checksum);
	return 0;
}
