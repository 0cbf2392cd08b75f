/**
 * Child processes for multi-host tests: output collected line by line, waits on
 * a line, and stopping that reaches the whole process tree.
 *
 * Every child runs in a session of its own (`detached`, i.e. setsid), so its pid
 * is also its process group id and a signal to `-pid` reaches grandchildren that
 * stayed in the group.
 */

/** Which output stream a line came from. */
export type StreamName = "stdout" | "stderr";

/** How to start a process. */
export interface SpawnOptions {
  /** Added to the inherited environment. */
  env?: Record<string, string>;
  cwd?: string;
  /** Called for every complete output line, as it arrives. */
  onLine?: (line: string, stream: StreamName) => void;
}

/** How long `stop()` waits after SIGTERM before SIGKILL, by default. */
export const DEFAULT_GRACE_MS = 2_000;

/** A process could not be started, waited on or stopped. */
export class HarnessProcessError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "HarnessProcessError";
  }
}

interface LineWaiter {
  pattern: RegExp;
  stream: StreamName | undefined;
  resolve: (line: string) => void;
  reject: (error: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

/** A running (or finished) child process with its output split into lines. */
export class HarnessProcess {
  readonly pid: number;
  readonly cmd: readonly string[];
  /** Complete lines written so far, without their line ends. */
  readonly stdout: string[] = [];
  readonly stderr: string[] = [];
  #child: Deno.ChildProcess;
  #onLine: SpawnOptions["onLine"];
  #waiters = new Set<LineWaiter>();
  #readers: ReadableStreamDefaultReader<string>[] = [];
  #drained: Promise<void>;
  #isDrained = false;
  #stopping: Promise<Deno.CommandStatus> | undefined;

  constructor(cmd: readonly string[], options: SpawnOptions = {}) {
    if (cmd.length === 0) throw new TypeError("Cannot spawn a process: empty command");
    this.cmd = cmd;
    this.#onLine = options.onLine;
    try {
      this.#child = new Deno.Command(cmd[0], {
        args: cmd.slice(1),
        env: options.env,
        cwd: options.cwd,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
        detached: true,
      }).spawn();
    } catch (error) {
      throw new HarnessProcessError(`Cannot spawn ${cmd.join(" ")}: ${error}`, { cause: error });
    }
    this.pid = this.#child.pid;
    this.#drained = Promise.all([
      this.#pump(this.#child.stdout, "stdout"),
      this.#pump(this.#child.stderr, "stderr"),
    ]).then(() => this.#finishOutput());
  }

  /** Exit status of the direct child (the group leader). */
  get status(): Promise<Deno.CommandStatus> {
    return this.#child.status;
  }

  /**
   * Resolves with the first line (already written or still to come) that
   * matches; rejects when the output ends or `timeoutMs` passes first.
   */
  waitForLine(
    pattern: RegExp,
    timeoutMs = 10_000,
    options: { stream?: StreamName } = {},
  ): Promise<string> {
    const seen = options.stream === undefined
      ? [...this.stdout, ...this.stderr]
      : this[options.stream];
    const found = seen.find((line) => pattern.test(line));
    if (found !== undefined) return Promise.resolve(found);
    if (this.#isDrained) {
      return Promise.reject(this.#waitError(pattern, "the process closed its output"));
    }
    return new Promise((resolve, reject) => {
      const waiter: LineWaiter = {
        pattern,
        stream: options.stream,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.#waiters.delete(waiter);
          reject(this.#waitError(pattern, `no match within ${timeoutMs} ms`));
        }, timeoutMs),
      };
      this.#waiters.add(waiter);
    });
  }

  /** Sends `signal` to the whole process group; a group already gone is not an error. */
  kill(signal: Deno.Signal = "SIGTERM"): void {
    try {
      Deno.kill(-this.pid, signal);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }

  /**
   * Ends the process group: SIGTERM, then SIGKILL for whatever is left after
   * `graceMs`. Resolves once no member of the group runs and the output is
   * closed. Calling it again returns the same promise.
   */
  stop(graceMs = DEFAULT_GRACE_MS): Promise<Deno.CommandStatus> {
    this.#stopping ??= this.#stop(graceMs);
    return this.#stopping;
  }

  async #stop(graceMs: number): Promise<Deno.CommandStatus> {
    if (groupAlive(this.pid)) {
      this.kill("SIGTERM");
      if (!await waitUntil(() => !groupAlive(this.pid), graceMs)) {
        this.kill("SIGKILL");
        await waitUntil(() => !groupAlive(this.pid), 5_000);
      }
    }
    const status = await this.#child.status;
    // A grandchild that left the group may still hold the pipes open; stop reading.
    if (!await waitUntil(() => this.#isDrained, 1_000)) {
      await Promise.all(this.#readers.map((reader) => reader.cancel().catch(() => {})));
    }
    await this.#drained;
    return status;
  }

  async #pump(stream: ReadableStream<Uint8Array>, name: StreamName): Promise<void> {
    const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
    this.#readers.push(reader);
    let partial = "";
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        const parts = (partial + value).split("\n");
        partial = parts.pop() ?? "";
        for (const line of parts) this.#addLine(line, name);
      }
    } catch {
      // Cancelled by stop(): the output ends here.
    }
    if (partial !== "") this.#addLine(partial, name);
  }

  #addLine(raw: string, stream: StreamName): void {
    const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    this[stream].push(line);
    this.#onLine?.(line, stream);
    for (const waiter of this.#waiters) {
      if (waiter.stream !== undefined && waiter.stream !== stream) continue;
      if (!waiter.pattern.test(line)) continue;
      clearTimeout(waiter.timer);
      this.#waiters.delete(waiter);
      waiter.resolve(line);
    }
  }

  #finishOutput(): void {
    this.#isDrained = true;
    for (const waiter of this.#waiters) {
      clearTimeout(waiter.timer);
      waiter.reject(this.#waitError(waiter.pattern, "the process closed its output"));
    }
    this.#waiters.clear();
  }

  #waitError(pattern: RegExp, reason: string): HarnessProcessError {
    const tail = [...this.stdout.slice(-10), ...this.stderr.slice(-10)].join("\n  ");
    return new HarnessProcessError(
      `Cannot wait for ${pattern} from ${this.cmd.join(" ")} (pid ${this.pid}): ${reason}` +
        (tail === "" ? "" : `; last output:\n  ${tail}`),
    );
  }
}

/** Starts `cmd` in a new session; see {@link HarnessProcess}. */
export function spawnProcess(cmd: readonly string[], options?: SpawnOptions): HarnessProcess {
  return new HarnessProcess(cmd, options);
}

/** Whether `pid` names a process that still runs (a zombie has finished). */
export function processAlive(pid: number): boolean {
  const state = readProcStat(String(pid))?.state;
  return state !== undefined && state !== "Z" && state !== "X";
}

/** Whether any live (non-zombie) process belongs to process group `pgid`. */
export function groupAlive(pgid: number): boolean {
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    const stat = readProcStat(entry.name);
    if (stat?.pgrp === pgid && stat.state !== "Z" && stat.state !== "X") return true;
  }
  return false;
}

function readProcStat(pid: string): { state: string; pgrp: number } | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch {
    return undefined; // The process is gone (or was never there).
  }
  // The command name in parentheses may hold spaces: split after its last ")".
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return { state: fields[0], pgrp: Number(fields[2]) };
}

async function waitUntil(done: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return true;
}
