/**
 * The HTTP client the CLI's client commands use: exactly the public API that
 * README.md documents, nothing private.
 */
import type { StatusView, TicketView } from "./messages.ts";

export class ClientError extends Error {
  readonly status: number;
  constructor(message: string, status = 0, options?: ErrorOptions) {
    super(message, options);
    this.name = "ClientError";
    this.status = status;
  }
}

export class MasterClient {
  readonly base: string;
  #token: string;

  constructor(master: string, token: string) {
    this.base = master.startsWith("http") ? master : `http://${master}`;
    this.#token = token;
  }

  status(): Promise<StatusView> {
    return this.#call("GET", "/v1/status") as Promise<StatusView>;
  }

  requestTicket(slots: number, ttlMs?: number): Promise<TicketView> {
    return this.#call("POST", "/v1/tickets", {
      slots,
      ...(ttlMs ? { ttl_ms: ttlMs } : {}),
    }) as Promise<
      TicketView
    >;
  }

  ticket(id: string): Promise<TicketView> {
    return this.#call("GET", `/v1/tickets/${encodeURIComponent(id)}`) as Promise<TicketView>;
  }

  releaseTicket(id: string): Promise<TicketView> {
    return this.#call("DELETE", `/v1/tickets/${encodeURIComponent(id)}`) as Promise<TicketView>;
  }

  async #call(method: string, path: string, body?: unknown): Promise<unknown> {
    let res: Response;
    try {
      res = await fetch(this.base + path, {
        method,
        headers: {
          authorization: `Bearer ${this.#token}`,
          ...(body ? { "content-type": "application/json" } : {}),
        },
        ...(body ? { body: JSON.stringify(body) } : {}),
      });
    } catch (e) {
      throw new ClientError(`Cannot reach master at ${this.base}: ${(e as Error).message}`, 0, {
        cause: e,
      });
    }
    const text = await res.text();
    let json: { error?: { message?: string } } | undefined;
    try {
      json = JSON.parse(text);
    } catch {
      throw new ClientError(
        `Cannot read master's answer (HTTP ${res.status}): not JSON`,
        res.status,
      );
    }
    if (!res.ok) {
      throw new ClientError(json?.error?.message ?? `HTTP ${res.status}`, res.status);
    }
    return json;
  }
}
