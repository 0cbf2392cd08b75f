/** The command table: every subcommand, and how errors become one line and an exit code. */
import { Command, CommanderError } from "commander";
import { VERSION } from "../version.ts";
import { agentCommand } from "./agent.ts";
import { benchCommand } from "./bench.ts";
import { ccCommand } from "./cc.ts";
import { demoCommand } from "./demo.ts";
import { masterCommand } from "./master.ts";
import { ExitCode, runCommand } from "./run.ts";
import { statusCommand } from "./status.ts";

const COMMANDS = [
  masterCommand,
  agentCommand,
  statusCommand,
  runCommand,
  ccCommand,
  demoCommand,
  benchCommand,
];

export function buildProgram(): Command {
  const program = new Command("snowflock")
    .description("fork running VMs into impromptu clusters across hosts")
    .version(VERSION, "-V, --version")
    .showHelpAfterError("(run with --help for usage)")
    .exitOverride();
  for (const make of COMMANDS) program.addCommand(make().exitOverride());
  return program;
}

/** Runs the CLI; returns the process exit code instead of exiting. */
export async function runCli(args: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(args, { from: "user" });
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode;
    if (e instanceof ExitCode) return e.code;
    console.error(`snowflock: ${(e as Error).message}`);
    return 1;
  }
}
