/**
 * UDP sockets on libc, for mcdist's datagrams. A receiver takes a batch of datagrams per wake-up
 * (recvmmsg on a thread of Deno's blocking pool, or on its own thread while more are queued) into
 * buffers allocated once, and handed to the receiver in place; a send allocates nothing. Why not
 * node:dgram: under Deno it costs ~15 µs and a fresh zero-filled 64 KiB buffer per datagram, and
 * with the garbage that makes it was a fifth of all CPU time of a 16-clone fan-out (each host
 * receives every page).
 *
 * struct mmsghdr on x86_64 Linux (64 bytes): struct msghdr { void *msg_name @0; socklen_t
 * msg_namelen @8; struct iovec *msg_iov @16; size_t msg_iovlen @24; void *msg_control @32;
 * size_t msg_controllen @40; int msg_flags @48 } then unsigned msg_len @56. struct iovec
 * { void *base @0; size_t len @8 } (16 bytes). struct ip_mreq { in_addr group; in_addr
 * interface } (8 bytes).
 *
 * @module
 */

import {
  close,
  receiveMessages,
  receiveMessagesNow,
  sendTo,
  setReceiveBuffer,
  setSendBuffer,
  setSocketOption,
  shutdownReceive,
  SOCKADDR_IN_SIZE,
  sockaddrIn,
  udpBind,
} from "./libc.ts";

/** A UDP address. */
export interface UdpEndpoint {
  address: string;
  port: number;
}

export interface UdpOptions {
  /** SO_REUSEADDR: several sockets (processes) receive one multicast port. */
  reuseAddr?: boolean;
  /** Kernel buffers in bytes (past net.core.{r,w}mem_max as root). */
  receiveBuffer?: number;
  sendBuffer?: number;
  /** Datagrams taken per wake-up. */
  batch?: number;
}

const MMSGHDR_SIZE = 64;
const IOVEC_SIZE = 16;
/** Largest UDP payload over IPv4: any datagram fits its slot, whatever the sender's MTU. */
const SLOT_BYTES = 65536;
const MSG_TRUNC = 0x20;
/** recvmmsg flag: wait for the first datagram only, then take what is queued. */
const MSG_WAITFORONE = 0x10000;
/**
 * Batches taken on the event loop's own thread in a row while datagrams keep coming: each saves
 * a round trip through the blocking pool (two thread wake-ups and a promise); then the receiver
 * waits once on the pool all the same, so that timers and other sockets get their turn.
 */
const MAX_BATCHES_NOW = 8;
const IPPROTO_IP = 0;
const IP_MULTICAST_IF = 32;
const IP_MULTICAST_TTL = 33;
const IP_MULTICAST_LOOP = 34;
const IP_ADD_MEMBERSHIP = 35;
/** Sockaddrs kept for destinations sent to, and senders (a server answers a handful of hosts). */
const MAX_DESTINATIONS = 1024;
/** Pause after a failed receive, so that a persistent failure does not spin. */
const RETRY_MS = 10;

/** One UDP socket; {@link receive} starts delivering datagrams, {@link close} stops. */
export class UdpSocket {
  readonly port: number;
  #fd: number;
  #batch: number;
  #destinations = new Map<string, Uint8Array>();
  #receiving: Promise<void> | undefined;
  #ring: ReceiveRing | undefined;
  #closed = false;

  private constructor(fd: number, port: number, batch: number) {
    this.#fd = fd;
    this.port = port;
    this.#batch = batch;
  }

  /** A socket bound to `address:port` (port 0: any). Throws naming the address. */
  static bind(address: string, port: number, options: UdpOptions = {}): UdpSocket {
    const bound = udpBind(address, port, options.reuseAddr ?? false);
    try {
      if (options.receiveBuffer !== undefined) setReceiveBuffer(bound.fd, options.receiveBuffer);
      if (options.sendBuffer !== undefined) setSendBuffer(bound.fd, options.sendBuffer);
    } catch (error) {
      close(bound.fd);
      throw error;
    }
    return new UdpSocket(bound.fd, bound.port, options.batch ?? 32);
  }

  /** Receive `group` through the interface holding IPv4 address `iface`. */
  joinGroup(group: string, iface: string): void {
    const mreq = new Uint8Array(8);
    mreq.set(sockaddrIn(group, 0, 0, `join ${group}`).subarray(4, 8), 0);
    mreq.set(sockaddrIn(iface, 0, 0, `join ${group} on ${iface}`).subarray(4, 8), 4);
    setSocketOption(`join ${group} on ${iface}`, this.#fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, mreq);
  }

  /** Multicast leaves through `iface` with `ttl`, looped back to this host's members. */
  setMulticastSending(iface: string, ttl: number): void {
    const op = `send multicast on ${iface}`;
    const address = sockaddrIn(iface, 0, 0, op).subarray(4, 8);
    setSocketOption(op, this.#fd, IPPROTO_IP, IP_MULTICAST_IF, address);
    setSocketOption(op, this.#fd, IPPROTO_IP, IP_MULTICAST_TTL, int32(ttl));
    setSocketOption(op, this.#fd, IPPROTO_IP, IP_MULTICAST_LOOP, int32(1));
  }

  /**
   * Sends one datagram now, or loses it (a full buffer, no route): the protocols above expect
   * loss. False when it did not leave.
   */
  send(bytes: Uint8Array, to: UdpEndpoint): boolean {
    if (this.#closed) return false;
    const key = `${to.address}:${to.port}`;
    let addr = this.#destinations.get(key);
    if (addr === undefined) {
      addr = sockaddrIn(to.address, to.port, 1, `send to ${key}`);
      if (this.#destinations.size >= MAX_DESTINATIONS) this.#destinations.clear();
      this.#destinations.set(key, addr);
    }
    return sendTo(this.#fd, bytes, addr) >= 0;
  }

  /**
   * Calls `handle` with every datagram that arrives and its sender, until {@link close}. The
   * bytes are a view of the receive buffer, valid during the call only: copy what is kept.
   * Datagrams too large for a slot are dropped.
   */
  receive(handle: (bytes: Uint8Array, from: UdpEndpoint) => void): void {
    if (this.#receiving !== undefined) throw new Error("Cannot receive twice on one UDP socket");
    this.#receiving = this.#receiveLoop(handle);
  }

  /** Stops receiving (a receive in flight returns) and closes the socket. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#receiving !== undefined) {
      shutdownReceive(this.#fd);
      await this.#receiving;
    }
    close(this.#fd);
  }

  async #receiveLoop(handle: (bytes: Uint8Array, from: UdpEndpoint) => void): Promise<void> {
    const ring = new ReceiveRing(this.#batch);
    // Keeps the ring reachable while the kernel may write through its raw pointers: a local
    // that is dead after an await is not kept alive by the suspended function.
    this.#ring = ring;
    let batchesNow = 0;
    while (!this.#closed) {
      ring.rearm();
      let count = batchesNow < MAX_BATCHES_NOW
        ? receiveMessagesNow(this.#fd, ring.vec, this.#batch)
        : 0;
      if (count > 0) batchesNow++;
      else {
        batchesNow = 0;
        count = await receiveMessages(this.#fd, ring.vec, this.#batch, MSG_WAITFORONE);
      }
      if (this.#closed) return;
      if (count < 0) {
        await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
        continue;
      }
      // A handler may close the socket: nothing is delivered after that.
      for (let i = 0; i < count && !this.#closed; i++) {
        const datagram = ring.datagram(i);
        if (datagram !== undefined) handle(datagram.bytes, datagram.from);
      }
    }
  }
}

/**
 * The buffers of one receiver, allocated once: `batch` struct mmsghdr, each with one iovec over a
 * 64 KiB slot and a struct sockaddr_in for the sender.
 */
class ReceiveRing {
  readonly vec: Uint8Array;
  #view: DataView;
  #iovs: Uint8Array;
  #names: Uint8Array;
  #namesView: DataView;
  #slots: Uint8Array;
  /** Senders seen, by address and port: one object each rather than a string per datagram. */
  #senders = new Map<number, UdpEndpoint>();

  constructor(batch: number) {
    this.vec = new Uint8Array(batch * MMSGHDR_SIZE);
    this.#view = new DataView(this.vec.buffer);
    this.#iovs = new Uint8Array(batch * IOVEC_SIZE);
    this.#names = new Uint8Array(batch * SOCKADDR_IN_SIZE);
    this.#namesView = new DataView(this.#names.buffer);
    this.#slots = new Uint8Array(batch * SLOT_BYTES);
    const iovView = new DataView(this.#iovs.buffer);
    const address = (bytes: Uint8Array, offset: number) =>
      BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(bytes.subarray(offset))));
    for (let i = 0; i < batch; i++) {
      iovView.setBigUint64(i * IOVEC_SIZE, address(this.#slots, i * SLOT_BYTES), true);
      iovView.setBigUint64(i * IOVEC_SIZE + 8, BigInt(SLOT_BYTES), true);
      const m = i * MMSGHDR_SIZE;
      this.#view.setBigUint64(m, address(this.#names, i * SOCKADDR_IN_SIZE), true);
      this.#view.setBigUint64(m + 16, address(this.#iovs, i * IOVEC_SIZE), true);
      this.#view.setBigUint64(m + 24, 1n, true);
    }
  }

  /** Before each receive: the kernel overwrites msg_namelen with the length it wrote. */
  rearm(): void {
    const count = this.vec.byteLength / MMSGHDR_SIZE;
    for (let i = 0; i < count; i++) {
      this.#view.setUint32(i * MMSGHDR_SIZE + 8, SOCKADDR_IN_SIZE, true);
    }
  }

  /** Message `i` of the last receive (a view of its slot), or undefined when it was truncated. */
  datagram(i: number): { bytes: Uint8Array; from: UdpEndpoint } | undefined {
    const m = i * MMSGHDR_SIZE;
    if (this.#view.getInt32(m + 48, true) & MSG_TRUNC) return undefined;
    const length = this.#view.getUint32(m + 56, true);
    return {
      bytes: this.#slots.subarray(i * SLOT_BYTES, i * SLOT_BYTES + length),
      from: this.#sender(i),
    };
  }

  #sender(i: number): UdpEndpoint {
    const name = i * SOCKADDR_IN_SIZE;
    const address = this.#namesView.getUint32(name + 4, false);
    const port = this.#namesView.getUint16(name + 2, false);
    const key = address * 65536 + port;
    let sender = this.#senders.get(key);
    if (sender === undefined) {
      sender = { address: this.#names.subarray(name + 4, name + 8).join("."), port };
      if (this.#senders.size >= MAX_DESTINATIONS) this.#senders.clear();
      this.#senders.set(key, sender);
    }
    return sender;
  }
}

function int32(value: number): Uint8Array {
  return new Uint8Array(new Int32Array([value]).buffer);
}
