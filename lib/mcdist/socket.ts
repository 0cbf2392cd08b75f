/**
 * UDP plumbing shared by server, client and probe, on libc sockets (native/udp.ts): batched
 * receives, and multicast sent out of a chosen interface.
 *
 * @module
 */

import { UdpSocket } from "../../native/udp.ts";
import { encodePacket, type Packet, type PacketKey } from "./wire.ts";

export type { UdpSocket };

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

/**
 * Kernel buffers of every mcdist socket. A receiver's event loop stops for tens of milliseconds
 * while its host makes VMs, and a datagram of one page holds about 8 KiB of buffer (its skb's
 * truesize). At 4 MiB, hosts starting four clones each dropped 1,000–3,000 of 4,200 pages, which
 * then had to be sent again; at 32 MiB (taken only as used) none. A full send buffer loses
 * datagrams before they leave.
 */
export const RECEIVE_BUFFER_BYTES = 32 << 20;
export const SEND_BUFFER_BYTES = 4 << 20;

/** A UDP socket bound to `address:port` (port 0: any). */
export function openSocket(address: string, port: number, reuseAddr = false): UdpSocket {
  return UdpSocket.bind(address, port, {
    reuseAddr,
    receiveBuffer: RECEIVE_BUFFER_BYTES,
    sendBuffer: SEND_BUFFER_BYTES,
  });
}

/**
 * A socket that receives `group` on `port` via `iface`. Bound to the wildcard address with
 * SO_REUSEADDR so that every client on a host (one per fork, or several processes) gets a copy.
 */
export function openGroupReceiver(group: string, port: number, iface: string): UdpSocket {
  const socket = openSocket("0.0.0.0", port, true);
  try {
    socket.joinGroup(group, iface);
  } catch (error) {
    void socket.close();
    throw new Error(`Cannot join multicast group ${group} on ${iface}: ${error}`, { cause: error });
  }
  return socket;
}

/**
 * Routes datagrams through the optional shim to `handle`. The bytes are valid during the call
 * only (a copy goes to a shim, which may deliver later).
 */
export function onDatagram(
  socket: UdpSocket,
  shim: InboundShim | undefined,
  handle: (bytes: Uint8Array, from: Endpoint) => void,
): void {
  socket.receive((bytes, from) => {
    if (shim === undefined) handle(bytes, from);
    else shim(bytes.slice(), (delivered) => handle(delivered, from));
  });
}

/** Stamps packets of one sending endpoint with its random id and rising sequence numbers. */
export class PacketStamp {
  #sender = randomSender();
  #seq = 0;

  /** The sender id of the latest packet stamped. */
  get sender(): number {
    return this.#sender;
  }

  /** The seq of the latest packet stamped. */
  get seq(): number {
    return this.#seq;
  }

  encode(packet: Omit<Packet, "sender" | "seq" | "time">, key: PacketKey): Uint8Array {
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
