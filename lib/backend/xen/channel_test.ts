import assert from "node:assert/strict";
import { formatReply, parseRequest, SF } from "./channel.ts";

Deno.test("parseRequest() reads every operation libsf.c sends", () => {
  assert.deepEqual(parseRequest("17 ticket 4"), {
    ok: true,
    request: { seq: "17", op: "ticket", slots: 4 },
  });
  assert.deepEqual(parseRequest("18 clone t-1a2b"), {
    ok: true,
    request: { seq: "18", op: "clone", ticket: "t-1a2b" },
  });
  assert.deepEqual(parseRequest("19 join t-1a2b").ok, true);
  assert.deepEqual(parseRequest("20 kill t-1a2b").ok, true);
  assert.deepEqual(parseRequest("21 exit 3"), {
    ok: true,
    request: { seq: "21", op: "exit", code: 3 },
  });
});

Deno.test("parseRequest() answers malformed requests with EINVAL, never throws", () => {
  const cases = [
    "",
    "x ticket 4",
    "5 ticket",
    "5 ticket -1",
    "5 ticket 99999",
    "5 clone",
    "5 clone ../../etc",
    "5 fork t-1",
    "5 exit abc",
    "5 join t-1 extra",
    "9".repeat(300),
    "\u0000\u0001",
  ];
  for (const text of cases) {
    const r = parseRequest(text);
    assert.equal(r.ok, false, JSON.stringify(text));
    if (!r.ok) assert.equal(r.code, SF.EINVAL);
  }
  const r = parseRequest("5 fork t-1");
  assert.ok(!r.ok && r.seq === "5" && /unknown operation "fork"/.test(r.reason));
});

Deno.test("formatReply() is what sf_call() parses", () => {
  assert.equal(formatReply("7", 0, "t-1 4"), "7 0 t-1 4");
  assert.equal(formatReply("7", -22), "7 -22");
  assert.equal(formatReply("7", 0, 3), "7 0 3");
});
