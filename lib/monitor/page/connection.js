/**
 * The page's link to the master. It trades the token for a session cookie
 * (POST /v1/session, bearer header: the token never goes in a URL), then
 * listens to GET /v1/events, whose first event is the full status. Whenever
 * the stream breaks (master restarted, network gone) it starts over with a
 * fresh session after a back-off: a restarted master has forgotten the old
 * session, and its first event catches the page up. A token the master
 * refuses ends the connection.
 */

const MIN_DELAY_MS = 250;
const MAX_DELAY_MS = 3000;

export class Connection {
  #token;
  #handlers;
  /** @type {EventSource | undefined} */
  #source;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #timer;
  #attempt = 0;
  #stopped = false;

  /**
   * @param {string} token
   * @param {{
   *   status(status: any): void,
   *   state(state: "connecting" | "live" | "reconnecting"): void,
   *   refused(message: string): void,
   * }} handlers
   */
  constructor(token, handlers) {
    this.#token = token;
    this.#handlers = handlers;
    this.#connect();
  }

  stop() {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#source?.close();
  }

  async #connect() {
    if (this.#stopped) return;
    this.#handlers.state(this.#attempt === 0 ? "connecting" : "reconnecting");
    let response;
    try {
      response = await fetch("/v1/session", {
        method: "POST",
        headers: { authorization: `Bearer ${this.#token}` },
        cache: "no-store",
      });
    } catch {
      return this.#retry();
    }
    if (this.#stopped) return;
    if (response.status === 401) {
      this.stop();
      return this.#handlers.refused("The master refused this token.");
    }
    if (!response.ok) return this.#retry();
    const source = new EventSource("/v1/events");
    this.#source = source;
    source.addEventListener("status", (e) => {
      this.#attempt = 0;
      this.#handlers.state("live");
      this.#handlers.status(JSON.parse(/** @type {MessageEvent} */ (e).data));
    });
    // EventSource retries some failures by itself but gives up on others (a 401
    // after a restart); one path for all: close it and start over.
    source.onerror = () => {
      source.close();
      this.#retry();
    };
  }

  #retry() {
    if (this.#stopped) return;
    this.#handlers.state("reconnecting");
    const delay = Math.min(MAX_DELAY_MS, MIN_DELAY_MS * 2 ** this.#attempt);
    this.#attempt++;
    this.#timer = setTimeout(() => this.#connect(), delay);
  }
}
