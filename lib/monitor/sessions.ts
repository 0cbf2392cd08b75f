/**
 * Monitor sessions: the browser's EventSource cannot send an `Authorization`
 * header, so the page trades the token for a short-lived session cookie
 * (POST /v1/session with the bearer header) and the stream is authorized by
 * that cookie. The cookie is HttpOnly (page scripts never read it) and
 * SameSite=Strict (other sites cannot ride on it), and it is accepted only on
 * the routes that `acceptsSession` names: reading the event stream and ending
 * the session. Sessions live in memory: a restarted master forgets them, and
 * the page logs in again with the token it keeps in sessionStorage.
 */

/** Long enough to open (or reopen) a stream; a stream outlives its session. */
export const SESSION_TTL_MS = 5 * 60_000;

/** Bounds the memory a client can take by logging in in a loop. */
const MAX_SESSIONS = 256;

export interface Session {
  id: string;
  expiresAt: number;
}

export class MonitorSessions {
  #expiry = new Map<string, number>();
  #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  create(): Session {
    this.#prune();
    if (this.#expiry.size >= MAX_SESSIONS) {
      // Maps iterate in insertion order: the first key is the oldest session.
      this.#expiry.delete(this.#expiry.keys().next().value!);
    }
    const bytes = crypto.getRandomValues(new Uint8Array(32));
    const id = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    const expiresAt = this.#now() + SESSION_TTL_MS;
    this.#expiry.set(id, expiresAt);
    return { id, expiresAt };
  }

  valid(id: string | undefined): boolean {
    if (!id) return false;
    const expiresAt = this.#expiry.get(id);
    if (expiresAt === undefined) return false;
    if (expiresAt > this.#now()) return true;
    this.#expiry.delete(id);
    return false;
  }

  delete(id: string | undefined): void {
    if (id) this.#expiry.delete(id);
  }

  get size(): number {
    return this.#expiry.size;
  }

  #prune(): void {
    const now = this.#now();
    for (const [id, expiresAt] of this.#expiry) if (expiresAt <= now) this.#expiry.delete(id);
  }
}

/** Routes a session cookie may authorize; everything else needs the bearer token. */
export function acceptsSession(method: string, pathname: string): boolean {
  return (method === "GET" && pathname === "/v1/events") ||
    (method === "DELETE" && pathname === "/v1/session");
}

/**
 * The cookie's name carries the port: cookies are scoped by host, not port, so
 * two masters on one host would otherwise overwrite each other's session.
 */
export function sessionCookieName(url: URL): string {
  return `snowflock_session_${url.port || (url.protocol === "https:" ? "443" : "80")}`;
}

/** A Set-Cookie value; `session` undefined clears the cookie. */
export function sessionCookie(url: URL, session: Session | undefined, now = Date.now()): string {
  // Rounded up: a cookie written a millisecond after its session was made still says
  // the full lifetime; the master, not the browser, decides when a session ends.
  const maxAge = session ? Math.max(0, Math.ceil((session.expiresAt - now) / 1000)) : 0;
  const parts = [
    `${sessionCookieName(url)}=${session?.id ?? ""}`,
    "Path=/v1/",
    `Max-Age=${maxAge}`,
    "HttpOnly",
    "SameSite=Strict",
  ];
  // Secure would stop the browser sending the cookie over plain HTTP, which is what
  // the master serves unless a TLS proxy sits in front of it.
  if (url.protocol === "https:") parts.push("Secure");
  return parts.join("; ");
}

export function readSessionCookie(url: URL, headers: Headers): string | undefined {
  const name = sessionCookieName(url);
  for (const pair of (headers.get("cookie") ?? "").split(";")) {
    const eq = pair.indexOf("=");
    if (eq > 0 && pair.slice(0, eq).trim() === name) return pair.slice(eq + 1).trim();
  }
  return undefined;
}
