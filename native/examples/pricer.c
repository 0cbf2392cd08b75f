/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * pricer - Monte-Carlo price of a European call option under Black-Scholes
 * (geometric Brownian motion), split among the workers.
 *
 * Usage: pricer <clones> [paths [seed]]   (defaults 4194304 1)
 * Prints the price with its 95% interval, the analytic Black-Scholes price for
 * reference, and "result: <price to 6 decimals>".
 *
 * The paths come in CHUNKS fixed chunks, each with its own RNG stream and its
 * own sums, and the chunk sums are added in chunk order: the floating-point
 * result is bit-identical whatever the number of workers.
 */
#include <math.h>
#include <string.h>

#include "ic.h"

#define CHUNKS 256

/* The option: spot, strike, risk-free rate, volatility, years to expiry. */
static const double S0 = 100, K = 105, R = 0.05, SIGMA = 0.2, T = 1;

struct sums {
	double payoff;
	double payoff_sq;
};

static uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/* xorshift64*: state must never be 0. */
static uint64_t next(uint64_t *state)
{
	uint64_t x = *state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545f4914f6cdd1dULL;
}

/* A uniform in (0, 1]: never 0, so log() below stays finite. */
static double uniform(uint64_t *state)
{
	return (double)((next(state) >> 11) + 1) * 0x1.0p-53;
}

static uint64_t chunk_paths(uint64_t paths, uint64_t chunk)
{
	return paths / CHUNKS + (chunk < paths % CHUNKS);
}

static struct sums simulate_chunk(uint64_t paths, uint64_t seed, uint64_t chunk)
{
	uint64_t state = splitmix64(seed * CHUNKS + chunk) | 1;
	double drift = (R - 0.5 * SIGMA * SIGMA) * T, vol = SIGMA * sqrt(T);
	struct sums s = {0, 0};
	for (uint64_t n = chunk_paths(paths, chunk); n > 0; n--) {
		/* Box-Muller: one standard normal from two uniforms. */
		double z = sqrt(-2 * log(uniform(&state))) *
			   cos(2 * M_PI * uniform(&state));
		double payoff = S0 * exp(drift + vol * z) - K;
		if (payoff > 0) {
			s.payoff += payoff;
			s.payoff_sq += payoff * payoff;
		}
	}
	return s;
}

static double normal_cdf(double x)
{
	return 0.5 * erfc(-x / M_SQRT2);
}

static double black_scholes_call(void)
{
	double d1 = (log(S0 / K) + (R + 0.5 * SIGMA * SIGMA) * T) / (SIGMA * sqrt(T));
	double d2 = d1 - SIGMA * sqrt(T);
	return S0 * normal_cdf(d1) - K * exp(-R * T) * normal_cdf(d2);
}

int main(int argc, char **argv)
{
	if (argc < 2 || argc > 4)
		ic_die("usage: pricer <clones> [paths [seed]]");
	int32_t clones = (int32_t)ic_arg(argv[1], "clones", 0, 4096);
	uint64_t paths = argc > 2 ? (uint64_t)ic_arg(argv[2], "paths", 2, (int64_t)1 << 40) : 1 << 22;
	uint64_t seed = argc > 3 ? (uint64_t)ic_arg(argv[3], "seed", 0, (int64_t)1 << 40) : 1;

	double start = ic_now_ms();
	static struct sums chunks[CHUNKS];
	printf("pricer: call S0=%g K=%g r=%g sigma=%g T=%g, %llu paths in %d chunks, "
	       "%d clones asked\n",
	       S0, K, R, SIGMA, T, (unsigned long long)paths, CHUNKS, clones);

	ic_fork(clones);
	uint64_t first, end;
	ic_share(ic.id, CHUNKS, &first, &end);
	ic_hint_overwrite(&chunks[first], (end - first) * sizeof(chunks[0]));
	printf("worker %d: chunks %llu..%llu\n", ic.id, (unsigned long long)first,
	       (unsigned long long)end);
	for (uint64_t c = first; c < end; c++)
		chunks[c] = simulate_chunk(paths, seed, c);
	if (ic.id > 0)
		ic_finish_clone("sums", &chunks[first], (end - first) * sizeof(chunks[0]));

	ic_join();
	for (int32_t w = 1; w < ic.workers; w++) {
		ic_share(w, CHUNKS, &first, &end);
		ic_gather(w, "sums", &chunks[first], (end - first) * sizeof(chunks[0]));
	}
	double sum = 0, sum_sq = 0;
	for (int c = 0; c < CHUNKS; c++) {
		sum += chunks[c].payoff;
		sum_sq += chunks[c].payoff_sq;
	}
	double n = (double)paths, discount = exp(-R * T);
	double mean = sum / n;
	double stderr_ = sqrt((sum_sq / n - mean * mean) / (n - 1));
	double price = discount * mean;
	printf("price: %.6f +- %.6f (95%%) in %.0f ms with %d workers\n", price,
	       1.96 * discount * stderr_, ic_now_ms() - start, ic.workers);
	printf("analytic Black-Scholes: %.6f\n", black_scholes_call());
	printf("result: %.6f\n", price);
	return 0;
}
