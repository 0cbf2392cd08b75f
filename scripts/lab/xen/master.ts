/**
 * The lab's master: `snowflock master` (main.ts) with the lab diagnostics
 * (event-loop stalls, WebSocket closes, memory) installed first.
 *   deno run -A scripts/lab/xen/master.ts master --listen … (main.ts's arguments)
 */
import { runCli } from "../../../lib/cli/program.ts";
import { installDiagnostics } from "./diag.ts";

installDiagnostics("master");
Deno.exit(await runCli(Deno.args));
