/**
 * The master's durable state in SQLite (node:sqlite): hosts, tickets, impromptu
 * clusters and their members. Every mutation is a single statement or a
 * transaction, so a `kill -9` at any point leaves a consistent database.
 */
import { DatabaseSync } from "node:sqlite";
import type {
  BackendInfo,
  CloneMemoryStats,
  ClusterState,
  ClusterView,
  ForkMemoryStats,
  ForkTimeline,
  HostState,
  HostView,
  MemberState,
  MemberView,
  MemoryTransportInfo,
  Placement,
  TicketState,
  TicketView,
  VmView,
} from "./messages.ts";

const SCHEMA_VERSION = 1;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS hosts (
  name TEXT PRIMARY KEY,
  state TEXT NOT NULL,
  backends TEXT NOT NULL,
  cores INTEGER NOT NULL,
  memory_bytes INTEGER NOT NULL,
  slots INTEGER NOT NULL,
  data_address TEXT NOT NULL,
  last_seen TEXT NOT NULL,
  reason TEXT,
  scheduler_node TEXT,
  memory_transport TEXT
);
CREATE TABLE IF NOT EXISTS tickets (
  id TEXT PRIMARY KEY,
  requested INTEGER NOT NULL,
  granted INTEGER NOT NULL,
  state TEXT NOT NULL,
  placements TEXT NOT NULL,
  allocator TEXT NOT NULL,
  source TEXT,
  owner TEXT,
  created_at TEXT NOT NULL,
  expires_at TEXT,
  reason TEXT
);
CREATE TABLE IF NOT EXISTS clusters (
  id TEXT PRIMARY KEY,
  ticket TEXT NOT NULL REFERENCES tickets(id),
  parent_vm TEXT NOT NULL,
  parent_host TEXT NOT NULL,
  state TEXT NOT NULL,
  created_at TEXT NOT NULL,
  timeline TEXT NOT NULL DEFAULT '{}',
  memory TEXT
);
CREATE TABLE IF NOT EXISTS members (
  cluster TEXT NOT NULL REFERENCES clusters(id),
  clone INTEGER NOT NULL,
  vm TEXT NOT NULL,
  host TEXT NOT NULL,
  state TEXT NOT NULL,
  exit_code INTEGER,
  reason TEXT,
  memory TEXT,
  PRIMARY KEY (cluster, clone)
);
CREATE TABLE IF NOT EXISTS vms (
  id TEXT PRIMARY KEY,
  job TEXT NOT NULL,
  host TEXT NOT NULL,
  module TEXT NOT NULL,
  state TEXT NOT NULL,
  exit_code INTEGER,
  reason TEXT,
  created_at TEXT NOT NULL,
  cluster TEXT,
  clone INTEGER
);
`;

export class StoreError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "StoreError";
  }
}

export interface HostRecord {
  name: string;
  memoryTransport?: MemoryTransportInfo;
  schedulerNode?: string;
  state: HostState;
  backends: BackendInfo[];
  cores: number;
  memoryBytes: number;
  slots: number;
  dataAddress: string;
  lastSeen: string;
  reason?: string;
}

export interface TicketRecord {
  id: string;
  requested: number;
  granted: number;
  state: TicketState;
  placements: Placement[];
  allocator: string;
  source?: string;
  owner?: string;
  createdAt: string;
  expiresAt?: string;
  reason?: string;
}

type Row = Record<string, string | number | null>;

export class Store {
  #db: DatabaseSync;

  private constructor(db: DatabaseSync) {
    this.#db = db;
  }

  /** Opens (creating if needed) the database at `path`; ":memory:" for tests. */
  static open(path: string): Store {
    let db: DatabaseSync;
    try {
      db = new DatabaseSync(path);
      db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;");
      db.exec(SCHEMA);
    } catch (e) {
      throw new StoreError(`Cannot open state database ${path}: ${(e as Error).message}`, {
        cause: e,
      });
    }
    const store = new Store(db);
    const version = store.#meta("schema_version");
    if (version === undefined) store.#setMeta("schema_version", String(SCHEMA_VERSION));
    else if (Number(version) !== SCHEMA_VERSION) {
      db.close();
      throw new StoreError(
        `Cannot open state database ${path}: schema version ${version}, this program uses ${SCHEMA_VERSION}`,
      );
    }
    return store;
  }

  close(): void {
    this.#db.close();
  }

  #meta(key: string): string | undefined {
    const row = this.#db.prepare("SELECT value FROM meta WHERE key = ?").get(key) as
      | Row
      | undefined;
    return row ? String(row.value) : undefined;
  }

  #setMeta(key: string, value: string): void {
    this.#db.prepare("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)").run(key, value);
  }

  /** Runs `fn` in one transaction: all of its writes land, or none do. */
  transaction<T>(fn: () => T): T {
    this.#db.exec("BEGIN IMMEDIATE");
    try {
      const result = fn();
      this.#db.exec("COMMIT");
      return result;
    } catch (e) {
      this.#db.exec("ROLLBACK");
      throw e;
    }
  }

  // ---- hosts ----

  upsertHost(h: HostRecord): void {
    this.#db.prepare(
      `INSERT INTO hosts (name, state, backends, cores, memory_bytes, slots, data_address, last_seen, reason, scheduler_node, memory_transport)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT(name) DO UPDATE SET state = excluded.state, backends = excluded.backends,
         cores = excluded.cores, memory_bytes = excluded.memory_bytes, slots = excluded.slots,
         data_address = excluded.data_address, last_seen = excluded.last_seen, reason = excluded.reason,
         scheduler_node = excluded.scheduler_node, memory_transport = excluded.memory_transport`,
    ).run(
      h.name,
      h.state,
      JSON.stringify(h.backends),
      h.cores,
      h.memoryBytes,
      h.slots,
      h.dataAddress,
      h.lastSeen,
      h.reason ?? null,
      h.schedulerNode ?? null,
      h.memoryTransport ? JSON.stringify(h.memoryTransport) : null,
    );
  }

  setHostState(name: string, state: HostState, reason?: string): void {
    this.#db.prepare("UPDATE hosts SET state = ?, reason = ? WHERE name = ?").run(
      state,
      reason ?? null,
      name,
    );
  }

  touchHost(name: string, at: string): void {
    this.#db.prepare("UPDATE hosts SET last_seen = ? WHERE name = ?").run(at, name);
  }

  hosts(): HostRecord[] {
    return (this.#db.prepare("SELECT * FROM hosts ORDER BY name").all() as Row[]).map(hostRecord);
  }

  host(name: string): HostRecord | undefined {
    const row = this.#db.prepare("SELECT * FROM hosts WHERE name = ?").get(name) as Row | undefined;
    return row ? hostRecord(row) : undefined;
  }

  // ---- tickets ----

  insertTicket(t: TicketRecord): void {
    this.#db.prepare(
      `INSERT INTO tickets (id, requested, granted, state, placements, allocator, source, owner, created_at, expires_at, reason)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(
      t.id,
      t.requested,
      t.granted,
      t.state,
      JSON.stringify(t.placements),
      t.allocator,
      t.source ?? null,
      t.owner ?? null,
      t.createdAt,
      t.expiresAt ?? null,
      t.reason ?? null,
    );
  }

  updateTicket(id: string, patch: Partial<Omit<TicketRecord, "id">>): void {
    const current = this.ticket(id);
    if (!current) throw new StoreError(`Cannot update ticket ${id}: no such ticket`);
    const t = { ...current, ...patch };
    this.#db.prepare(
      `UPDATE tickets SET granted = ?, state = ?, placements = ?, source = ?, expires_at = ?, reason = ?
       WHERE id = ?`,
    ).run(
      t.granted,
      t.state,
      JSON.stringify(t.placements),
      t.source ?? null,
      t.expiresAt ?? null,
      t.reason ?? null,
      id,
    );
  }

  ticket(id: string): TicketRecord | undefined {
    const row = this.#db.prepare("SELECT * FROM tickets WHERE id = ?").get(id) as Row | undefined;
    return row ? ticketRecord(row) : undefined;
  }

  /** Tickets still holding slots (granted or in use), oldest first. */
  activeTickets(): TicketRecord[] {
    return (this.#db.prepare(
      "SELECT * FROM tickets WHERE state IN ('pending', 'granted', 'in_use') ORDER BY created_at",
    ).all() as Row[]).map(ticketRecord);
  }

  /** The most recent tickets, newest first. */
  recentTickets(limit = 100): TicketRecord[] {
    return (this.#db.prepare("SELECT * FROM tickets ORDER BY created_at DESC, id LIMIT ?").all(
      limit,
    ) as Row[]).map(ticketRecord);
  }

  // ---- impromptu clusters ----

  insertCluster(c: Omit<ClusterView, "members">, members: MemberView[]): void {
    this.transaction(() => {
      this.#db.prepare(
        "INSERT INTO clusters (id, ticket, parent_vm, parent_host, state, created_at, timeline) VALUES (?, ?, ?, ?, ?, ?, ?)",
      ).run(
        c.id,
        c.ticket,
        c.parentVm,
        c.parentHost,
        c.state,
        c.createdAt,
        JSON.stringify(c.timeline),
      );
      const insert = this.#db.prepare(
        "INSERT INTO members (cluster, clone, vm, host, state, exit_code, reason) VALUES (?, ?, ?, ?, ?, ?, ?)",
      );
      for (const m of members) {
        insert.run(c.id, m.clone, m.vm, m.host, m.state, m.exitCode ?? null, m.reason ?? null);
      }
    });
  }

  /** Merges `patch` into a cluster's fork timeline. */
  updateTimeline(id: string, patch: ForkTimeline): void {
    const c = this.cluster(id);
    if (!c) return;
    this.#db.prepare("UPDATE clusters SET timeline = ? WHERE id = ?").run(
      JSON.stringify({ ...c.timeline, ...patch }),
      id,
    );
  }

  setClusterMemory(id: string, stats: ForkMemoryStats): void {
    this.#db.prepare("UPDATE clusters SET memory = ? WHERE id = ?").run(JSON.stringify(stats), id);
  }

  setMemberMemory(cluster: string, clone: number, stats: CloneMemoryStats): void {
    this.#db.prepare("UPDATE members SET memory = ? WHERE cluster = ? AND clone = ?").run(
      JSON.stringify(stats),
      cluster,
      clone,
    );
  }

  // ---- VMs ----

  insertVm(vm: VmView & { cluster?: string; clone?: number }): void {
    this.#db.prepare(
      `INSERT INTO vms (id, job, host, module, state, exit_code, reason, created_at, cluster, clone)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(
      vm.id,
      vm.job,
      vm.host,
      vm.module,
      vm.state,
      vm.exitCode ?? null,
      vm.reason ?? null,
      vm.createdAt,
      vm.cluster ?? null,
      vm.clone ?? null,
    );
  }

  setVmState(
    id: string,
    state: VmView["state"],
    extra: { exitCode?: number; reason?: string } = {},
  ): void {
    this.#db.prepare("UPDATE vms SET state = ?, exit_code = ?, reason = ? WHERE id = ?").run(
      state,
      extra.exitCode ?? null,
      extra.reason ?? null,
      id,
    );
  }

  vm(id: string): (VmView & { cluster?: string; clone?: number }) | undefined {
    const r = this.#db.prepare("SELECT * FROM vms WHERE id = ?").get(id) as Row | undefined;
    if (!r) return undefined;
    return {
      id: String(r.id),
      job: String(r.job),
      host: String(r.host),
      module: String(r.module),
      state: r.state as VmView["state"],
      ...(r.exit_code !== null ? { exitCode: Number(r.exit_code) } : {}),
      ...(r.reason !== null ? { reason: String(r.reason) } : {}),
      createdAt: String(r.created_at),
      ...(r.cluster !== null ? { cluster: String(r.cluster), clone: Number(r.clone) } : {}),
    };
  }

  /** VMs not yet finished on `host`. */
  liveVmsOn(host: string): string[] {
    return (this.#db.prepare(
      "SELECT id FROM vms WHERE host = ? AND state IN ('starting', 'running')",
    ).all(host) as Row[]).map((r) => String(r.id));
  }

  setClusterState(id: string, state: ClusterState): void {
    this.#db.prepare("UPDATE clusters SET state = ? WHERE id = ?").run(state, id);
  }

  setMemberState(
    cluster: string,
    clone: number,
    state: MemberState,
    extra: { exitCode?: number; reason?: string } = {},
  ): void {
    this.#db.prepare(
      "UPDATE members SET state = ?, exit_code = ?, reason = ? WHERE cluster = ? AND clone = ?",
    ).run(state, extra.exitCode ?? null, extra.reason ?? null, cluster, clone);
  }

  cluster(id: string): ClusterView | undefined {
    const row = this.#db.prepare("SELECT * FROM clusters WHERE id = ?").get(id) as Row | undefined;
    return row ? this.#clusterView(row) : undefined;
  }

  recentClusters(limit = 50): ClusterView[] {
    return (this.#db.prepare("SELECT * FROM clusters ORDER BY created_at DESC, id LIMIT ?").all(
      limit,
    ) as Row[]).map((r) => this.#clusterView(r));
  }

  /** Members not yet finished that run on `host`, with their cluster ids. */
  liveMembersOn(host: string): { cluster: string; clone: number }[] {
    return (this.#db.prepare(
      "SELECT cluster, clone FROM members WHERE host = ? AND state IN ('starting', 'running')",
    ).all(host) as Row[]).map((r) => ({ cluster: String(r.cluster), clone: Number(r.clone) }));
  }

  #clusterView(row: Row): ClusterView {
    const members = (this.#db.prepare(
      "SELECT * FROM members WHERE cluster = ? ORDER BY clone",
    ).all(row.id) as Row[]).map((m): MemberView => ({
      clone: Number(m.clone),
      vm: String(m.vm),
      host: String(m.host),
      state: m.state as MemberState,
      ...(m.exit_code !== null ? { exitCode: Number(m.exit_code) } : {}),
      ...(m.reason !== null ? { reason: String(m.reason) } : {}),
      ...(m.memory !== null ? { memory: JSON.parse(String(m.memory)) } : {}),
    }));
    return {
      id: String(row.id),
      ticket: String(row.ticket),
      parentVm: String(row.parent_vm),
      parentHost: String(row.parent_host),
      state: row.state as ClusterState,
      createdAt: String(row.created_at),
      timeline: JSON.parse(String(row.timeline)),
      ...(row.memory !== null ? { memory: JSON.parse(String(row.memory)) } : {}),
      members,
    };
  }
}

function hostRecord(r: Row): HostRecord {
  return {
    name: String(r.name),
    ...(r.scheduler_node !== null ? { schedulerNode: String(r.scheduler_node) } : {}),
    ...(r.memory_transport !== null
      ? { memoryTransport: JSON.parse(String(r.memory_transport)) }
      : {}),
    state: r.state as HostState,
    backends: JSON.parse(String(r.backends)),
    cores: Number(r.cores),
    memoryBytes: Number(r.memory_bytes),
    slots: Number(r.slots),
    dataAddress: String(r.data_address),
    lastSeen: String(r.last_seen),
    ...(r.reason !== null ? { reason: String(r.reason) } : {}),
  };
}

function ticketRecord(r: Row): TicketRecord {
  return {
    id: String(r.id),
    requested: Number(r.requested),
    granted: Number(r.granted),
    state: r.state as TicketState,
    placements: JSON.parse(String(r.placements)),
    allocator: String(r.allocator),
    ...(r.source !== null ? { source: String(r.source) } : {}),
    ...(r.owner !== null ? { owner: String(r.owner) } : {}),
    createdAt: String(r.created_at),
    ...(r.expires_at !== null ? { expiresAt: String(r.expires_at) } : {}),
    ...(r.reason !== null ? { reason: String(r.reason) } : {}),
  };
}

/** Converts a host record to the API's view, given the slots its live tickets use. */
export function hostView(h: HostRecord, slotsInUse: number): HostView {
  return { ...h, slotsInUse };
}

/** Converts a ticket record to the API's view. */
export function ticketView(t: TicketRecord): TicketView {
  return { ...t };
}
