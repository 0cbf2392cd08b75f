/**
 * The lab's xen agent: what `snowflock agent --backend xen` will be once wired
 * (lib/cli/agent.ts and lib/control/agent_service.ts are not this lab's to
 * change). Joins the master, serves the data plane, hands master calls to
 * XenAgentVms.
 *   deno run -A scripts/lab/xen/agent.ts MASTER TOKEN NAME SLOTS ADVERTISE_IP
 */
import { probeAll } from "../../../lib/backend/backend.ts";
import { XenAgentVms } from "../../../lib/backend/xen/agent.ts";
import { Agent } from "../../../lib/control/agent.ts";
import { serveAgentData } from "../../../lib/control/agent_http.ts";
import { createLogger } from "../../../lib/log.ts";
import { installDiagnostics } from "./diag.ts";

const [master, token, name, slots, ip] = Deno.args;
installDiagnostics(`agent ${name}`);
const logger = createLogger(`agent ${name}`, { verbose: Deno.env.get("SF_VERBOSE") === "1" });
const data = await serveAgentData({ hostname: ip, port: 7072 }, logger);
const workDir = `/tmp/sf-${name}`;
await Deno.mkdir(workDir, { recursive: true });
const agent: Agent = new Agent({
  master,
  token,
  name,
  slots: Number(slots),
  backends: probeAll(),
  dataAddress: `${ip}:${data.port}`,
  logger,
  onRequest: (call) => vms.handle(call),
});
const vms: XenAgentVms = new XenAgentVms({
  agent,
  master,
  token,
  advertiseHost: ip,
  workDir,
  logger,
});
await agent.joined;
console.log(`[agent ${name}] joined ${master}; memory server ${vms.memoryServer}`);
// Lab figures, for the scenario's JSON: written after every fork/clone start.
setInterval(() => {
  Deno.writeTextFileSync(`/tmp/sf-figures-${name}.json`, JSON.stringify(vms.figures));
}, 1000);
