/**
 * Several "hosts" on one machine, for the multi-host tests and benchmarks: each host is a Linux
 * network namespace with a veth pair plugged into one bridge in the root
 * namespace, an address on a private test subnet, and a multicast route.
 *
 * Every name made here is `<prefix>-<creator pid, base 36>-<3 random chars>`
 * followed by `b` (bridge), `v<i>` (root end of host i's veth) or `h<i>` (host
 * i's namespace). The pid lets a later run remove what a crashed run left
 * behind ({@link sweepStaleHosts}); the random part keeps concurrent test
 * files of one process apart. Interface names must fit IFNAMSIZ (15 chars).
 */

import { type HarnessProcess, processAlive, type SpawnOptions, spawnProcess } from "./process.ts";

/** The name prefix used when none is given. */
export const DEFAULT_PREFIX = "sf";

/** One simulated host. */
export interface Host {
  readonly index: number;
  /** Short label for messages: `h0`, `h1`, … */
  readonly name: string;
  /** The network namespace (`ip netns`) name. */
  readonly netns: string;
  /** The host's IPv4 address on the test subnet. */
  readonly address: string;
  /** The interface inside the namespace that holds `address`. */
  readonly iface: string;
}

/** A host, or its index in `HostNet.hosts`. */
export type HostRef = Host | number;

/** What a finished command returned. */
export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Random loss of datagrams arriving at one host. */
export interface LossOptions {
  /** Share of matching datagrams dropped, 0–100 (two decimals honoured). */
  percent: number;
  /** Only UDP datagrams to this port; every UDP datagram when absent. */
  udpPort?: number;
}

export interface CreateHostsOptions {
  /** Lowercase letters and digits, starting with a letter. */
  prefix?: string;
  /** An IPv4 network such as `10.231.7.0/24`; the bridge gets its first address. */
  subnet?: string;
  /** MTU of the bridge and every host link: 1500 (default), or e.g. 9000 for jumbo frames. */
  mtu?: number;
}

/** The hosts of one test and what a test does with them. */
export interface HostNet extends AsyncDisposable {
  readonly hosts: readonly Host[];
  /** The bridge interface in the root namespace. */
  readonly bridge: string;
  /** The bridge's address: processes in the root namespace are reachable here. */
  readonly bridgeAddress: string;
  readonly prefixLength: number;
  /** Runs `cmd` to completion in `host`'s namespace (`null`: the root namespace). */
  exec(host: HostRef | null, cmd: readonly string[]): Promise<ExecResult>;
  /** Starts `cmd` in `host`'s namespace (`null`: the root namespace); `destroy()` stops it. */
  spawn(host: HostRef | null, cmd: readonly string[], options?: SpawnOptions): HarnessProcess;
  /** Drops datagrams arriving at `host` at random; adds to rules set before. */
  addLoss(host: HostRef, options: LossOptions): Promise<void>;
  /** Removes every loss rule of `host`. */
  clearLoss(host: HostRef): Promise<void>;
  /**
   * Stops every spawned process tree and removes namespaces, veths and the
   * bridge. Safe to call again; later calls return the first call's promise.
   */
  destroy(): Promise<void>;
}

/** The host network could not be made, changed or removed. */
export class HostNetError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "HostNetError";
  }
}

/** Whether this machine and process can make hosts, and if not, why. */
export type NetnsAvailability = { ok: true } | { ok: false; reason: string };

const IFNAMSIZ_CHARS = 15;
const MAX_HOSTS = 100;
const HOST_IFACE = "eth0";
const LOSS_TABLE = "snowflock_loss";

/**
 * Makes a bridge and `n` hosts plugged into it. Leftovers of crashed earlier
 * runs with the same prefix are swept first. Use {@link withHosts} or
 * `await using` so the hosts are removed however the test ends.
 */
export async function createHosts(n: number, options: CreateHostsOptions = {}): Promise<HostNet> {
  if (!Number.isInteger(n) || n < 1 || n > MAX_HOSTS) {
    throw new RangeError(`Cannot create hosts: n must be an integer in 1..${MAX_HOSTS}, got ${n}`);
  }
  const prefix = options.prefix ?? DEFAULT_PREFIX;
  checkPrefix(prefix);
  const tag = `${prefix}-${Deno.pid.toString(36)}-${randomChars(3)}`;
  const longest = `${tag}v${n - 1}`;
  if (longest.length > IFNAMSIZ_CHARS) {
    throw new RangeError(
      `Cannot create hosts: interface name ${longest} is longer than ${IFNAMSIZ_CHARS} characters`,
    );
  }
  await sweepStaleHosts(prefix);
  const subnet = options.subnet === undefined
    ? await pickFreeSubnet()
    : parseSubnet(options.subnet);
  if (n + 3 > 2 ** (32 - subnet.length)) {
    throw new RangeError(
      `Cannot create hosts: ${formatSubnet(subnet)} has no room for a bridge and ${n} hosts`,
    );
  }
  const mtu = options.mtu ?? 1500;
  if (!Number.isInteger(mtu) || mtu < 576 || mtu > 65535) {
    throw new RangeError(`Cannot create hosts: MTU ${mtu} is not in 576..65535`);
  }
  const net = new LinuxHostNet(tag, n, subnet, mtu);
  track(net);
  try {
    await net.setUp();
  } catch (error) {
    await net.destroy().catch(() => {});
    throw new HostNetError(`Cannot create hosts: ${errorText(error)}`, { cause: error });
  }
  return net;
}

/**
 * Runs `fn` with `n` fresh hosts and always destroys them afterwards. When both
 * `fn` and the clean-up fail, the rejection is a SuppressedError holding both.
 */
export async function withHosts<T>(
  n: number,
  fn: (net: HostNet) => Promise<T>,
  options?: CreateHostsOptions,
): Promise<T> {
  await using net = await createHosts(n, options);
  return await fn(net);
}

/**
 * Removes namespaces, bridges and veths named with `prefix` whose creating
 * process no longer runs, killing the processes still inside those namespaces.
 * Returns the names removed.
 */
export async function sweepStaleHosts(prefix: string = DEFAULT_PREFIX): Promise<string[]> {
  checkPrefix(prefix);
  const pattern = new RegExp(`^${prefix}-([0-9a-z]+)-[0-9a-z]{3}(?:b|[vh]\\d+)$`);
  const stale = (name: string): boolean => {
    const match = pattern.exec(name);
    return match !== null && !processAlive(parseInt(match[1], 36));
  };
  const links = (await listLinks()).filter(stale);
  const namespaces = (await listNetns()).filter(stale);
  // Veths first: deleting one end removes its peer in the namespace at once,
  // while a deleted namespace frees its devices only later, asynchronously.
  for (const link of links.filter((name) => !name.endsWith("b"))) await deleteLink(link);
  for (const link of links.filter((name) => name.endsWith("b"))) await deleteLink(link);
  for (const netns of namespaces) await deleteNetns(netns);
  return [...links, ...namespaces];
}

let availability: NetnsAvailability | undefined;

/**
 * Checks, once per process, that hosts can be made here: Linux, root, and an
 * `ip` that really creates a namespace and a bridge.
 */
export function netnsAvailable(): NetnsAvailability {
  availability ??= probeNetns();
  return availability;
}

function probeNetns(): NetnsAvailability {
  if (Deno.build.os !== "linux") return { ok: false, reason: `needs Linux, not ${Deno.build.os}` };
  try {
    if (Deno.uid() !== 0) return { ok: false, reason: `needs root, running as uid ${Deno.uid()}` };
  } catch (error) {
    return { ok: false, reason: `cannot read the user id: ${errorText(error)}` };
  }
  // Named like any other run so that a crash mid-probe is swept later.
  const tag = `${DEFAULT_PREFIX}-${Deno.pid.toString(36)}-${randomChars(3)}`;
  const steps = [
    ["netns", "add", `${tag}h0`],
    ["link", "add", "name", `${tag}b`, "type", "bridge"],
    ["link", "del", `${tag}b`],
    ["netns", "del", `${tag}h0`],
  ];
  for (const args of steps) {
    let result: Deno.CommandOutput;
    try {
      result = new Deno.Command("ip", { args, stdin: "null" }).outputSync();
    } catch (error) {
      return { ok: false, reason: `cannot run ip (iproute2): ${errorText(error)}` };
    }
    if (!result.success) {
      const stderr = new TextDecoder().decode(result.stderr).trim();
      return { ok: false, reason: `ip ${args.join(" ")} failed: ${stderr}` };
    }
  }
  return { ok: true };
}

class LinuxHostNet implements HostNet {
  readonly hosts: readonly Host[];
  readonly bridge: string;
  readonly bridgeAddress: string;
  readonly prefixLength: number;
  #veths: readonly string[];
  #processes = new Set<HarnessProcess>();
  #destroying: Promise<void> | undefined;

  constructor(tag: string, n: number, subnet: Subnet, readonly mtu: number) {
    this.bridge = `${tag}b`;
    this.bridgeAddress = formatIp(subnet.base + 1);
    this.prefixLength = subnet.length;
    this.#veths = Array.from({ length: n }, (_, i) => `${tag}v${i}`);
    this.hosts = Array.from({ length: n }, (_, i) => ({
      index: i,
      name: `h${i}`,
      netns: `${tag}h${i}`,
      address: formatIp(subnet.base + 2 + i),
      iface: HOST_IFACE,
    }));
  }

  async setUp(): Promise<void> {
    const len = this.prefixLength;
    // Without snooping the bridge floods multicast to every port, so delivery
    // does not hang on IGMP reports racing the first datagrams.
    const mtu = ["mtu", String(this.mtu)];
    await ip(["link", "add", "name", this.bridge, ...mtu, "type", "bridge", "mcast_snooping", "0"]);
    await ip(["addr", "add", `${this.bridgeAddress}/${len}`, "dev", this.bridge]);
    await ip(["link", "set", this.bridge, "up"]);
    await Promise.all(this.hosts.map(async (host) => {
      const veth = this.#veths[host.index];
      const inside = ["-n", host.netns];
      await ip(["netns", "add", host.netns]);
      await ip([
        "link",
        "add",
        veth,
        ...mtu,
        "type",
        "veth",
        "peer",
        "name",
        host.iface,
        ...mtu,
        "netns",
        host.netns,
      ]);
      await ip(["link", "set", veth, "master", this.bridge, "up"]);
      await ip([...inside, "addr", "add", `${host.address}/${len}`, "dev", host.iface]);
      await ip([...inside, "link", "set", host.iface, "up"]);
      await ip([...inside, "link", "set", "lo", "up"]);
      await ip([...inside, "route", "add", "224.0.0.0/4", "dev", host.iface]);
    }));
  }

  async exec(host: HostRef | null, cmd: readonly string[]): Promise<ExecResult> {
    const [program, ...args] = this.#inNetns(host, cmd);
    const output = await new Deno.Command(program, { args, stdin: "null" }).output();
    const decoder = new TextDecoder();
    return {
      code: output.code,
      stdout: decoder.decode(output.stdout),
      stderr: decoder.decode(output.stderr),
    };
  }

  spawn(host: HostRef | null, cmd: readonly string[], options?: SpawnOptions): HarnessProcess {
    if (this.#destroying !== undefined) {
      throw new HostNetError(`Cannot spawn ${cmd.join(" ")}: the hosts are destroyed`);
    }
    const child = spawnProcess(this.#inNetns(host, cmd), options);
    this.#processes.add(child);
    return child;
  }

  async addLoss(host: HostRef, options: LossOptions): Promise<void> {
    const { percent, udpPort } = options;
    if (!(percent >= 0 && percent <= 100)) {
      throw new RangeError(`Cannot add loss: percent must be in 0..100, got ${percent}`);
    }
    if (udpPort !== undefined && !(Number.isInteger(udpPort) && udpPort > 0 && udpPort < 65536)) {
      throw new RangeError(`Cannot add loss: udpPort must be in 1..65535, got ${udpPort}`);
    }
    const match = udpPort === undefined ? "meta l4proto udp" : `udp dport ${udpPort}`;
    await this.#nft(
      host,
      `table inet ${LOSS_TABLE} {
        chain input { type filter hook input priority 0; policy accept; }
      }
      add rule inet ${LOSS_TABLE} input ${match} numgen random mod 10000 < ${
        Math.round(percent * 100)
      } drop
      `,
    );
  }

  async clearLoss(host: HostRef): Promise<void> {
    // Declaring the table first makes the delete succeed when there was none.
    await this.#nft(host, `table inet ${LOSS_TABLE} {}\ndelete table inet ${LOSS_TABLE}\n`);
  }

  destroy(): Promise<void> {
    this.#destroying ??= this.#destroy();
    return this.#destroying;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.destroy();
  }

  async #destroy(): Promise<void> {
    const failures: unknown[] = [];
    const attempt = (step: Promise<unknown>): Promise<void> =>
      step.then(() => {}, (error) => void failures.push(error));
    await Promise.all([...this.#processes].map((child) => attempt(child.stop())));
    const listed = (list: Promise<string[]>): Promise<Set<string>> =>
      list.then((names) => new Set(names), (error) => {
        failures.push(error);
        return new Set();
      });
    const links = await listed(listLinks());
    const namespaces = await listed(listNetns());
    for (const veth of this.#veths.filter((name) => links.has(name))) {
      await attempt(deleteLink(veth));
    }
    if (links.has(this.bridge)) await attempt(deleteLink(this.bridge));
    for (const host of this.hosts.filter((host) => namespaces.has(host.netns))) {
      await attempt(deleteNetns(host.netns));
    }
    untrack(this);
    if (failures.length > 0) {
      throw new HostNetError(
        `Cannot destroy hosts ${this.bridge}: ${failures.map(errorText).join("; ")}`,
        { cause: new AggregateError(failures) },
      );
    }
  }

  async #nft(host: HostRef, script: string): Promise<void> {
    await run(this.#inNetns(host, ["nft", "-f", "-"]), script);
  }

  #inNetns(host: HostRef | null, cmd: readonly string[]): string[] {
    if (cmd.length === 0) throw new TypeError("Cannot run a command: empty command");
    if (host === null) return [...cmd];
    return ["ip", "netns", "exec", this.#host(host).netns, ...cmd];
  }

  #host(ref: HostRef): Host {
    const host = typeof ref === "number" ? this.hosts[ref] : ref;
    if (host === undefined || this.hosts[host.index] !== host) {
      throw new RangeError(`Cannot find host ${typeof ref === "number" ? ref : ref.netns}`);
    }
    return host;
  }
}

// Live host networks, destroyed if the test process is interrupted. The signal
// listeners exist only while a network does: a listener left behind would keep
// the process alive and trip Deno's test sanitizers.
const live = new Set<HostNet>();
let interrupted = false;

function exitAfterDestroy(code: number): () => void {
  return () => {
    // A second signal while cleaning up means "now".
    if (interrupted) Deno.exit(code);
    interrupted = true;
    Promise.allSettled([...live].map((net) => net.destroy())).finally(() => Deno.exit(code));
  };
}

const signalHandlers: [Deno.Signal, () => void][] = [
  ["SIGINT", exitAfterDestroy(130)],
  ["SIGTERM", exitAfterDestroy(143)],
];

function track(net: HostNet): void {
  if (live.size === 0) {
    for (const [signal, handler] of signalHandlers) Deno.addSignalListener(signal, handler);
  }
  live.add(net);
}

function untrack(net: HostNet): void {
  if (!live.delete(net) || live.size > 0) return;
  for (const [signal, handler] of signalHandlers) Deno.removeSignalListener(signal, handler);
}

// Both delete helpers accept that the object vanished meanwhile: a concurrent
// test process may sweep the same stale leftovers at the same moment.

async function deleteLink(name: string): Promise<void> {
  try {
    await ip(["link", "del", name]);
  } catch (error) {
    if ((await listLinks()).includes(name)) throw error;
  }
}

/** Kills what still runs inside `netns` (daemons that left their group), then deletes it. */
async function deleteNetns(netns: string): Promise<void> {
  try {
    const { stdout } = await run(["ip", "netns", "pids", netns]);
    const pids = stdout.split("\n").filter((line) => line !== "").map(Number);
    for (const pid of pids) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      }
    }
    // SIGKILL is delivered at once but the exit may lag on a loaded machine.
    for (let waited = 0; pids.some(processAlive) && waited < 5_000; waited += 20) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await ip(["netns", "del", netns]);
  } catch (error) {
    if ((await listNetns()).includes(netns)) throw error;
  }
}

async function listNetns(): Promise<string[]> {
  const { stdout } = await run(["ip", "-j", "netns", "list"]);
  // `ip -j netns list` prints nothing at all when there is no namespace.
  if (stdout.trim() === "") return [];
  return (JSON.parse(stdout) as { name: string }[]).map((entry) => entry.name);
}

async function listLinks(): Promise<string[]> {
  const { stdout } = await run(["ip", "-j", "link", "show"]);
  return (JSON.parse(stdout) as { ifname: string }[]).map((entry) => entry.ifname);
}

async function ip(args: readonly string[]): Promise<void> {
  await run(["ip", ...args]);
}

/** Runs a command to completion and throws unless it succeeded. */
async function run(cmd: readonly string[], stdin?: string): Promise<ExecResult> {
  const child = new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(stdin));
    await writer.close();
  }
  const output = await child.output();
  const decoder = new TextDecoder();
  const result = {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
  if (!output.success) {
    throw new HostNetError(
      `Cannot run ${cmd.join(" ")}: exit code ${output.code}: ${result.stderr.trim()}`,
    );
  }
  return result;
}

interface Subnet {
  /** Network address as an unsigned 32-bit number. */
  base: number;
  length: number;
}

function parseSubnet(text: string): Subnet {
  const match = /^(\d+)\.(\d+)\.(\d+)\.(\d+)\/(\d+)$/.exec(text);
  const octets = match?.slice(1, 5).map(Number) ?? [];
  const length = Number(match?.[5]);
  if (match === null || octets.some((o) => o > 255) || length < 8 || length > 30) {
    throw new RangeError(`Cannot use subnet ${text}: want a.b.c.d/len with len in 8..30`);
  }
  const address = octets.reduce((sum, octet) => sum * 256 + octet, 0);
  const base = address - (address % 2 ** (32 - length));
  if (base !== address) {
    throw new RangeError(
      `Cannot use subnet ${text}: host bits set, did you mean ${formatSubnet({ base, length })}?`,
    );
  }
  return { base, length };
}

/** A random 10.231.x.0/24 that overlaps no IPv4 address configured in the root namespace. */
async function pickFreeSubnet(): Promise<Subnet> {
  const { stdout } = await run(["ip", "-j", "-4", "addr", "show"]);
  const used = (JSON.parse(stdout) as { addr_info: { local: string; prefixlen: number }[] }[])
    .flatMap((link) => link.addr_info)
    .map((info) => ({ address: ipToNumber(info.local), length: info.prefixlen }));
  for (let attempt = 0; attempt < 64; attempt++) {
    const subnet = { base: ipToNumber(`10.231.${randomInt(256)}.0`), length: 24 };
    const overlaps = used.some(({ address, length }) => {
      const shared = 2 ** (32 - Math.min(length, subnet.length));
      return Math.floor(address / shared) === Math.floor(subnet.base / shared);
    });
    if (!overlaps) return subnet;
  }
  throw new HostNetError("Cannot pick a test subnet: 64 random 10.231.x.0/24 were all in use");
}

function ipToNumber(address: string): number {
  return address.split(".").reduce((sum, octet) => sum * 256 + Number(octet), 0);
}

function formatIp(value: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(value / 2 ** shift) % 256).join(".");
}

function formatSubnet(subnet: Subnet): string {
  return `${formatIp(subnet.base)}/${subnet.length}`;
}

function checkPrefix(prefix: string): void {
  if (!/^[a-z][a-z0-9]*$/.test(prefix)) {
    throw new RangeError(
      `Cannot use prefix ${JSON.stringify(prefix)}: want lowercase letters and digits`,
    );
  }
}

function randomInt(bound: number): number {
  return crypto.getRandomValues(new Uint32Array(1))[0] % bound;
}

function randomChars(count: number): string {
  return Array.from({ length: count }, () => randomInt(36).toString(36)).join("");
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
