/**
 * The monitor's HTTP side on an embedded cluster (master + 4 agents): the
 * event stream's JSON against the same schema as the HTTP API, the session
 * cookie and what it may open, and the page's files.
 */
import assert from "node:assert/strict";
import { isDeepStrictEqual } from "node:util";
import { MasterClient } from "../lib/control/client.ts";
import { startEmbeddedCluster } from "../lib/control/embedded.ts";
import { StatusView } from "../lib/control/messages.ts";
import { createLogger } from "../lib/log.ts";
import { tempDir } from "./harness/temp_dir.ts";
import { runFork } from "./monitor_fork.ts";
import { serverSentEvents } from "./monitor_sse.ts";

const quiet = createLogger("test", { quiet: true, sink: () => {} });

async function withCluster(
  fn: (base: string, token: string, client: MasterClient) => Promise<void>,
): Promise<void> {
  await using data = await tempDir("sf-monitor-events");
  const cluster = await startEmbeddedCluster({
    hosts: 4,
    slotsPerHost: 2,
    dataDir: data.path,
    logger: quiet,
  });
  try {
    const { address, token } = cluster.master;
    await fn(`http://${address}`, token, new MasterClient(address, token));
  } finally {
    await cluster.close();
  }
}

/** POST /v1/session with the token; returns the cookie to send back. */
async function session(base: string, token: string): Promise<string> {
  const r = await fetch(`${base}/v1/session`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}` },
  });
  assert.equal(r.status, 200, await r.text());
  return r.headers.get("set-cookie")!.split(";")[0];
}

Deno.test("GET /v1/events: every event of a fork of 8 is a StatusView, first one at once", async () => {
  await withCluster(async (base, token, client) => {
    const stop = new AbortController();
    const events = await fetch(`${base}/v1/events`, {
      headers: { cookie: await session(base, token) },
      signal: stop.signal,
    });
    assert.equal(events.status, 200);
    assert.equal(events.headers.get("content-type"), "text/event-stream");
    const seen: StatusView[] = [];
    const reading = (async () => {
      for await (const e of serverSentEvents(events.body!)) {
        assert.equal(e.event, "status");
        // strict schemas: an extra or missing field anywhere fails here
        seen.push(StatusView.parse(JSON.parse(e.data)));
      }
    })().catch((e) => {
      if (!stop.signal.aborted) throw e;
    });
    await runFork(client);
    // Memory reports may trail the join: the stream has caught up when its last
    // event shows what the API shows.
    const deadline = Date.now() + 10_000;
    while (!isDeepStrictEqual(seen.at(-1)?.clusters, (await client.status()).clusters)) {
      assert.ok(Date.now() < deadline, "the stream's last status matches GET /v1/status");
      await new Promise((r) => setTimeout(r, 100));
    }
    stop.abort();
    await reading;
    assert.equal(seen[0].hosts.length, 4, "the first event is the full status");
    assert.ok(seen.length >= 3, `a status on every change (got ${seen.length})`);
    assert.ok(
      seen.some((s) => s.clusters[0]?.state === "forking" || s.clusters[0]?.state === "running"),
      "the fork was seen while it ran",
    );
    const last = seen.at(-1)!.clusters[0];
    assert.equal(last.state, "joined");
    assert.equal(last.members.length, 8);
    assert.ok(last.members.every((m) => m.state === "exited"));
  });
});

Deno.test("monitor session: the token buys an HttpOnly SameSite=Strict cookie good for events only", async () => {
  await withCluster(async (base, token) => {
    const wrong = await fetch(`${base}/v1/session`, {
      method: "POST",
      headers: { authorization: "Bearer not-the-token" },
    });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.headers.get("set-cookie"), null);
    await wrong.body?.cancel();

    const r = await fetch(`${base}/v1/session`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}` },
    });
    const setCookie = r.headers.get("set-cookie")!;
    assert.match(
      setCookie,
      /^snowflock_session_\d+=[0-9a-f]{64}; Path=\/v1\/; Max-Age=300; HttpOnly; SameSite=Strict$/,
    );
    assert.ok(Date.parse((await r.json()).expiresAt) > Date.now());
    const cookie = setCookie.split(";")[0];

    const status = await fetch(`${base}/v1/status`, { headers: { cookie } });
    assert.equal(status.status, 401, "the cookie does not open the API");
    await status.body?.cancel();
    const anonymous = await fetch(`${base}/v1/events`);
    assert.equal(anonymous.status, 401);
    await anonymous.body?.cancel();
    const bearer = await fetch(`${base}/v1/events`, {
      headers: { authorization: `Bearer ${token}` },
    });
    assert.equal(bearer.status, 200, "the bearer header works for the stream too");
    await bearer.body?.cancel();

    const logout = await fetch(`${base}/v1/session`, { method: "DELETE", headers: { cookie } });
    assert.equal(logout.status, 204);
    assert.match(logout.headers.get("set-cookie")!, /Max-Age=0/);
    const after = await fetch(`${base}/v1/events`, { headers: { cookie } });
    assert.equal(after.status, 401, "an ended session opens nothing");
    await after.body?.cancel();
  });
});

Deno.test("GET /: the page and its assets without a login, same-origin only", async () => {
  await withCluster(async (base) => {
    const page = await fetch(`${base}/`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get("content-type")!, /^text\/html/);
    const csp = page.headers.get("content-security-policy")!;
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /script-src 'self' 'sha256-[A-Za-z0-9+/]+=*'/);
    const html = await page.text();
    assert.match(
      html,
      /<script type="importmap">\{"imports":\{"uplot":"\/monitor\/vendor\/uPlot\.esm\.js"\}\}<\/script>/,
    );
    assert.doesNotMatch(html, /https?:\/\//, "nothing from the internet");
    for (
      const [path, type] of [
        ["/monitor/main.js", /^text\/javascript/],
        ["/monitor/monitor.css", /^text\/css/],
        ["/monitor/vendor/uPlot.esm.js", /^text\/javascript/],
        ["/monitor/vendor/uPlot.min.css", /^text\/css/],
      ] as const
    ) {
      const r = await fetch(`${base}${path}`);
      assert.equal(r.status, 200, path);
      assert.match(r.headers.get("content-type")!, type, path);
      await r.body?.cancel();
    }
    const uplot = await (await fetch(`${base}/monitor/vendor/uPlot.esm.js`)).text();
    assert.match(uplot, /export \{ uPlot as default \}/);
    for (const path of ["/monitor/../state.db", "/monitor/token", "/index.html"]) {
      const r = await fetch(`${base}${path}`);
      assert.equal(r.status, 401, `${path} is not a page asset`);
      await r.body?.cancel();
    }
  });
});
