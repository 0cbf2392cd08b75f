/**
 * What this machine's CPUs did during a window of wall time, for benchmarks whose hosts are
 * network namespaces of one machine: the CPU time its cores were busy (/proc/stat; the kernel
 * counts it in 10 ms ticks per core) and the time during which some thread was ready to run but
 * waited for a CPU (/proc/pressure/cpu, "some", in µs). A run whose busy time is its duration
 * times the cores, with threads waiting most of it, is bounded by the CPUs the simulated hosts
 * share, not by what it measures.
 *
 * @module
 */

/** Cumulative counters at one moment. */
export interface CpuSample {
  /** Wall clock, ms since the epoch (Date.now()). */
  at: number;
  /** CPU time all cores were busy since boot (user, nice, system, irq, softirq, steal), ms. */
  busyMs: number;
  /** Wall time some thread waited for a CPU since boot, ms; undefined without PSI. */
  waitMs: number | undefined;
}

/** CPU use during a window. */
export interface CpuUse {
  /** Busy CPU time summed over the cores, ms. */
  cpuMs: number;
  /** Wall time some thread was runnable but waiting for a CPU, ms; undefined without PSI. */
  waitMs: number | undefined;
}

/** /proc/stat counts in USER_HZ, 100 on Linux. */
const TICK_MS = 10;
/** Columns of the "cpu" line that are busy time: user nice system (idle iowait) irq softirq steal. */
const BUSY_COLUMNS = [0, 1, 2, 5, 6, 7];

/** Busy CPU time (ms) from the text of /proc/stat: its first line sums every core. */
export function parseProcStat(text: string): number {
  const end = text.indexOf("\n");
  const line = end < 0 ? text : text.slice(0, end);
  const fields = line.trim().split(/\s+/);
  if (fields[0] !== "cpu" || fields.length < 9) {
    throw new SyntaxError(`Cannot parse /proc/stat: first line is ${JSON.stringify(line)}`);
  }
  let ticks = 0;
  for (const column of BUSY_COLUMNS) {
    const value = Number(fields[1 + column]);
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new SyntaxError(
        `Cannot parse /proc/stat: column ${column + 1} is ${fields[1 + column]}`,
      );
    }
    ticks += value;
  }
  return ticks * TICK_MS;
}

/** Stall time (ms) of the "some" line of /proc/pressure/cpu. */
export function parseCpuPressure(text: string): number {
  const match = /^some .*\btotal=(\d+)$/m.exec(text);
  if (match === null) {
    throw new SyntaxError(`Cannot parse /proc/pressure/cpu: no "some … total=" line`);
  }
  return Number(match[1]) / 1000;
}

/**
 * The counters at `at` interpolated between the two samples around it (sorted by time), or
 * undefined when `at` is outside them or not a time (a fork with no recorded start).
 */
export function sampleAt(samples: readonly CpuSample[], at: number): CpuSample | undefined {
  if (
    samples.length === 0 || !Number.isFinite(at) || at < samples[0].at ||
    at > samples[samples.length - 1].at
  ) {
    return undefined;
  }
  let i = 1;
  while (i < samples.length && samples[i].at < at) i++;
  const after = samples[Math.min(i, samples.length - 1)];
  const before = samples[i - 1];
  const f = after.at === before.at ? 0 : (at - before.at) / (after.at - before.at);
  const mix = (a: number, b: number) => a + f * (b - a);
  return {
    at,
    busyMs: mix(before.busyMs, after.busyMs),
    waitMs: before.waitMs === undefined || after.waitMs === undefined
      ? undefined
      : mix(before.waitMs, after.waitMs),
  };
}

/** CPU use between two wall-clock times, from samples that cover both. */
export function useBetween(
  samples: readonly CpuSample[],
  from: number,
  to: number,
): CpuUse | undefined {
  const a = sampleAt(samples, from);
  const b = sampleAt(samples, to);
  if (a === undefined || b === undefined) return undefined;
  return {
    cpuMs: b.busyMs - a.busyMs,
    waitMs: a.waitMs === undefined || b.waitMs === undefined ? undefined : b.waitMs - a.waitMs,
  };
}

/** Samples the machine's counters every few milliseconds until disposed. */
export class CpuMeter implements Disposable {
  #samples: CpuSample[] = [];
  #timer: ReturnType<typeof setInterval>;
  #pressure = true;

  /** Throws when /proc/stat cannot be read (not Linux). */
  constructor(intervalMs = 5) {
    this.#sample();
    this.#timer = setInterval(() => this.#sample(), intervalMs);
  }

  /** CPU use between two wall-clock times (Date.now() ms), taking a last sample first. */
  useBetween(from: number, to: number): CpuUse | undefined {
    this.#sample();
    return useBetween(this.#samples, from, to);
  }

  [Symbol.dispose](): void {
    clearInterval(this.#timer);
  }

  #sample(): void {
    let waitMs: number | undefined;
    if (this.#pressure) {
      try {
        waitMs = parseCpuPressure(Deno.readTextFileSync("/proc/pressure/cpu"));
      } catch {
        this.#pressure = false; // a kernel without PSI: busy time only
      }
    }
    const busyMs = parseProcStat(Deno.readTextFileSync("/proc/stat"));
    this.#samples.push({ at: Date.now(), busyMs, waitMs });
  }
}
