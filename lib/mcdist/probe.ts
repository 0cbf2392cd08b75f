/**
 * The agent's start-up check: does multicast work on the configured interface? It sends an
 * authenticated PROBE to a group through the same path pages take (interface, TTL, loopback to
 * local members) and waits for it to come back. Where it does not, mcdist runs in unicast mode.
 *
 * @module
 */

import { groupFor, type McdistConfig, resolveConfig } from "./config.ts";
import { onDatagram, openGroupReceiver, openSocket, PacketStamp } from "./socket.ts";
import { decodePacket, PacketKey, PacketType } from "./wire.ts";

/** What the agent puts in its status: how mcdist moves pages on this host, and why. */
export interface McdistStatus {
  mode: "multicast" | "unicast";
  group: string;
  port: number;
  interface: string;
  ttl: number;
  /** Why multicast is not used; absent in multicast mode. */
  reason?: string;
}

const TRIES = 3;

/** Probes multicast with `config` (defaults filled in); never throws. */
export async function probeMulticast(
  partial: Partial<McdistConfig> = {},
  timeoutMs = 600,
): Promise<McdistStatus> {
  let config: McdistConfig;
  try {
    config = resolveConfig(partial);
  } catch (error) {
    return { mode: "unicast", group: "", port: 0, interface: "", ttl: 0, reason: String(error) };
  }
  const forkId = crypto.getRandomValues(new Uint8Array(16));
  const nonce = crypto.getRandomValues(new Uint8Array(8));
  const group = groupFor(config, forkId);
  const status = { group, port: config.port, interface: config.interface, ttl: config.ttl };
  const sockets = [];
  const timers: ReturnType<typeof setTimeout>[] = [];
  let owned: PacketKey | undefined;
  try {
    const key = new PacketKey(crypto.getRandomValues(new Uint8Array(32)));
    owned = key;
    const receiver = openGroupReceiver(group, config.port, config.interface);
    sockets.push(receiver);
    const sender = openSocket(config.interface, 0);
    sockets.push(sender);
    sender.setMulticastSending(config.interface, config.ttl);
    const heard = new Promise<true>((resolve) => {
      onDatagram(receiver, undefined, (bytes) => {
        const result = decodePacket(bytes, () => ({ key, pageSize: 1 }));
        if (result.ok && result.packet.body.type === PacketType.PROBE) {
          const got = result.packet.body.nonce;
          if (got.every((b, i) => b === nonce[i])) resolve(true);
        }
      });
    });
    const stamp = new PacketStamp();
    for (let i = 0; i < TRIES; i++) {
      const bytes = stamp.encode(
        { flags: 0, forkId, body: { type: PacketType.PROBE, nonce } },
        key,
      );
      sender.send(bytes, { address: group, port: config.port });
      const answered = await Promise.race([heard, delay(timeoutMs / TRIES, timers)]);
      if (answered === true) return { mode: "multicast", ...status };
    }
    return {
      mode: "unicast",
      ...status,
      reason:
        `no probe came back from ${group}:${config.port} on ${config.interface} within ${timeoutMs} ms`,
    };
  } catch (error) {
    return {
      mode: "unicast",
      ...status,
      reason: error instanceof Error ? error.message : String(error),
    };
  } finally {
    timers.forEach(clearTimeout);
    await Promise.all(sockets.map((socket) => socket.close()));
    owned?.free();
  }
}

function delay(ms: number, timers: ReturnType<typeof setTimeout>[]): Promise<false> {
  return new Promise((resolve) => timers.push(setTimeout(() => resolve(false), ms)));
}
