/**
 * The guest channel over XenStore (as SnowFlock did): what native/xen/guest/
 * libsf.c writes and what the agent answers. Pure parsing/formatting, tested
 * without Xen.
 *
 *   <home>/data/snowflock/request   guest → agent  "<seq> <op> [<arg>]"
 *   <home>/data/snowflock/reply     agent → guest  "<seq> <rc> [<value>]"
 *   <home>/data/snowflock/clone-id  agent → clone  "<id>" (written before the clone runs)
 *
 * @module
 */

export const CHANNEL_DIR = "data/snowflock";
export const REQUEST_KEY = `${CHANNEL_DIR}/request`;
export const REPLY_KEY = `${CHANNEL_DIR}/reply`;
export const CLONE_ID_KEY = `${CHANNEL_DIR}/clone-id`;

/** The negative codes of native/xen/guest/sf.h. */
export const SF = {
  OK: 0,
  EINVAL: -22,
  EIO: -5,
  ENOSLOTS: -28,
  ENOTICKET: -2,
  ECLONE: -3,
} as const;

export type GuestRequest =
  | { seq: string; op: "ticket"; slots: number }
  | { seq: string; op: "clone" | "join" | "kill"; ticket: string }
  | { seq: string; op: "exit"; code: number };

export type ParsedRequest =
  | { ok: true; request: GuestRequest }
  /** `seq` is "0" when even the sequence number was unreadable. */
  | { ok: false; seq: string; code: number; reason: string };

const MAX_REQUEST_BYTES = 256;
const SEQ = /^[0-9]{1,20}$/;
const TICKET = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** Parses what a guest wrote; never throws (a guest's bytes are untrusted). */
export function parseRequest(text: string): ParsedRequest {
  const bad = (seq: string, reason: string): ParsedRequest => ({
    ok: false,
    seq,
    code: SF.EINVAL,
    reason,
  });
  if (text.length > MAX_REQUEST_BYTES) return bad("0", `request of ${text.length} bytes`);
  const parts = text.trim().split(/ +/);
  const [seq, op, arg, ...rest] = parts;
  if (!seq || !SEQ.test(seq)) return bad("0", `bad sequence number ${JSON.stringify(seq ?? "")}`);
  if (rest.length > 0) return bad(seq, "too many arguments");
  switch (op) {
    case "ticket": {
      const n = Number(arg);
      if (!/^[0-9]{1,4}$/.test(arg ?? "") || n < 1 || n > 4096) {
        return bad(seq, `ticket size ${JSON.stringify(arg ?? "")} is not 1..4096`);
      }
      return { ok: true, request: { seq, op, slots: n } };
    }
    case "clone":
    case "join":
    case "kill":
      if (!arg || !TICKET.test(arg)) return bad(seq, `bad ticket ${JSON.stringify(arg ?? "")}`);
      return { ok: true, request: { seq, op, ticket: arg } };
    case "exit": {
      const code = arg === undefined ? 0 : Number(arg);
      if (!Number.isInteger(code) || code < -255 || code > 255) {
        return bad(seq, `exit code ${JSON.stringify(arg)} is not an integer in -255..255`);
      }
      return { ok: true, request: { seq, op, code } };
    }
    default:
      return bad(seq, `unknown operation ${JSON.stringify(op ?? "")}`);
  }
}

/** "<seq> <rc>[ <value>]" — what the guest's sf_call() waits for. */
export function formatReply(seq: string, rc: number, value?: string | number): string {
  return value === undefined || value === "" ? `${seq} ${rc}` : `${seq} ${rc} ${value}`;
}
