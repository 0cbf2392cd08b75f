/**
 * The lab's xen agent: the agent service `snowflock agent --backend xen` runs (probe,
 * data plane, mcdist probe and server, join), plus the lab's diagnostics and a figures
 * file for the scenario's JSON.
 *   deno run -A scripts/lab/xen/agent.ts MASTER TOKEN NAME SLOTS ADVERTISE_IP
 */
import { XenAgentVms } from "../../../lib/backend/xen/agent.ts";
import { startAgent } from "../../../lib/control/agent_service.ts";
import { createLogger } from "../../../lib/log.ts";
import { installDiagnostics } from "./diag.ts";

const [master, token, name, slots, ip] = Deno.args;
installDiagnostics(`agent ${name}`);
const logger = createLogger(`agent ${name}`, { verbose: Deno.env.get("SF_VERBOSE") === "1" });
const workDir = `/tmp/sf-${name}`;
await Deno.mkdir(workDir, { recursive: true });
const svc = await startAgent({
  master,
  token,
  name,
  backend: "xen",
  slots: Number(slots),
  listen: { hostname: ip, port: 7072 },
  advertise: ip,
  workDir,
  logger,
});
if (!(svc.vms instanceof XenAgentVms)) throw new Error("Cannot run the lab: not a xen agent");
const vms = svc.vms;
await svc.agent.joined;
console.log(`[agent ${name}] joined ${master}; memory server ${vms.memoryServer}`);
// Lab figures, for the scenario's JSON: written after every fork/clone start.
setInterval(() => {
  Deno.writeTextFileSync(`/tmp/sf-figures-${name}.json`, JSON.stringify(vms.figures));
}, 1000);
