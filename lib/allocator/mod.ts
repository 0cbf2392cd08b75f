/** Allocator plug-ins by name, as `snowflock master --allocator NAME` picks them. */
import type { Allocator } from "./allocator.ts";
import { BuiltinAllocator } from "./builtin.ts";

export const ALLOCATORS = ["builtin"] as const;
export type AllocatorName = typeof ALLOCATORS[number];

export function createAllocator(name: AllocatorName): Allocator {
  switch (name) {
    case "builtin":
      return new BuiltinAllocator();
  }
}

export type { Allocator, Grant, Reclaim, SlotRequest } from "./allocator.ts";
