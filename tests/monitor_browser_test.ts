/**
 * The web monitor in a real browser (Debian's Chromium via playwright-core)
 * against an embedded cluster: a fork of 8 clones over 4 hosts watched live,
 * a wrong token, and the master restarting under an open page.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { Page } from "playwright-core";
import { MasterClient } from "../lib/control/client.ts";
import { startEmbeddedCluster } from "../lib/control/embedded.ts";
import { type MasterService, startMaster } from "../lib/control/master_service.ts";
import type { ClusterView } from "../lib/control/messages.ts";
import { createLogger } from "../lib/log.ts";
import { memoryTotals } from "../lib/monitor/page/model.js";
import { tempDir } from "./harness/temp_dir.ts";
import { browserTest, logIn, openBrowser, outputDir } from "./monitor_browser.ts";
import { runFork } from "./monitor_fork.ts";

const quiet = createLogger("test", { quiet: true, sink: () => {} });

/** Waits until `selector` matches `n` elements, and no more. */
async function waitForCount(page: Page, selector: string, n: number): Promise<void> {
  await page.locator(selector).nth(n - 1).waitFor({ timeout: 30_000 });
  assert.equal(await page.locator(selector).count(), n, selector);
}

/** Polls `check` until it holds (10 s at most). */
async function eventually(what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A figure as the page shows it: its data-value. */
async function figure(page: Page, cluster: string, key: string): Promise<number> {
  return Number(
    await page.getAttribute(`[data-cluster="${cluster}"] [data-figure="${key}"]`, "data-value"),
  );
}

browserTest(
  "monitor: a fork of 8 clones over 4 hosts, live in Chromium, with a screenshot",
  async () => {
    await using data = await tempDir("sf-monitor-browser");
    const cluster = await startEmbeddedCluster({
      hosts: 4,
      slotsPerHost: 2,
      dataDir: data.path,
      logger: quiet,
    });
    await using browser = await openBrowser();
    const { page } = browser;
    try {
      const { address, token } = cluster.master;
      const client = new MasterClient(address, token);
      await page.goto(`http://${address}/`);
      await logIn(page, token);
      await waitForCount(page, '#hosts [data-host][data-state="up"]', 4);
      assert.equal(await page.textContent("#link"), "live");
      assert.ok(!page.url().includes(token), "the token never goes in the URL");
      assert.equal(await page.evaluate(() => sessionStorage.getItem("snowflock.token")), token);
      const [cookie] = await browser.context.cookies();
      assert.ok(cookie.httpOnly && cookie.sameSite === "Strict", JSON.stringify(cookie));

      // The clones run 3 s: the page shows them running before they exit. A fork
      // that fails ends the wait with its clones' reasons.
      const fork = runFork(client);
      await Promise.race([
        page.waitForSelector('[data-cluster] [data-clone][data-state="running"]', {
          timeout: 30_000,
        }),
        fork.then(() => assert.fail("the fork ended before the page showed a clone running")),
      ]);
      await page.waitForSelector('[data-cluster] [data-step="ready"].done');
      await fork;

      let view: ClusterView = (await client.status()).clusters[0];
      const card = `[data-cluster="${view.id}"]`;
      await page.waitForSelector(`${card}[data-state="joined"]`, { timeout: 10_000 });
      await waitForCount(page, `${card} [data-clone][data-state="exited"]`, 8);
      const hosts = await Promise.all(
        (await page.locator(`${card} [data-clone]`).all()).map((e) => e.getAttribute("data-host")),
      );
      assert.equal(new Set(hosts).size, 4, `clones spread over 4 hosts: ${hosts}`);
      assert.equal(await page.textContent(`${card} .parent .host`), view.parentHost);
      assert.match(
        (await page.textContent(`#tickets [data-ticket="${view.ticket}"] td:nth-child(4)`))!,
        /^builtin/,
        "the ticket's allocator",
      );

      // The fork's timeline and descriptor are always there.
      await page.waitForSelector(`${card} [data-step="joined"].done`);
      assert.equal(await figure(page, view.id, "descriptorBytes"), view.timeline.descriptorBytes);
      assert.ok((view.timeline.descriptorBytes ?? 0) > 0);
      for (const step of ["descriptor", "ready", "joined"]) {
        assert.ok(Number(await page.getAttribute(`${card} [data-step="${step}"]`, "data-ms")) > 0);
      }
      // Memory figures follow the data: whatever the agents reported, the page shows,
      // non-zero where the master has non-zero figures. The last reports may trail
      // the clones' exits, so the page and the API are compared until they agree.
      const keys = ["pagesFetched", "pagesAvoided", "multicastBytes", "unicastBytes"] as const;
      let want = memoryTotals(view);
      await eventually("the page's memory figures to match the API's", async () => {
        view = (await client.status()).clusters[0];
        want = memoryTotals(view);
        for (const key of keys) if (await figure(page, view.id, key) !== want[key]) return false;
        return true;
      });
      const reported = want.reporting > 0 || view.memory !== undefined;
      if (reported) {
        assert.ok(want.pagesFetched + want.pagesAvoided > 0, "a fork moves or avoids pages");
        assert.ok(
          await figure(page, view.id, "pagesFetched") +
              await figure(page, view.id, "pagesAvoided") > 0,
        );
      } else {
        console.warn("note: no agent reported memory figures yet; the page shows zeros for them");
      }
      assert.equal(await page.locator(`${card} .chart canvas`).count(), 3, "three live charts");

      const shot = join(await outputDir(), "monitor-fork.png");
      await page.screenshot({ path: shot, fullPage: true });
      console.log(`screenshot: ${shot}`);
      assert.deepEqual(browser.errors, [], "no console errors (CSP refusals show up here)");
    } finally {
      await cluster.close();
    }
  },
);

browserTest(
  "monitor: a wrong token shows the login form with an error, never the data",
  async () => {
    await using data = await tempDir("sf-monitor-login");
    const cluster = await startEmbeddedCluster({
      hosts: 2,
      slotsPerHost: 1,
      dataDir: data.path,
      logger: quiet,
    });
    await using browser = await openBrowser();
    const { page } = browser;
    try {
      await page.goto(`http://${cluster.master.address}/`);
      await logIn(page, "not-the-token");
      await page.waitForSelector("#login-error", { state: "visible" });
      assert.match((await page.textContent("#login-error"))!, /refused/);
      assert.ok(await page.isVisible("#login-form"));
      assert.ok(await page.isHidden("#data"));
      assert.equal(await page.locator("[data-host], [data-ticket], [data-cluster]").count(), 0);
      assert.doesNotMatch(await page.content(), /host1|host2/);
      assert.equal(await page.evaluate(() => sessionStorage.getItem("snowflock.token")), null);
      assert.deepEqual(await browser.context.cookies(), []);
      assert.ok(!page.url().includes("not-the-token"));
      const shot = join(await outputDir(), "monitor-login-refused.png");
      await page.screenshot({ path: shot });
      console.log(`screenshot: ${shot}`);

      // The right token after a wrong one gets in.
      await logIn(page, cluster.master.token);
      await waitForCount(page, "#hosts [data-host]", 2);
      assert.ok(await page.isHidden("#login"));
    } finally {
      await cluster.close();
    }
  },
);

browserTest("monitor: the page reconnects and catches up after the master restarts", async () => {
  await using data = await tempDir("sf-monitor-restart");
  const cluster = await startEmbeddedCluster({
    hosts: 2,
    slotsPerHost: 2,
    dataDir: data.path,
    logger: quiet,
  });
  const port = Number(cluster.master.address.split(":").at(-1));
  const { token } = cluster.master;
  let master: MasterService | undefined = cluster.master;
  await using browser = await openBrowser();
  const { page } = browser;
  try {
    await page.goto(`http://${cluster.master.address}/`);
    await logIn(page, token);
    await waitForCount(page, '#hosts [data-host][data-state="up"]', 2);
    const startedAt = await page.getAttribute("#master", "data-started-at");

    await master.close();
    master = undefined;
    await page.waitForSelector('#link[data-state="reconnecting"]');
    assert.equal(await page.locator("#hosts [data-host]").count(), 2, "the last status stays up");

    master = await startMaster({
      listen: { hostname: "127.0.0.1", port },
      dataDir: data.path,
      allocator: "builtin",
      logger: quiet,
    });
    await page.waitForSelector(`#master:not([data-started-at="${startedAt}"])`, {
      timeout: 20_000,
    });
    await page.waitForSelector('#link[data-state="live"]');
    // Catching up: what happens on the new master reaches the page, agents rejoin.
    const ticket = await new MasterClient(master.address, token).requestTicket(1);
    await page.waitForSelector(`#tickets [data-ticket="${ticket.id}"]`);
    await waitForCount(page, '#hosts [data-host][data-state="up"]', 2);
    assert.equal(
      await page.evaluate(() => sessionStorage.getItem("snowflock.token")),
      token,
      "logged in again by itself, no form",
    );
    assert.ok(await page.isHidden("#login"));
  } finally {
    await master?.close();
    await Promise.all(cluster.agents.map((a) => a.close()));
  }
});
