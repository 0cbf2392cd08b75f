/** What the fan-out bench hands its helper processes (as one JSON argument). */

import type { McdistConfig } from "../config.ts";

export interface ServerSpec {
  forkId: string;
  key: string;
  pageSize: number;
  pageCount: number;
  clones: number;
  config: Partial<McdistConfig> & { interface: string };
}

export interface HostSpec extends Omit<ServerSpec, "clones"> {
  server: string;
  /** Clones on this host. */
  clones: number;
  workingSetPages: number;
  outstanding: number;
}

export function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function fromHex(text: string): Uint8Array {
  return Uint8Array.from(text.match(/../g) ?? [], (pair) => parseInt(pair, 16));
}
