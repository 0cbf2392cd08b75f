/** host:port parsing and the address an agent advertises to its peers. */
import dgram from "node:dgram";

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
 * The local address this host uses to reach `peer`: a connected UDP socket
 * sends nothing but makes the kernel pick the route's source address.
 */
export function sourceAddressFor(peer: HostPort): Promise<string> {
  return new Promise((resolve) => {
    const s = dgram.createSocket("udp4");
    s.on("error", () => (s.close(), resolve("127.0.0.1")));
    s.connect(peer.port, peer.hostname === "localhost" ? "127.0.0.1" : peer.hostname, () => {
      const address = s.address().address;
      s.close();
      resolve(address);
    });
  });
}
