import { fail, type Op } from "./errors.ts";

function isU32(value: number): boolean {
  return Number.isInteger(value) && value >= 0 && value <= 0xffff_ffff;
}

export function checkU32(op: Op, value: number, what: string): void {
  if (!isU32(value)) fail(op, `${what} ${value} is not a u32`);
}

export function checkBytes(op: Op, value: Uint8Array, length: number, what: string): void {
  if (!(value instanceof Uint8Array) || value.length !== length) {
    fail(op, `${what} must be ${length} bytes, got ${describeLength(value)}`);
  }
}

export interface StringRules {
  /** Identifiers must say something. */
  nonEmpty?: boolean;
  /** WASI hands these to the guest as NUL-terminated C strings. */
  noNul?: boolean;
}

/** Lone surrogates are rejected: UTF-8 cannot carry them, so they would not round-trip. */
export function checkString(op: Op, value: string, what: string, rules: StringRules = {}): void {
  if (typeof value !== "string" || !value.isWellFormed()) {
    fail(op, `${what} is not a well-formed string`);
  }
  if (rules.nonEmpty && value.length === 0) fail(op, `${what} is empty`);
  if (rules.noNul && value.includes("\0")) fail(op, `${what} contains a NUL character`);
}

/** Every element is a string following `rules`; `what` names the list. */
export function checkStrings(op: Op, values: string[], what: string, rules?: StringRules): void {
  if (!Array.isArray(values)) fail(op, `${what} is not a list`);
  values.forEach((value, i) => checkString(op, value, `${what}[${i}]`, rules));
}

function describeLength(value: unknown): string {
  return value instanceof Uint8Array ? `${value.length}` : typeof value;
}
