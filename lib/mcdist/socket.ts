/**
 * node:dgram plumbing shared by server, client and probe. node:dgram, not Deno.listenDatagram,
 * because only it can choose the interface multicast leaves on.
 *
 * @module
 */

import dgram from "node:dgram";
import { setReceiveBuffer } from "../../native/libc.ts";
import { encodePacket, type Packet } from "./wire.ts";

/** A UDP address. */
export interface Endpoint {
  address: string;
  port: number;
}

/**
 * Test seam between the kernel and the decoder: call `deliver` zero times (loss), once, twice
 * (duplication) or later (reordering).
 */
export type InboundShim = (packet: Uint8Array, deliver: (packet: Uint8Array) => void) => void;

/** Parses "host:port"; port 0 (any) only when `anyPort`. */
export function parseEndpoint(text: string, anyPort = false): Endpoint {
  const at = text.lastIndexOf(":");
  const port = Number(text.slice(at + 1));
  if (at <= 0 || !Number.isInteger(port) || port < (anyPort ? 0 : 1) || port > 65535) {
    throw new RangeError(`Cannot parse address ${JSON.stringify(text)}: want host:port`);
  }
  return { address: text.slice(0, at), port };
}

export function endpointKey(e: Endpoint): string {
  return `${e.address}:${e.port}`;
}

/** A UDP socket bound to `address:port` (port 0: any). */
export function openSocket(
  address: string,
  port: number,
  reuseAddr = false,
): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket({ type: "udp4", reuseAddr });
    const onError = (error: Error) => {
      socket.close();
      reject(new Error(`Cannot bind UDP ${address}:${port}: ${error.message}`, { cause: error }));
    };
    socket.once("error", onError);
    socket.bind(port, address, () => {
      socket.off("error", onError);
      try {
        raiseReceiveBuffer(socket);
      } catch (error) {
        socket.close();
        reject(new Error(`Cannot size UDP ${address}:${port}: ${error}`, { cause: error }));
        return;
      }
      resolve(socket);
    });
  });
}

/**
 * Receive buffer of every mcdist socket. At the kernel default (~200 KiB, about 25 pages of
 * datagrams) a receiver whose event loop is busy for a few milliseconds overflows and loses
 * pages that then have to be sent again (measured: 800 of 4,400 datagrams on a loaded host).
 */
export const RECEIVE_BUFFER_BYTES = 4 << 20;

/**
 * Raises the kernel receive buffer of `socket` (past net.core.rmem_max as root). Deno's node:dgram
 * accepts setRecvBufferSize but never applies it (ss shows the default afterwards), so the
 * socket's descriptor is found through /proc by its inode and set directly. Every socket of this
 * process bound to the same port gets it (reuseAddr group receivers share one).
 */
export function raiseReceiveBuffer(socket: dgram.Socket, bytes = RECEIVE_BUFFER_BYTES): void {
  const port = socket.address().port.toString(16).toUpperCase().padStart(4, "0");
  const inodes = new Set<string>();
  for (const line of Deno.readTextFileSync("/proc/self/net/udp").split("\n").slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields.length > 9 && fields[1].endsWith(`:${port}`)) inodes.add(`socket:[${fields[9]}]`);
  }
  for (const entry of Deno.readDirSync("/proc/self/fd")) {
    let target: string;
    try {
      target = Deno.readLinkSync(`/proc/self/fd/${entry.name}`);
    } catch {
      continue; // closed meanwhile
    }
    if (inodes.has(target)) setReceiveBuffer(Number(entry.name), bytes);
  }
}

/** Makes `socket` send multicast out of `iface` with `ttl`, looped back to this host's members. */
export function setMulticastSending(socket: dgram.Socket, iface: string, ttl: number): void {
  socket.setMulticastInterface(iface);
  socket.setMulticastTTL(ttl);
  socket.setMulticastLoopback(true);
}

/**
 * A socket that receives `group` on `port` via `iface`. Bound to the wildcard address with
 * SO_REUSEADDR so that every client on a host (one per fork, or several processes) gets a copy.
 */
export async function openGroupReceiver(
  group: string,
  port: number,
  iface: string,
): Promise<dgram.Socket> {
  const socket = await openSocket("0.0.0.0", port, true);
  try {
    socket.addMembership(group, iface);
  } catch (error) {
    socket.close();
    throw new Error(`Cannot join multicast group ${group} on ${iface}: ${error}`, { cause: error });
  }
  return socket;
}

/** Routes datagrams through the optional shim to `handle`. */
export function onDatagram(
  socket: dgram.Socket,
  shim: InboundShim | undefined,
  handle: (bytes: Uint8Array, from: Endpoint) => void,
): void {
  socket.on("message", (msg: Uint8Array, rinfo: dgram.RemoteInfo) => {
    const from = { address: rinfo.address, port: rinfo.port };
    if (shim === undefined) handle(msg, from);
    else shim(msg, (bytes) => handle(bytes, from));
  });
  // Send errors (unreachable, no route) also arrive here; losing a datagram is the protocol's
  // business, so they must not become uncaught exceptions.
  socket.on("error", () => {});
}

export function closeSocket(socket: dgram.Socket): Promise<void> {
  return new Promise((resolve) => {
    try {
      socket.close(() => resolve());
    } catch {
      resolve(); // already closed
    }
  });
}

/** Stamps packets of one sending endpoint with its random id and rising sequence numbers. */
export class PacketStamp {
  #sender = randomSender();
  #seq = 0;

  encode(packet: Omit<Packet, "sender" | "seq" | "time">, key: Uint8Array): Uint8Array {
    if (this.#seq === 0xffffffff) {
      // Receivers would take a restarted sequence for replays: become a new sender instead.
      this.#sender = randomSender();
      this.#seq = 0;
    }
    this.#seq++;
    const time = Math.floor(Date.now() / 1000);
    return encodePacket({ ...packet, sender: this.#sender, seq: this.#seq, time }, key);
  }
}

function randomSender(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0];
}
