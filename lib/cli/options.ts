/** Option parsers and shared options for the CLI; a bad value is a one-line error. */
import { InvalidArgumentError, Option } from "commander";
import { type HostPort, parseHostPort } from "../control/address.ts";

export function parseAddress(defaultHost: string): (text: string) => HostPort {
  return (text) => {
    try {
      return parseHostPort(text, defaultHost);
    } catch (e) {
      throw new InvalidArgumentError((e as Error).message);
    }
  };
}

export function parseCount(min: number, max: number): (text: string) => number {
  return (text) => {
    const n = Number(text);
    if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`expected a whole number from ${min} to ${max}`);
    }
    return n;
  };
}

export function parseIPv4(text: string): string {
  const parts = text.split(".");
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) {
    throw new InvalidArgumentError("expected an IPv4 address such as 239.255.77.0");
  }
  return text;
}

export function parseName(text: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(text)) {
    throw new InvalidArgumentError("expected 1-64 letters, digits, '_', '.', '-'");
  }
  return text;
}

export function masterOption(): Option {
  return new Option("--master <addr>", "the master's host:port").env("SNOWFLOCK_MASTER")
    .default("127.0.0.1:7070");
}

export function tokenOption(description = "the join token"): Option {
  return new Option("--token <token>", description).env("SNOWFLOCK_TOKEN");
}

/** Resolves when the process is asked to stop (SIGINT or SIGTERM). */
export function untilSignal(): Promise<Deno.Signal> {
  return new Promise((resolve) => {
    const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
    const handlers = signals.map((s) => {
      const h = () => {
        signals.forEach((t, i) => Deno.removeSignalListener(t, handlers[i]));
        resolve(s);
      };
      Deno.addSignalListener(s, h);
      return h;
    });
  });
}

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}
