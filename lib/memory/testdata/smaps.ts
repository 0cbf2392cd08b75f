/** Test helpers: what the kernel says about transparent huge pages for this process. */

/** AnonHugePages (bytes) of the mapping that holds `address`, from /proc/self/smaps. */
export function hugeBytesAt(address: number): number {
  let inside = false;
  for (const line of Deno.readTextFileSync("/proc/self/smaps").split("\n")) {
    const range = /^([0-9a-f]+)-([0-9a-f]+) /.exec(line);
    if (range) {
      inside = parseInt(range[1], 16) <= address && address < parseInt(range[2], 16);
    } else if (inside && line.startsWith("AnonHugePages:")) {
      return Number(line.split(/\s+/)[1]) * 1024;
    }
  }
  return 0;
}

/** The kernel's transparent huge page mode ("always", "madvise", "never"); "never" if none. */
export function hugePageMode(): string {
  try {
    const text = Deno.readTextFileSync("/sys/kernel/mm/transparent_hugepage/enabled");
    return /\[(\w+)\]/.exec(text)?.[1] ?? "never";
  } catch {
    return "never";
  }
}
