/** host:port parsing and the address an agent advertises to its peers. */
export interface HostPort {
  hostname: string;
  port: number;
}

export class AddressError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AddressError";
  }
}

/** Parses "host:port", ":port" or "port"; `defaultHost` fills a missing host. */
export function parseHostPort(text: string, defaultHost = "127.0.0.1"): HostPort {
  const m = /^(?:(\[[0-9a-fA-F:]+\]|[^:\s]*):)?(\d{1,5})$/.exec(text.trim());
  if (!m) throw new AddressError(`Cannot parse address "${text}": expected host:port`);
  const port = Number(m[2]);
  if (port > 65535) throw new AddressError(`Cannot parse address "${text}": port out of range`);
  return { hostname: m[1] || defaultHost, port };
}

export function formatHostPort(a: HostPort): string {
  return `${a.hostname}:${a.port}`;
}

/**
 * The local address other hosts can reach this one at, chosen as the address
 * of the interface on the master's subnet (the master is where everyone meets);
 * loopback when the master is on loopback, else the first non-loopback IPv4.
 */
export async function localAddressFacing(peer: HostPort): Promise<string> {
  const ip = isIPv4(peer.hostname) ? peer.hostname : await resolve4(peer.hostname);
  if (!ip || ip.startsWith("127.")) return "127.0.0.1";
  const v4 = Deno.networkInterfaces().filter((i) => i.family === "IPv4");
  const same = v4.find((i) => sameSubnet(i.address, ip, i.netmask));
  return same?.address ?? v4.find((i) => !i.address.startsWith("127."))?.address ?? "127.0.0.1";
}

async function resolve4(name: string): Promise<string | undefined> {
  if (name === "localhost") return "127.0.0.1";
  try {
    return (await Deno.resolveDns(name, "A"))[0];
  } catch {
    return undefined;
  }
}

function isIPv4(s: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(s);
}

function toInt(ip: string): number {
  return ip.split(".").reduce((n, o) => (n << 8) + Number(o), 0) >>> 0;
}

function sameSubnet(a: string, b: string, mask: string): boolean {
  const m = toInt(mask);
  return ((toInt(a) & m) >>> 0) === ((toInt(b) & m) >>> 0);
}
