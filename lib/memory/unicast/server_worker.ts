/**
 * The unicast page server's worker: one thread owning every connection of the agent's memory
 * server. It accepts, authenticates (WIRE.md), reads pages from shared memory
 * (../shared_pages.ts) straight into its send buffer, seals PAGES frames in place and writes
 * them with non-blocking sockets driven by poll(2), so a clone's fault never waits for the
 * agent's JavaScript event loop. Only commands (add, remove, close) go through its event loop.
 *
 * Protocol with the owner: server_protocol.ts.
 *
 * @module
 */

/// <reference lib="deno.worker" />

import {
  close,
  Errno,
  MSG_DONTWAIT,
  poll,
  POLLERR,
  POLLFD_SIZE,
  POLLHUP,
  POLLIN,
  POLLOUT,
  pollSpinning,
  read,
  recv,
  send,
  SyscallError,
  tcpAccept,
} from "../../../native/libc.ts";
import { liveMacContexts } from "../../../native/libcrypto.ts";
import { toHex } from "../../backend/wasm/fork_descriptor.ts";
import { PAGE_PRESENT } from "../page_mark.ts";
import { SharedPageReader } from "../shared_pages.ts";
import {
  type AddFork,
  type FromServerWorker,
  GEN,
  type InitServer,
  MAC_CONTEXTS,
  STAT_BYTES_RECEIVED,
  STAT_BYTES_SENT,
  STAT_PACKETS_RECEIVED,
  STAT_PACKETS_SENT,
  STAT_REJECTED,
  type ToServerWorker,
} from "./server_protocol.ts";
import {
  decodeFrame,
  decodeHeader,
  encodeFrame,
  type Frame,
  FRAME_ERROR,
  FRAME_HELLO,
  FRAME_PAGES,
  FRAME_REQUEST,
  FrameReader,
  HEADER_BYTES,
  helloAuth,
  MAC_BYTES,
  MAX_BODY_BYTES,
  MAX_RUN_PAGES,
  NONCE_BYTES,
  type PageRun,
  sealFrame,
  type SessionAuth,
  sessionAuth,
  writeHeader,
} from "./wire.ts";

interface Fork {
  forkId: Uint8Array;
  key: Uint8Array;
  pageSize: number;
  pageCount: number;
  pageMap: Uint8Array;
  /** Most pages in one PAGES frame. */
  runPages: number;
  pages: SharedPageReader;
  read: BigInt64Array;
  stats: Float64Array;
}

/** One connection; `fork` is set once its HELLO was authenticated. */
interface Session {
  fd: number;
  input: FrameReader;
  nonce: Uint8Array;
  fork?: Fork;
  rx: number;
  tx: number;
  /** Set with `fork`; each holds a cipher context, freed when the session ends. */
  rxAuth?: SessionAuth;
  txAuth?: SessionAuth;
  /** Runs asked for, answered in order: runs[runAt] from page `next` on. */
  runs: PageRun[];
  runAt: number;
  next: number;
  /** Bytes of already sealed frames the socket did not take yet; go before any new frame. */
  unsent?: Uint8Array;
  /** A HELLO for a fork not known yet while commands were pending: handled after them. */
  hello?: Uint8Array;
}

/** The connection ended (peer closed, reset) or misbehaved; it is closed. */
class SessionEnd extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SessionEnd";
  }
}

/** How long to spin for the next request before sleeping (pollSpinning). */
const SPIN_US = 100;
const ZERO_NONCE = new Uint8Array(NONCE_BYTES);
const MAX_FRAME = HEADER_BYTES + MAX_BODY_BYTES + MAC_BYTES;
/**
 * Frames are built here, then handed to the socket in one send(2): at most two full PAGES frames
 * (~512 KiB) a turn, so a bulk transfer costs few system calls yet delays another connection's
 * fault by ~0.25 ms at most. Owned by this thread for its life.
 */
const txBuf = new Uint8Array(2 * MAX_FRAME);
const txView = new DataView(txBuf.buffer);
/** Requests are small: one receive buffer for every connection, read synchronously. */
const rxBuf = new Uint8Array(64 * 1024);
/** A connection with this many runs unanswered is not read until it catches up. */
const MAX_QUEUED_RUNS = 16 * 4096;
/** Answered runs a connection keeps before its queue is compacted. */
const ANSWERED_KEPT = 1024;
const AGAIN: readonly number[] = [Errno.EAGAIN];

let init: InitServer | undefined;
let control: Int32Array;
let total: Float64Array;
let knownGen = 0;
let closed = false;
const forks = new Map<string, Fork>();
let sessions: Session[] = [];
// struct pollfd array (eventfd, listener, sessions), 8 bytes each; grown with the sessions.
let pollFds = new Uint8Array(16 * POLLFD_SIZE);
let pollView = new DataView(pollFds.buffer);
// eventfd counter (u64): 8 bytes, read synchronously.
const eventBuf = new Uint8Array(8);

function post(message: FromServerWorker): void {
  self.postMessage(message);
}

function commandsPending(): boolean {
  return Atomics.load(control, GEN) !== knownGen;
}

/** Serve until a command arrives (the generation moves). */
function serve(): void {
  const { efd, listenFd } = init!;
  for (;;) {
    if (commandsPending()) return;
    const count = 2 + sessions.length;
    if (pollFds.byteLength < count * POLLFD_SIZE) {
      pollFds = new Uint8Array(2 * count * POLLFD_SIZE);
      pollView = new DataView(pollFds.buffer);
    }
    setPollFd(0, efd, POLLIN);
    setPollFd(1, listenFd, POLLIN);
    sessions.forEach((s, i) => setPollFd(2 + i, s.fd, interest(s)));
    // With clones connected, the next request likely follows within µs: spin before sleeping.
    const ready = sessions.length > 0
      ? pollSpinning(pollFds, count, SPIN_US, -1)
      : poll(pollFds, count, -1);
    if (ready <= 0) continue;
    if (revents(0) & POLLIN) read("read eventfd", efd, eventBuf, AGAIN);
    if (revents(1) & POLLIN) acceptAll();
    const polled = sessions.slice(0, count - 2);
    polled.forEach((s, i) => {
      const events = revents(2 + i);
      if (events !== 0 && s.fd >= 0) guarded(s, () => onReady(s, events));
    });
  }
}

function setPollFd(index: number, fd: number, events: number): void {
  pollView.setInt32(index * POLLFD_SIZE, fd, true);
  pollView.setInt16(index * POLLFD_SIZE + 4, events, true);
  pollView.setInt16(index * POLLFD_SIZE + 6, 0, true);
}

function revents(index: number): number {
  return pollView.getInt16(index * POLLFD_SIZE + 6, true);
}

/** Read while the connection keeps up and has no HELLO waiting; write while it owes bytes. */
function interest(s: Session): number {
  const readable = s.hello === undefined && s.runs.length - s.runAt < MAX_QUEUED_RUNS;
  const writable = s.unsent !== undefined || s.runAt < s.runs.length;
  return (readable ? POLLIN : 0) | (writable ? POLLOUT : 0);
}

function acceptAll(): void {
  for (;;) {
    let fd: number;
    try {
      fd = tcpAccept(init!.listenFd);
    } catch {
      return; // out of descriptors: the pending connection waits for the next round
    }
    if (fd < 0) return;
    sessions.push({
      fd,
      input: new FrameReader(),
      nonce: crypto.getRandomValues(new Uint8Array(NONCE_BYTES)),
      rx: 0,
      tx: 0,
      runs: [],
      runAt: 0,
      next: 0,
    });
  }
}

/** Run `step` for a connection; closes it when it ends or fails. */
function guarded(s: Session, step: () => void): void {
  try {
    step();
  } catch (e) {
    if (!(e instanceof SessionEnd) && !(e instanceof SyscallError)) throw e;
    endSession(s);
  }
}

function endSession(s: Session): void {
  if (s.fd < 0) return;
  close(s.fd);
  s.fd = -1;
  s.rxAuth?.free();
  s.txAuth?.free();
  Atomics.store(control, MAC_CONTEXTS, liveMacContexts());
  sessions = sessions.filter((x) => x !== s);
}

function onReady(s: Session, events: number): void {
  if (events & (POLLIN | POLLERR | POLLHUP)) receive(s);
  if (s.fd >= 0 && s.hello === undefined) pump(s);
}

function receive(s: Session): void {
  const n = recv("recv from page client", s.fd, rxBuf, MSG_DONTWAIT, AGAIN);
  if (n === -Errno.EAGAIN) return;
  if (n === 0) throw new SessionEnd("closed by the client");
  s.input.push(rxBuf.subarray(0, n));
  frames(s);
}

function frames(s: Session): void {
  if (s.hello !== undefined) return; // its HELLO goes first, once commands are applied
  for (;;) {
    let next: ReturnType<FrameReader["next"]>;
    try {
      next = s.input.next();
    } catch {
      reject(s.fork);
      throw new SessionEnd("bad frame header");
    }
    if (next === undefined) return;
    if (!frame(s, next.header.forkId, next.bytes)) return;
  }
}

/** Handle one whole frame; false when it must wait for pending commands. */
function frame(s: Session, forkId: Uint8Array, bytes: Uint8Array): boolean {
  // A session's fork is live (removal closes its sessions): only a HELLO needs the table.
  const fork = s.fork !== undefined && sameId(s.fork.forkId, forkId)
    ? s.fork
    : forks.get(toHex(forkId));
  if (fork === undefined || (s.fork !== undefined && s.fork !== fork)) {
    if (fork === undefined && s.fork === undefined && commandsPending()) {
      s.hello = bytes.slice(); // maybe its fork is being added: decide once commands are applied
      return false;
    }
    reject(undefined); // unknown or removed fork: nobody here can authenticate it
    throw new SessionEnd("unknown fork");
  }
  count(fork, STAT_BYTES_RECEIVED, bytes.byteLength, STAT_PACKETS_RECEIVED);
  let f: Frame;
  try {
    f = decodeFrame(bytes, s.rxAuth ?? helloAuth(fork.key, ZERO_NONCE));
  } catch {
    reject(fork);
    throw new SessionEnd("bad frame");
  }
  if (s.fork === undefined) {
    if (f.type !== FRAME_HELLO || f.seq !== 0) {
      reject(fork);
      throw new SessionEnd("no hello");
    }
    s.fork = fork;
    s.rxAuth = sessionAuth(fork.key, f.nonce, s.nonce, "client");
    s.txAuth = sessionAuth(fork.key, f.nonce, s.nonce, "server");
    Atomics.store(control, MAC_CONTEXTS, liveMacContexts());
    const hello = encodeFrame(
      {
        type: FRAME_HELLO,
        seq: s.tx++,
        forkId: fork.forkId,
        nonce: s.nonce,
        pageSize: fork.pageSize,
        pageCount: fork.pageCount,
      },
      helloAuth(fork.key, f.nonce),
    );
    count(fork, STAT_BYTES_SENT, hello.byteLength, STAT_PACKETS_SENT);
    s.unsent = hello;
    return true;
  }
  if (f.seq !== ++s.rx || f.type !== FRAME_REQUEST) {
    reject(fork);
    throw new SessionEnd("frame out of order");
  }
  if (s.runAt >= ANSWERED_KEPT) { // drop answered runs (a busy session may never run dry)
    s.runs = s.runs.slice(s.runAt);
    s.runAt = 0;
  }
  for (const run of f.runs) s.runs.push(run);
  return true;
}

function sameId(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return a.byteLength === b.byteLength;
}

/** Send what the connection is owed: one batch a turn, so every connection gets its turn. */
function pump(s: Session): void {
  if (s.unsent !== undefined) {
    const sent = sendSome(s, s.unsent);
    if (sent < s.unsent.byteLength) {
      s.unsent = s.unsent.subarray(sent);
      return;
    }
    s.unsent = undefined;
  }
  if (s.runAt === s.runs.length) return;
  const length = fillFrames(s);
  const sent = sendSome(s, txBuf.subarray(0, length));
  if (sent < length) s.unsent = txBuf.slice(sent, length);
}

/** Bytes of `bytes` the socket took now (all, or fewer when its buffer is full). */
function sendSome(s: Session, bytes: Uint8Array): number {
  let done = 0;
  while (done < bytes.byteLength) {
    const n = send("send to page client", s.fd, bytes.subarray(done), MSG_DONTWAIT, AGAIN);
    if (n < 0) break;
    done += n;
  }
  return done;
}

/**
 * Seal the next frames owed to `s` into txBuf, up to its size: PAGES for the PRESENT pieces of
 * each run (zero, untouched, hinted and free pages are never sent), an ERROR for a run outside
 * the fork. Returns the bytes written.
 */
function fillFrames(s: Session): number {
  const fork = s.fork!;
  const ps = fork.pageSize;
  let at = 0;
  while (s.runAt < s.runs.length) {
    const run = s.runs[s.runAt];
    if (run.count === 0 || run.first + run.count > fork.pageCount) {
      const error = encodeFrame({
        type: FRAME_ERROR,
        seq: s.tx,
        forkId: fork.forkId,
        message: `pages ${run.first}+${run.count} outside the fork's ${fork.pageCount}`,
      }, s.txAuth!);
      if (at + error.byteLength > txBuf.byteLength) break;
      s.tx++;
      txBuf.set(error, at);
      at += error.byteLength;
      count(fork, STAT_BYTES_SENT, error.byteLength, STAT_PACKETS_SENT);
      nextRun(s);
      continue;
    }
    const end = run.first + run.count;
    let first = Math.max(s.next, run.first);
    while (first < end && fork.pageMap[first] !== PAGE_PRESENT) first++;
    if (first === end) {
      nextRun(s);
      continue;
    }
    let last = first + 1;
    while (last < end && last - first < fork.runPages && fork.pageMap[last] === PAGE_PRESENT) {
      last++;
    }
    const pages = last - first;
    const body = 8 + pages * ps;
    const length = HEADER_BYTES + body + MAC_BYTES;
    if (at + length > txBuf.byteLength) break;
    const out = txBuf.subarray(at, at + length);
    writeHeader(out, FRAME_PAGES, s.tx, body, fork.forkId);
    txView.setUint32(at + HEADER_BYTES, first, false);
    txView.setUint32(at + HEADER_BYTES + 4, pages, false);
    fork.pages.read(first, pages, out.subarray(HEADER_BYTES + 8, HEADER_BYTES + body));
    Atomics.add(fork.read, 0, BigInt(pages));
    sealFrame(out, s.tx++, s.txAuth!);
    count(fork, STAT_BYTES_SENT, length, STAT_PACKETS_SENT);
    at += length;
    s.next = last;
  }
  return at;
}

function nextRun(s: Session): void {
  s.runAt++;
  s.next = 0;
}

function count(fork: Fork, bytesSlot: number, bytes: number, packetsSlot: number): void {
  fork.stats[bytesSlot] += bytes;
  fork.stats[packetsSlot]++;
  total[bytesSlot] += bytes;
  total[packetsSlot]++;
}

function reject(fork: Fork | undefined): void {
  if (fork !== undefined) fork.stats[STAT_REJECTED]++;
  total[STAT_REJECTED]++;
}

function addFork(message: AddFork): void {
  forks.set(toHex(message.forkId), {
    forkId: message.forkId,
    key: message.key,
    pageSize: message.pageSize,
    pageCount: message.pageCount,
    pageMap: message.pageMap,
    runPages: Math.min(MAX_RUN_PAGES, Math.floor((MAX_BODY_BYTES - 8) / message.pageSize)),
    pages: new SharedPageReader(message.pages.source, message.pageSize, message.pageCount),
    read: new BigInt64Array(message.pages.read),
    stats: new Float64Array(message.stats),
  });
}

function removeFork(forkId: Uint8Array): void {
  const fork = forks.get(toHex(forkId));
  if (fork === undefined) return;
  forks.delete(toHex(forkId));
  for (const s of sessions) if (s.fork === fork) endSession(s);
}

function apply(message: ToServerWorker): void {
  switch (message.kind) {
    case "init":
      init = message;
      control = new Int32Array(message.control);
      total = new Float64Array(message.total);
      return;
    case "add":
      addFork(message);
      break;
    case "remove":
      removeFork(message.forkId);
      break;
    case "close":
      for (const s of [...sessions]) endSession(s);
      forks.clear();
      closed = true;
      break;
  }
  knownGen = message.gen;
  post({ kind: "applied", gen: message.gen });
}

/** Back to serving once every pending command is applied; deferred HELLOs first. */
function resume(): void {
  if (closed || commandsPending()) return;
  for (const s of sessions.filter((x) => x.hello !== undefined)) {
    const hello = s.hello!;
    s.hello = undefined;
    guarded(s, () => {
      frame(s, decodeHeader(hello).forkId, hello);
      frames(s);
      pump(s);
    });
  }
  serve();
}

self.onmessage = (event: MessageEvent<ToServerWorker>) => {
  try {
    apply(event.data);
    resume();
  } catch (e) {
    post({ kind: "error", message: e instanceof Error ? e.message : String(e) });
  }
};
