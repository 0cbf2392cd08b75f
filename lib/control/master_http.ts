/**
 * The master's HTTP listener: the client API (JSON, token in the
 * `Authorization: Bearer` header), the agents' WebSocket at /v1/agent, and the
 * web monitor (its page at `/`, its live status at /v1/events, authorized by a
 * session cookie from POST /v1/session because EventSource cannot send headers).
 * README.md documents every endpoint with a curl example.
 */
import type { Logger } from "../log.ts";
import { isMonitorAsset, monitorAsset } from "../monitor/assets.ts";
import { statusEvents } from "../monitor/events.ts";
import {
  acceptsSession,
  MonitorSessions,
  readSessionCookie,
  sessionCookie,
} from "../monitor/sessions.ts";
import { describeIssues, RunBody, TicketRequestBody } from "./messages.ts";
import { type Master, MasterError } from "./master.ts";
import { tokensEqual } from "./token.ts";

export interface HttpOptions {
  master: Master;
  token: string;
  hostname: string;
  port: number;
  logger: Logger;
}

export interface HttpServer {
  /** host:port actually bound (port 0 picks a free one). */
  address: string;
  shutdown(): Promise<void>;
}

const STATUS: Record<MasterError["code"] | "unauthorized" | "internal", number> = {
  bad_request: 400,
  unauthorized: 401,
  not_found: 404,
  conflict: 409,
  unavailable: 503,
  internal: 500,
};

type Handler = (req: Request, params: string[]) => Promise<unknown> | unknown;

/** Module uploads are bounded so a client cannot fill the master's memory. */
const MAX_MODULE_BYTES = 512 * 1024 * 1024;

export function serveMasterHttp(o: HttpOptions): Promise<HttpServer> {
  const m = o.master;
  const sessions = new MonitorSessions();
  // Aborted at shutdown: event streams never end by themselves and would hold it up.
  const streams = new AbortController();
  const routes: [string, RegExp, Handler][] = [
    ["GET", /^\/v1\/status$/, () => m.status()],
    [
      "GET",
      /^\/v1\/events$/,
      () =>
        new Response(statusEvents(m, { signal: streams.signal }), {
          headers: { "content-type": "text/event-stream", "cache-control": "no-store" },
        }),
    ],
    ["POST", /^\/v1\/session$/, (req) => {
      const url = new URL(req.url);
      const session = sessions.create();
      return new Response(
        JSON.stringify({ expiresAt: new Date(session.expiresAt).toISOString() }),
        {
          headers: {
            "content-type": "application/json",
            "cache-control": "no-store",
            "set-cookie": sessionCookie(url, session),
          },
        },
      );
    }],
    ["DELETE", /^\/v1\/session$/, (req) => {
      const url = new URL(req.url);
      sessions.delete(readSessionCookie(url, req.headers));
      return new Response(null, {
        status: 204,
        headers: { "set-cookie": sessionCookie(url, undefined) },
      });
    }],
    ["GET", /^\/v1\/hosts$/, () => m.status().hosts],
    ["GET", /^\/v1\/tickets$/, () => m.status().tickets],
    ["POST", /^\/v1\/tickets$/, async (req) => {
      const body = TicketRequestBody.safeParse(await readJson(req));
      if (!body.success) {
        m.countRejected();
        throw new MasterError(
          "bad_request",
          `Cannot request ticket: ${describeIssues(body.error)}`,
        );
      }
      return m.requestTicket({
        slots: body.data.slots,
        ...(body.data.ttl_ms ? { ttlMs: body.data.ttl_ms } : {}),
        ...(body.data.wait_ms !== undefined ? { waitMs: body.data.wait_ms } : {}),
        ...(body.data.owner ? { owner: body.data.owner } : {}),
      });
    }],
    ["GET", /^\/v1\/tickets\/([\w-]+)$/, (_r, [id]) => m.ticket(id)],
    ["DELETE", /^\/v1\/tickets\/([\w-]+)$/, (_r, [id]) => m.releaseTicket(id)],
    ["GET", /^\/v1\/clusters$/, () => m.status().clusters],
    ["GET", /^\/v1\/clusters\/([\w-]+)$/, (_r, [id]) => m.cluster(id)],
    ["PUT", /^\/v1\/modules$/, async (req) => {
      const length = Number(req.headers.get("content-length") ?? 0);
      if (length > MAX_MODULE_BYTES) {
        throw new MasterError(
          "bad_request",
          `Cannot load guest: larger than ${MAX_MODULE_BYTES} bytes`,
        );
      }
      return { module: await m.putModule(new Uint8Array(await req.arrayBuffer())) };
    }],
    ["GET", /^\/v1\/modules\/([0-9a-f]{64})$/, async (_r, [hash]) => {
      const bytes = await m.module(hash);
      if (!bytes) throw new MasterError("not_found", `Cannot find module ${hash}`);
      return new Response(bytes, { headers: { "content-type": "application/wasm" } });
    }],
    ["POST", /^\/v1\/vms$/, async (req) => {
      const body = RunBody.safeParse(await readJson(req));
      if (!body.success) {
        m.countRejected();
        throw new MasterError("bad_request", `Cannot run: ${describeIssues(body.error)}`);
      }
      return m.runVm(body.data);
    }],
    ["GET", /^\/v1\/vms\/([\w-]+)$/, (_r, [id]) => m.vm(id)],
    ["DELETE", /^\/v1\/vms\/([\w-]+)$/, (_r, [id]) => m.killVm(id)],
    ["GET", /^\/v1\/vms\/([\w-]+)\/out$/, (_r, [id]) => m.vmOut(id)],
    [
      "GET",
      /^\/v1\/jobs\/([\w-]+)\/events$/,
      (_r, [job]) =>
        new Response(m.followJob(job), { headers: { "content-type": "application/x-ndjson" } }),
    ],
  ];

  const handle = async (req: Request): Promise<Response> => {
    const url = new URL(req.url);
    if (url.pathname === "/v1/health") return json(200, { ok: true });
    if (req.method === "GET" && isMonitorAsset(url.pathname)) {
      return await monitorAsset(url.pathname);
    }
    if (url.pathname === "/v1/agent") {
      if (req.headers.get("upgrade")?.toLowerCase() !== "websocket") {
        return error(400, "bad_request", "Cannot join: expected a WebSocket upgrade");
      }
      // idleTimeout 0: the agents' heartbeats (--heartbeat-timeout) decide when a host is down.
      // Deno's default (30 s without a frame → ping, close) dropped agents whose event loop
      // was busy for 30 s, long before the configured heartbeat timeout.
      const { socket, response } = Deno.upgradeWebSocket(req, { idleTimeout: 0 });
      m.acceptAgent(socket);
      return response;
    }
    const auth = req.headers.get("authorization") ?? "";
    const given = auth.startsWith("Bearer ") ? auth.slice(7).trim() : "";
    const bySession = acceptsSession(req.method, url.pathname) &&
      sessions.valid(readSessionCookie(url, req.headers));
    if (!bySession && (!given || !tokensEqual(given, o.token))) {
      return error(401, "unauthorized", "Cannot authorize: missing or wrong token");
    }
    for (const [method, pattern, handler] of routes) {
      const match = pattern.exec(url.pathname);
      if (!match) continue;
      if (req.method !== method) continue;
      try {
        const result = await handler(req, match.slice(1));
        return result instanceof Response ? result : json(200, result);
      } catch (e) {
        if (e instanceof MasterError) return error(STATUS[e.code], e.code, e.message);
        o.logger.error("request failed", { path: url.pathname, error: e });
        return error(500, "internal", `Cannot complete request: ${(e as Error).message}`);
      }
    }
    return error(404, "not_found", `Cannot ${req.method} ${url.pathname}: no such endpoint`);
  };

  return new Promise((resolve, reject) => {
    try {
      const server = Deno.serve({
        hostname: o.hostname,
        port: o.port,
        onListen: (addr) => {
          resolve({
            address: `${addr.hostname}:${addr.port}`,
            shutdown: () => {
              streams.abort();
              return server.shutdown();
            },
          });
        },
        onError: (e) => error(500, "internal", `Cannot complete request: ${(e as Error).message}`),
      }, handle);
    } catch (e) {
      reject(e);
    }
  });
}

async function readJson(req: Request): Promise<unknown> {
  try {
    return await req.json();
  } catch {
    throw new MasterError("bad_request", "Cannot read request: body is not JSON");
  }
}

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json" },
  });
}

function error(status: number, code: string, message: string): Response {
  return json(status, { error: { code, message } });
}
