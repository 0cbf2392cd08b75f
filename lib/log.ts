/**
 * Structured, quiet-by-default logging: one line per event, `key=value` fields.
 * Warnings and errors always print; `info` prints unless quiet; `debug` needs --verbose.
 */
export type LogLevel = "debug" | "info" | "warn" | "error";

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(component: string): Logger;
}

export interface LogOptions {
  verbose?: boolean;
  quiet?: boolean;
  sink?: (line: string) => void;
}

const RANK: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

export function createLogger(component: string, options: LogOptions = {}): Logger {
  const min = options.verbose ? RANK.debug : options.quiet ? RANK.warn : RANK.info;
  const sink = options.sink ?? ((line: string) => console.error(line));
  const emit = (level: LogLevel, msg: string, fields?: Record<string, unknown>) => {
    if (RANK[level] < min) return;
    const parts = [new Date().toISOString(), level.padEnd(5), `[${component}]`, msg];
    for (const [k, v] of Object.entries(fields ?? {})) parts.push(`${k}=${formatValue(v)}`);
    sink(parts.join(" "));
  };
  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
    child: (name) => createLogger(`${component}/${name}`, options),
  };
}

function formatValue(v: unknown): string {
  if (v instanceof Error) return JSON.stringify(v.message);
  if (typeof v === "string") return /^[\w.:\/-]+$/.test(v) ? v : JSON.stringify(v);
  return JSON.stringify(v);
}
