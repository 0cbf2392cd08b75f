/**
 * Lab diagnostics for the Xen lab's dom0 processes (master and agents): when the
 * event loop stalls (and for how long), every control-plane WebSocket's open and
 * close (code, reason, clean or not), and dom0 memory every 10 s. Lines go to
 * stderr with ISO timestamps, so they interleave with the process's own log.
 *
 * @module
 */

const ts = () => new Date().toISOString();
const say = (who: string, msg: string) => console.error(`${ts()} diag  [${who}] ${msg}`);

export function installDiagnostics(who: string): void {
  // 1. Event-loop stalls: a 250 ms interval that notices when it ran late.
  let last = performance.now();
  setInterval(() => {
    const now = performance.now();
    const gap = now - last - 250;
    if (gap > 1000) say(who, `event loop stalled ${Math.round(gap)} ms (ended now)`);
    last = now;
  }, 250);

  // 2. WebSocket lifecycle on both sides of the control plane.
  const watch = (ws: WebSocket, side: string) => {
    ws.addEventListener("open", () => say(who, `${side} ws open`));
    ws.addEventListener(
      "error",
      (e) => say(who, `${side} ws error ${(e as ErrorEvent).message ?? ""}`),
    );
    ws.addEventListener(
      "close",
      (e) =>
        say(
          who,
          `${side} ws close code=${e.code} reason=${JSON.stringify(e.reason)} clean=${e.wasClean}`,
        ),
    );
  };
  const Native = globalThis.WebSocket;
  globalThis.WebSocket = class extends Native {
    constructor(url: string | URL, protocols?: string | string[]) {
      super(url, protocols);
      watch(this, `client ${url}`);
    }
  } as typeof WebSocket;
  const upgrade = Deno.upgradeWebSocket;
  Deno.upgradeWebSocket = (req: Request, opts?: Deno.UpgradeWebSocketOptions) => {
    const r = upgrade(req, opts);
    watch(r.socket, "server");
    return r;
  };

  // 3. Memory, every 10 s.
  setInterval(() => {
    let avail = "?";
    try {
      const m = /MemAvailable:\s+(\d+)/.exec(Deno.readTextFileSync("/proc/meminfo"));
      if (m) avail = `${Math.round(Number(m[1]) / 1024)}MiB`;
    } catch { /* not Linux */ }
    const load = (() => {
      try {
        return Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ");
      } catch {
        return "?";
      }
    })();
    say(
      who,
      `mem available=${avail} rss=${Math.round(Deno.memoryUsage().rss / 2 ** 20)}MiB load=${load}`,
    );
  }, 10_000);
}
