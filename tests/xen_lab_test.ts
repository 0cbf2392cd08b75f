/**
 * THE XEN LAB (slow: two Xen hosts under QEMU TCG emulation). Runs `deno task
 * lab:xen` (scripts/lab/xen.sh) and checks its last line. Opt-in because it
 * takes minutes: set SNOWFLOCK_XEN_LAB=1 (CI sets it); otherwise it says it
 * was skipped and why. Needs root, qemu-system-x86 and Debian's Xen packages
 * (the script installs what is missing).
 */
import assert from "node:assert/strict";

const enabled = Deno.env.get("SNOWFLOCK_XEN_LAB") === "1";

Deno.test({
  name:
    "xen lab: 4 clones of a PV guest on 2 Xen hosts, side by side with xl save/restore; a clone on a dying host fails sf_join",
  ignore: !enabled,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const t0 = performance.now();
    const out = await new Deno.Command("bash", {
      args: [new URL("../scripts/lab/xen.sh", import.meta.url).pathname],
      stdout: "piped",
      stderr: "inherit",
    }).output();
    const lines = new TextDecoder().decode(out.stdout).trim().split("\n");
    const result = JSON.parse(lines.at(-1)!);
    console.log(`xen lab: ${((performance.now() - t0) / 1000).toFixed(0)} s: ${lines.at(-1)}`);
    assert.equal(result.ok, true);
    assert.equal(result.hosts, 2);
    assert.equal(result.clones, 4);
    for (
      const k of [
        "descriptor_bytes",
        "guest_memory_bytes",
        "parent_pause_ms",
        "clone_ready_ms",
        "pages_sent",
        "pages_avoided",
        "xl_pause_ms",
        "xl_clone_ready_ms",
      ]
    ) assert.equal(typeof result[k], "number", k);
    assert.ok(result.descriptor_bytes < result.guest_memory_bytes / 10);
    // The memory server's pages came from the paused parent through foreign mappings, and
    // matched libxc's own copy of them.
    assert.ok(result.pages_foreign > 0);
    assert.equal(result.foreign_mismatches, 0);
    // A malformed guest request got EINVAL and the agent kept serving (the fork came after).
    assert.equal(result.malformed_request_rc, -22);
    // Second fork: host2's agent was killed while its clone started; sf_join said so.
    assert.equal(result.host_death.clone_on_dead_host, "failed");
    assert.equal(result.host_death.join_rc, 1);
    assert.ok(out.success);
  },
});

if (!enabled) {
  console.warn(
    "SKIPPED xen lab: set SNOWFLOCK_XEN_LAB=1 to run it (minutes under TCG; see scripts/lab/xen.sh)",
  );
}
