/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mandelbrot - renders a Mandelbrot image, split by rows among the workers.
 *
 * Usage: mandelbrot <clones> [width [height [max_iter]]]
 *        (defaults 640 480 1000)
 * Writes /out/mandelbrot.pgm and prints "result: <FNV-1a 64 of the pixels>".
 * Every pixel depends only on its own coordinates, so the image is identical
 * however the rows are split.
 */
#include <math.h>
#include <string.h>

#include "ic.h"

static uint8_t pixel(double cr, double ci, long max_iter)
{
	double zr = 0, zi = 0;
	long i = 0;
	while (i < max_iter && zr * zr + zi * zi <= 4.0) {
		double t = zr * zr - zi * zi + cr;
		zi = 2 * zr * zi + ci;
		zr = t;
		i++;
	}
	if (i == max_iter)
		return 0;
	/* Escape times span decades: a log scale keeps the fast ones visible. */
	return (uint8_t)(1 + 254 * log(1.0 + (double)i) / log(1.0 + (double)max_iter));
}

static void render(uint8_t *image, long width, long height, long max_iter,
		   uint64_t first_row, uint64_t end_row)
{
	/* The view [-2.5, 1] x [-1.25, 1.25], stretched to the image's shape. */
	double dx = 3.5 / (double)width, dy = 2.5 / (double)height;
	for (uint64_t y = first_row; y < end_row; y++) {
		double ci = 1.25 - ((double)y + 0.5) * dy;
		for (long x = 0; x < width; x++)
			image[y * width + x] =
				pixel(-2.5 + ((double)x + 0.5) * dx, ci, max_iter);
	}
}

static uint64_t fnv1a64(const uint8_t *data, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < len; i++) {
		h ^= data[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

static void write_pgm(const char *path, const uint8_t *image, long width, long height)
{
	FILE *f = fopen(path, "wb");
	if (f == NULL)
		ic_die("cannot write %s", path);
	fprintf(f, "P5\n%ld %ld\n255\n", width, height);
	size_t len = (size_t)width * (size_t)height;
	if (fwrite(image, 1, len, f) != len || fclose(f) != 0)
		ic_die("cannot write %s", path);
}

int main(int argc, char **argv)
{
	if (argc < 2 || argc > 5)
		ic_die("usage: mandelbrot <clones> [width [height [max_iter]]]");
	int32_t clones = (int32_t)ic_arg(argv[1], "clones", 0, 4096);
	long width = argc > 2 ? ic_arg(argv[2], "width", 1, 16384) : 640;
	long height = argc > 3 ? ic_arg(argv[3], "height", 1, 16384) : 480;
	long max_iter = argc > 4 ? ic_arg(argv[4], "max_iter", 1, 1000000) : 1000;

	double start = ic_now_ms();
	uint8_t *image = calloc((size_t)width * (size_t)height, 1);
	if (image == NULL)
		ic_die("cannot allocate a %ldx%ld image", width, height);
	printf("mandelbrot %ldx%ld, %ld iterations, %d clones asked\n", width,
	       height, max_iter, clones);

	ic_fork(clones);
	uint64_t first, end;
	ic_share(ic.id, (uint64_t)height, &first, &end);
	uint8_t *rows = image + first * width;
	/* The clone renders these rows from scratch: no need to fetch them. */
	ic_hint_overwrite(rows, (end - first) * width);
	printf("worker %d: rows %llu..%llu\n", ic.id, (unsigned long long)first,
	       (unsigned long long)end);
	render(image, width, height, max_iter, first, end);
	if (ic.id > 0)
		ic_finish_clone("rows", rows, (end - first) * width);

	ic_join();
	for (int32_t w = 1; w < ic.workers; w++) {
		ic_share(w, (uint64_t)height, &first, &end);
		ic_gather(w, "rows", image + first * width, (end - first) * width);
	}
	write_pgm("/out/mandelbrot.pgm", image, width, height);
	printf("wrote /out/mandelbrot.pgm in %.0f ms with %d workers\n",
	       ic_now_ms() - start, ic.workers);
	printf("result: %016llx\n",
	       (unsigned long long)fnv1a64(image, (size_t)width * (size_t)height));
	return 0;
}
