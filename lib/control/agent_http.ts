/**
 * The agent's data-plane listener: what other agents fetch from this host
 * (guest modules, VM memory for eager clones). Never carries control messages.
 */
import type { Logger } from "../log.ts";
import type { HostPort } from "./address.ts";

export type DataRoute = (req: Request, url: URL) => Promise<Response | undefined>;

export interface DataServer {
  port: number;
  /** Adds a handler; the first one that returns a response wins. */
  route(handler: DataRoute): void;
  shutdown(): Promise<void>;
}

export function serveAgentData(listen: HostPort, logger: Logger): Promise<DataServer> {
  const routes: DataRoute[] = [];
  const handle = async (req: Request): Promise<Response> => {
    const url = new URL(req.url);
    if (url.pathname === "/v1/health") return Response.json({ ok: true });
    for (const r of routes) {
      try {
        const res = await r(req, url);
        if (res) return res;
      } catch (e) {
        logger.warn("data request failed", { path: url.pathname, error: e });
        return Response.json({ error: { code: "internal", message: (e as Error).message } }, {
          status: 500,
        });
      }
    }
    return Response.json({ error: { code: "not_found", message: url.pathname } }, { status: 404 });
  };
  return new Promise((resolve, reject) => {
    try {
      const server = Deno.serve({
        hostname: listen.hostname,
        port: listen.port,
        onListen: (addr) =>
          resolve({
            port: addr.port,
            route: (h) => routes.push(h),
            shutdown: () => server.shutdown(),
          }),
      }, handle);
    } catch (e) {
      reject(e);
    }
  });
}
