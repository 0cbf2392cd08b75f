/**
 * The HTTP client the CLI's client commands use: exactly the public API that
 * README.md documents, nothing private.
 */
import type {
  ClusterView,
  JobEvent,
  OutFiles,
  StatusView,
  TicketView,
  VmView,
} from "./messages.ts";

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

  /** Uploads a guest module; returns its hash. */
  async uploadModule(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
    return ((await this.#call("PUT", "/v1/modules", bytes)) as { module: string }).module;
  }

  run(module: string, args: string[], env: string[] = [], host?: string): Promise<VmView> {
    return this.#call("POST", "/v1/vms", {
      module,
      args,
      env,
      ...(host ? { host } : {}),
    }) as Promise<VmView>;
  }

  vm(id: string): Promise<VmView> {
    return this.#call("GET", `/v1/vms/${encodeURIComponent(id)}`) as Promise<VmView>;
  }

  killVm(id: string): Promise<VmView> {
    return this.#call("DELETE", `/v1/vms/${encodeURIComponent(id)}`) as Promise<VmView>;
  }

  vmOut(id: string): Promise<OutFiles> {
    return this.#call("GET", `/v1/vms/${encodeURIComponent(id)}/out`) as Promise<OutFiles>;
  }

  cluster(id: string): Promise<ClusterView> {
    return this.#call("GET", `/v1/clusters/${encodeURIComponent(id)}`) as Promise<ClusterView>;
  }

  /** Every event of a job, in order, until its end. */
  async *followJob(job: string): AsyncGenerator<JobEvent> {
    const res = await this.#fetch("GET", `/v1/jobs/${encodeURIComponent(job)}/events`);
    if (!res.ok || !res.body) throw new ClientError(`Cannot follow job ${job}: HTTP ${res.status}`);
    let buffered = "";
    for await (const chunk of res.body.pipeThrough(new TextDecoderStream())) {
      buffered += chunk;
      let nl: number;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (line) yield JSON.parse(line) as JobEvent;
      }
    }
  }

  async #fetch(method: string, path: string, body?: unknown): Promise<Response> {
    const raw = body instanceof Uint8Array;
    try {
      return await fetch(this.base + path, {
        method,
        headers: {
          authorization: `Bearer ${this.#token}`,
          ...(body && !raw ? { "content-type": "application/json" } : {}),
        },
        ...(body ? { body: raw ? body as Uint8Array<ArrayBuffer> : JSON.stringify(body) } : {}),
      });
    } catch (e) {
      throw new ClientError(`Cannot reach master at ${this.base}: ${(e as Error).message}`, 0, {
        cause: e,
      });
    }
  }

  async #call(method: string, path: string, body?: unknown): Promise<unknown> {
    const res = await this.#fetch(method, path, body);
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
