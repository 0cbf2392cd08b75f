/**
 * Can this process use userfaultfd for memory-on-demand and copy-on-write snapshots?
 *
 * @module
 */

import {
  UFFD_FEATURE_PAGEFAULT_FLAG_WP,
  UFFD_FEATURE_WP_UNPOPULATED,
  uffdSupportedFeatures,
} from "../../native/userfaultfd.ts";

/** The answer of {@link isUserfaultfdAvailable}. */
export type Availability = { ok: true } | { ok: false; reason: string };

/** Environment variable that makes Snowflock act as if userfaultfd were missing. */
export const NO_UFFD_ENV = "SNOWFLOCK_NO_UFFD";

function disabledByEnv(): boolean {
  try {
    return Deno.env.get(NO_UFFD_ENV) === "1";
  } catch {
    return false; // no --allow-env: the switch cannot have been set for us
  }
}

/**
 * Probe userfaultfd: open one, do the API handshake and require write-protect of missing and
 * unpopulated pages (Linux ≥ 6.4). Refuses when SNOWFLOCK_NO_UFFD=1.
 */
export function isUserfaultfdAvailable(): Availability {
  if (disabledByEnv()) {
    return { ok: false, reason: `userfaultfd disabled by ${NO_UFFD_ENV}=1` };
  }
  if (Deno.build.os !== "linux") {
    return { ok: false, reason: `userfaultfd needs Linux, this is ${Deno.build.os}` };
  }
  probed ??= probeKernel();
  return probed;
}

/** The kernel's answer does not change while we run: asked once per thread. */
let probed: Availability | undefined;

function probeKernel(): Availability {
  let features: bigint;
  try {
    features = uffdSupportedFeatures();
  } catch (e) {
    return { ok: false, reason: `userfaultfd unusable: ${e instanceof Error ? e.message : e}` };
  }
  const want = UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_WP_UNPOPULATED;
  if ((features & want) !== want) {
    return {
      ok: false,
      reason: `userfaultfd lacks write-protect of unpopulated pages (features 0x${
        features.toString(16)
      }; Linux ≥ 6.4 needed)`,
    };
  }
  return { ok: true };
}
