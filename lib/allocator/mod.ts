/** Allocator plug-ins by name, as `snowflock master --allocator NAME` picks them. */
import type { Logger } from "../log.ts";
import { type Allocator, AllocatorError } from "./allocator.ts";
import { BuiltinAllocator } from "./builtin.ts";
import { EgoAllocator, type EgoSettings } from "./ego.ts";
import { SlurmAllocator, type SlurmSettings } from "./slurm.ts";

export const ALLOCATORS = ["builtin", "slurm", "ego"] as const;
export type AllocatorName = typeof ALLOCATORS[number];

/** Per-allocator settings; only the chosen allocator's are needed. */
export interface AllocatorSettings {
  slurm?: SlurmSettings;
  ego?: EgoSettings;
}

export function createAllocator(
  name: AllocatorName,
  settings: AllocatorSettings,
  logger: Logger,
): Allocator {
  switch (name) {
    case "builtin":
      return new BuiltinAllocator();
    case "slurm":
      if (!settings.slurm) throw new AllocatorError("Cannot use Slurm: no Slurm settings given");
      return new SlurmAllocator(settings.slurm, logger);
    case "ego":
      if (!settings.ego) throw new AllocatorError("Cannot use EGO: no EGO settings given");
      return new EgoAllocator(settings.ego, logger);
  }
}

export type { Allocator, Grant, Reclaim, SlotRequest } from "./allocator.ts";
export type { EgoSettings } from "./ego.ts";
export type { SlurmSettings } from "./slurm.ts";
