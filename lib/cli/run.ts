/** `snowflock run app.wasm [-- args]`: runs a guest on a host the master picks. */
import { Command } from "commander";
import { MasterClient } from "../control/client.ts";
import { masterOption, parseName, tokenOption, UsageError } from "./options.ts";
import { printLine, runJob } from "./run_job.ts";

interface RunFlags {
  master: string;
  token?: string;
  out?: string;
  host?: string;
  env: string[];
}

export function runCommand(): Command {
  return new Command("run")
    .description("run a WASI guest or a Python job (it may fork) and stream its output")
    .argument("<app.wasm|job.py>", "the guest module, or a Python job")
    .argument("[args...]", "the guest's arguments (after --)")
    .addOption(masterOption())
    .addOption(tokenOption("the master's token"))
    .option("--out <dir>", "copy the guest's /out here when it exits")
    .option("--host <name>", "run on this host", parseName)
    .option("--env <k=v>", "guest environment variable (repeatable)", collect, [])
    .action(async (wasm: string, args: string[], f: RunFlags) => {
      if (!f.token) throw new UsageError("missing --token <token> (or SNOWFLOCK_TOKEN)");
      const result = await runJob({
        client: new MasterClient(f.master, f.token),
        wasmPath: wasm,
        args,
        env: f.env,
        ...(f.host ? { host: f.host } : {}),
        ...(f.out ? { outDir: f.out } : {}),
        onLine: printLine,
        onProgress: (m) => console.error(`snowflock: ${m}`),
      });
      if (result.reason) console.error(`snowflock: guest failed: ${result.reason}`);
      if (result.exitCode !== 0) throw new ExitCode(result.exitCode);
    });
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** Ends the CLI with the guest's exit code, without an error message. */
export class ExitCode extends Error {
  readonly code: number;
  constructor(code: number) {
    super(`exit ${code}`);
    this.name = "ExitCode";
    this.code = code;
  }
}
