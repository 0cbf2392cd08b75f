/**
 * One end of a control-plane WebSocket: parses every frame against a schema,
 * answers requests through a handler, and matches replies to the requests this
 * end sent. A malformed frame is counted and logged, never thrown.
 */
import type { z } from "zod";
import { PROTOCOL_VERSION } from "../version.ts";
import type { Logger } from "../log.ts";
import { describeIssues, type ErrorBody, type Reply } from "./messages.ts";

export class RemoteError extends Error {
  readonly code: string;
  constructor(body: ErrorBody) {
    super(body.message);
    this.name = "RemoteError";
    this.code = body.code;
  }
}

export class PeerClosedError extends Error {
  constructor(message = "Cannot complete request: connection closed") {
    super(message);
    this.name = "PeerClosedError";
  }
}

/** A message with `type: "request"` carrying a call; anything else is pushed to `onMessage`. */
interface RequestLike {
  type: "request";
  id: number;
  call: unknown;
}

export interface PeerOptions<In extends { type: string }> {
  socket: WebSocket;
  schema: z.ZodType<In>;
  logger: Logger;
  /** Answers a request; a thrown error becomes an error reply. */
  onRequest?: (call: Extract<In, RequestLike>["call"]) => Promise<unknown>;
  /** Every valid message that is neither a request nor a reply. */
  onMessage?: (message: Exclude<In, RequestLike | Reply>) => void;
  onRejected?: (reason: string) => void;
  onClose?: () => void;
}

export class Peer<In extends { type: string }> {
  #options: PeerOptions<In>;
  #nextId = 1;
  #pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  #closed = false;

  constructor(options: PeerOptions<In>) {
    this.#options = options;
    const { socket } = options;
    socket.addEventListener("message", (e) => this.#receive(e.data));
    socket.addEventListener("close", () => this.#shutdown());
    socket.addEventListener("error", () => this.#shutdown());
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Sends a message object as is (the caller adds `type`); the version is added here. */
  send(message: Record<string, unknown>): void {
    if (this.#closed || this.#options.socket.readyState !== WebSocket.OPEN) return;
    this.#options.socket.send(JSON.stringify({ v: PROTOCOL_VERSION, ...message }));
  }

  /** Sends a request and resolves with the reply's result, or rejects with its error. */
  request(call: unknown, timeoutMs = 30_000): Promise<unknown> {
    if (this.#closed) return Promise.reject(new PeerClosedError());
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`Cannot complete request: no reply in ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, {
        resolve: (v) => (clearTimeout(timer), resolve(v)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
      this.send({ type: "request", id, call });
    });
  }

  close(code = 1000, reason = ""): void {
    try {
      this.#options.socket.close(code, reason);
    } catch {
      // Already closing: the close event still fires and shuts the peer down.
    }
    this.#shutdown();
  }

  #shutdown(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const p of this.#pending.values()) p.reject(new PeerClosedError());
    this.#pending.clear();
    this.#options.onClose?.();
  }

  #reject(reason: string): void {
    this.#options.logger.warn("rejected message", { reason });
    this.#options.onRejected?.(reason);
  }

  #receive(data: unknown): void {
    if (typeof data !== "string") return this.#reject("binary frame");
    let json: unknown;
    try {
      json = JSON.parse(data);
    } catch {
      return this.#reject("not JSON");
    }
    const parsed = this.#options.schema.safeParse(json);
    if (!parsed.success) return this.#reject(describeIssues(parsed.error));
    const message: { type: string } = parsed.data;
    if (message.type === "reply") return this.#settle(message as Reply);
    if (message.type === "request") return void this.#answer(message as RequestLike);
    this.#options.onMessage?.(message as Exclude<In, RequestLike | Reply>);
  }

  #settle(reply: Reply): void {
    const pending = this.#pending.get(reply.id);
    if (!pending) return this.#reject(`reply to unknown request ${reply.id}`);
    this.#pending.delete(reply.id);
    if (reply.ok) pending.resolve(reply.result);
    else pending.reject(new RemoteError(reply.error));
  }

  async #answer(request: RequestLike): Promise<void> {
    const handler = this.#options.onRequest;
    try {
      if (!handler) throw new Error("this end answers no requests");
      const result = await handler(request.call as Extract<In, RequestLike>["call"]);
      this.send({ type: "reply", id: request.id, ok: true, result: result ?? null });
    } catch (e) {
      const err = e as Error & { code?: string };
      this.send({
        type: "reply",
        id: request.id,
        ok: false,
        error: { code: err.code ?? "internal", message: String(err.message).slice(0, 2000) },
      });
    }
  }
}
