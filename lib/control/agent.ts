/**
 * The agent: joins the master, reports its inventory, heartbeats, and keeps
 * reconnecting (with back-off) for as long as it runs, so a restarted master
 * finds its hosts again by itself.
 */
import type { Logger } from "../log.ts";
import { VERSION } from "../version.ts";
import {
  type AgentCall,
  type BackendInfo,
  type Inventory,
  type MasterCall,
  MasterMessage,
  type MemoryTransportInfo,
  type VmEvent,
  type Welcome,
} from "./messages.ts";
import { Peer } from "./peer.ts";

export interface AgentOptions {
  /** The master's host:port. */
  master: string;
  token: string;
  name: string;
  slots: number;
  /** This host's node name in the resource manager, when it differs from `name`. */
  schedulerNode?: string;
  backends: BackendInfo[];
  /** host:port where this agent's data plane listens (advertised to other agents). */
  dataAddress: string;
  /** How this host distributes pages to clones on other hosts. */
  memoryTransport?: MemoryTransportInfo;
  logger: Logger;
  /** Answers calls the master makes on this agent. */
  onRequest?: (call: MasterCall) => Promise<unknown>;
}

export class AgentError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "AgentError";
  }
}

const BACKOFF_MIN_MS = 200;
/** VM events kept while the master is unreachable, sent when it is back. */
const EVENT_BACKLOG = 100_000;
const BACKOFF_MAX_MS = 5_000;

export class Agent {
  #o: AgentOptions;
  #peer?: Peer<MasterMessage>;
  #heartbeat?: ReturnType<typeof setInterval>;
  #seq = 0;
  #stopped = false;
  #backoff = BACKOFF_MIN_MS;
  #fatal: PromiseWithResolvers<never> = Promise.withResolvers();
  #welcomed: PromiseWithResolvers<Welcome> = Promise.withResolvers();
  #backlog: VmEvent[] = [];
  #online = false;

  constructor(options: AgentOptions) {
    this.#o = options;
    this.#fatal.promise.catch(() => {});
    this.#connect();
  }

  /** Resolves at the first welcome. */
  get joined(): Promise<Welcome> {
    return this.#welcomed.promise;
  }

  /** Rejects when the master refuses this agent (wrong token, bad inventory): no retry helps. */
  get refused(): Promise<never> {
    return this.#fatal.promise;
  }

  get connected(): boolean {
    return this.#peer !== undefined && !this.#peer.closed;
  }

  inventory(): Inventory {
    return {
      ...(this.#o.schedulerNode ? { schedulerNode: this.#o.schedulerNode } : {}),
      cores: navigator.hardwareConcurrency || 1,
      memoryBytes: Deno.systemMemoryInfo().total,
      slots: this.#o.slots,
      backends: this.#o.backends,
      dataAddress: this.#o.dataAddress,
      version: VERSION,
      ...(this.#o.memoryTransport ? { memoryTransport: this.#o.memoryTransport } : {}),
    };
  }

  /** Calls the master; fails at once when not connected. */
  request(call: AgentCall, timeoutMs?: number): Promise<unknown> {
    if (!this.#peer || this.#peer.closed) {
      return Promise.reject(new AgentError("Cannot reach the master: not connected"));
    }
    return this.#peer.request(call, timeoutMs);
  }

  /** Reports a VM event; kept for later while the master is unreachable. */
  event(event: VmEvent): void {
    if (this.#online && this.#peer && !this.#peer.closed) {
      this.#peer.send({ type: "event", event });
    } else if (this.#backlog.length < EVENT_BACKLOG) {
      this.#backlog.push(event);
    }
  }

  close(): void {
    this.#stopped = true;
    clearInterval(this.#heartbeat);
    this.#peer?.close(1000, "agent stopping");
  }

  #connect(): void {
    if (this.#stopped) return;
    const log = this.#o.logger;
    let socket: WebSocket;
    try {
      socket = new WebSocket(`ws://${this.#o.master}/v1/agent`);
    } catch (e) {
      this.#fatal.reject(new AgentError(`Cannot join ${this.#o.master}: ${(e as Error).message}`));
      return;
    }
    const peer: Peer<MasterMessage> = new Peer({
      socket,
      schema: MasterMessage,
      logger: log,
      onRequest: (call) =>
        this.#o.onRequest ? this.#o.onRequest(call) : Promise.reject(new Error("no handler")),
      onMessage: (m) => {
        if (m.type === "welcome") {
          this.#backoff = BACKOFF_MIN_MS;
          log.info("joined", { master: this.#o.master, host: m.host });
          this.#startHeartbeat(peer, m.heartbeatMs);
          this.#online = true;
          for (const event of this.#backlog.splice(0)) peer.send({ type: "event", event });
          this.#welcomed.resolve(m);
        } else if (m.type === "refused") {
          this.#stopped = true;
          this.#fatal.reject(new AgentError(`Cannot join ${this.#o.master}: ${m.reason}`));
        }
      },
      onClose: () => {
        this.#online = false;
        clearInterval(this.#heartbeat);
        if (this.#stopped) return;
        log.debug("disconnected; retrying", { inMs: this.#backoff });
        setTimeout(() => this.#connect(), this.#backoff);
        this.#backoff = Math.min(BACKOFF_MAX_MS, this.#backoff * 2);
      },
    });
    this.#peer = peer;
    socket.addEventListener("open", () => {
      peer.send({
        type: "hello",
        token: this.#o.token,
        name: this.#o.name,
        inventory: this.inventory(),
      });
    });
  }

  #startHeartbeat(peer: Peer<MasterMessage>, everyMs: number): void {
    clearInterval(this.#heartbeat);
    this.#heartbeat = setInterval(
      () => peer.send({ type: "heartbeat", seq: this.#seq++ }),
      everyMs,
    );
  }
}
