/** Percentiles and rounding for benchmark reports. */

/** The q-quantile (0..1) of `xs` by nearest rank; 0 for no samples. */
export function percentile(xs: number[], q: number): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
}

/** Rounds to two decimals, for readable JSON. */
export function round2(x: number): number {
  return Math.round(x * 100) / 100;
}
