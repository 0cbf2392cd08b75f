/**
 * Where mcdist traffic goes: the multicast groups, port, interface, TTL and path MTU of one
 * agent. Every agent of a cluster must use the same groups and port; the interface is each
 * host's own.
 *
 * @module
 */

import { networkInterfaces } from "node:os";
import { IP_UDP_BYTES } from "./wire.ts";

export interface McdistConfig {
  /** First address of the groups forks are spread over (administratively scoped by default). */
  group: string;
  /** How many consecutive groups from `group`; a fork's group is picked by its id. */
  groups: number;
  /** UDP port every group is received on. */
  port: number;
  /** IPv4 address of the interface multicast leaves and joins on. */
  interface: string;
  /** Multicast TTL: 1 keeps the pages on the local network. */
  ttl: number;
  /**
   * Path MTU in bytes; no datagram is bigger than this minus the IP and UDP headers. Default: the
   * interface's own MTU, at most {@link MAX_AUTO_MTU} (one 4 KiB page per datagram needs more
   * than 4,124; at 1,500 a page travels in three).
   */
  mtu: number;
}

export const DEFAULT_GROUP = "239.255.77.0";
export const DEFAULT_GROUPS = 256;
export const DEFAULT_PORT = 7077;
export const DEFAULT_TTL = 1;
export const DEFAULT_MTU = 1500;
/** Jumbo frames: the largest MTU taken from an interface without being asked. */
export const MAX_AUTO_MTU = 9000;

/** Fills in defaults; the interface defaults to the first non-loopback IPv4 address. */
export function resolveConfig(partial: Partial<McdistConfig> = {}): McdistConfig {
  const iface = partial.interface ?? defaultInterface();
  const config: McdistConfig = {
    group: partial.group ?? DEFAULT_GROUP,
    groups: partial.groups ?? DEFAULT_GROUPS,
    port: partial.port ?? DEFAULT_PORT,
    interface: iface,
    ttl: partial.ttl ?? DEFAULT_TTL,
    mtu: partial.mtu ?? Math.min(MAX_AUTO_MTU, interfaceMtu(iface) ?? DEFAULT_MTU),
  };
  checkConfig(config);
  return config;
}

/** The group a fork's pages are multicast to. */
export function groupFor(config: McdistConfig, forkId: Uint8Array): string {
  let hash = 0x811c9dc5; // FNV-1a: stable across hosts and versions
  for (const byte of forkId) hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
  return numberToIp(ipToNumber(config.group) + hash % config.groups);
}

/** Bytes of one UDP payload at the configured MTU. */
export function payloadBytes(config: McdistConfig): number {
  return config.mtu - IP_UDP_BYTES;
}

function checkConfig(c: McdistConfig): void {
  const first = ipToNumber(c.group);
  if (
    Number.isNaN(first) || first < ipToNumber("224.0.0.0") || first > ipToNumber("239.255.255.255")
  ) {
    throw new RangeError(`Cannot use multicast group ${c.group}: not an IPv4 multicast address`);
  }
  if (
    !Number.isInteger(c.groups) || c.groups < 1 ||
    first + c.groups - 1 > ipToNumber("239.255.255.255")
  ) {
    throw new RangeError(
      `Cannot use ${c.groups} groups from ${c.group}: out of the multicast range`,
    );
  }
  if (!Number.isInteger(c.port) || c.port < 1 || c.port > 65535) {
    throw new RangeError(`Cannot use port ${c.port}: want 1..65535`);
  }
  if (Number.isNaN(ipToNumber(c.interface))) {
    throw new RangeError(`Cannot use interface ${c.interface}: want its IPv4 address`);
  }
  if (!Number.isInteger(c.ttl) || c.ttl < 1 || c.ttl > 255) {
    throw new RangeError(`Cannot use TTL ${c.ttl}: want 1..255`);
  }
  if (!Number.isInteger(c.mtu) || c.mtu < 576 || c.mtu > 65535) {
    throw new RangeError(`Cannot use MTU ${c.mtu}: want 576..65535`);
  }
}

function defaultInterface(): string {
  for (const addresses of Object.values(networkInterfaces())) {
    const found = addresses?.find((a) => a.family === "IPv4" && !a.internal);
    if (found !== undefined) return found.address;
  }
  return "127.0.0.1";
}

/** The MTU of the interface holding IPv4 `address` (sysfs), or undefined when unknown. */
export function interfaceMtu(address: string): number | undefined {
  for (const [name, addresses] of Object.entries(networkInterfaces())) {
    if (!addresses?.some((a) => a.family === "IPv4" && a.address === address)) continue;
    try {
      const mtu = Number(Deno.readTextFileSync(`/sys/class/net/${name}/mtu`).trim());
      return Number.isInteger(mtu) && mtu >= 576 ? mtu : undefined;
    } catch {
      return undefined; // no sysfs (or no read permission): the caller's default
    }
  }
  return undefined;
}

function ipToNumber(address: string): number {
  const parts = address.split(".");
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) return NaN;
  return parts.reduce((sum, part) => sum * 256 + Number(part), 0);
}

function numberToIp(value: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(value / 2 ** shift) % 256).join(".");
}
