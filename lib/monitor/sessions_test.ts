import assert from "node:assert/strict";
import {
  acceptsSession,
  MonitorSessions,
  readSessionCookie,
  SESSION_TTL_MS,
  sessionCookie,
} from "./sessions.ts";

Deno.test("MonitorSessions: a session is valid until it expires, then forgotten", () => {
  let now = 1_000_000;
  const sessions = new MonitorSessions(() => now);
  const s = sessions.create();
  assert.match(s.id, /^[0-9a-f]{64}$/);
  assert.equal(s.expiresAt, now + SESSION_TTL_MS);
  assert.ok(sessions.valid(s.id));
  assert.ok(!sessions.valid("f".repeat(64)));
  assert.ok(!sessions.valid(undefined));
  now += SESSION_TTL_MS;
  assert.ok(!sessions.valid(s.id));
  assert.equal(sessions.size, 0);
});

Deno.test("MonitorSessions: delete ends a session; a login loop cannot grow the table", () => {
  const sessions = new MonitorSessions();
  const first = sessions.create();
  sessions.delete(first.id);
  assert.ok(!sessions.valid(first.id));
  const oldest = sessions.create();
  for (let i = 0; i < 1000; i++) sessions.create();
  assert.equal(sessions.size, 256);
  assert.ok(!sessions.valid(oldest.id), "the oldest session made room");
});

Deno.test("sessionCookie(): HttpOnly, SameSite=Strict, scoped to /v1/ and to the port", () => {
  const url = new URL("http://127.0.0.1:7070/v1/session");
  const cookie = sessionCookie(url, { id: "abc", expiresAt: 61_000 }, 1_000);
  assert.equal(
    cookie,
    "snowflock_session_7070=abc; Path=/v1/; Max-Age=60; HttpOnly; SameSite=Strict",
  );
  assert.match(
    sessionCookie(url, { id: "abc", expiresAt: 61_000 }, 1_001),
    /Max-Age=60;/,
    "a cookie written a moment after its session began still gets the whole lifetime",
  );
  assert.match(
    sessionCookie(new URL("https://m.example/v1/session"), undefined),
    /_443=; .*Max-Age=0.*; Secure$/,
  );
});

Deno.test("readSessionCookie() picks this port's cookie among others", () => {
  const url = new URL("http://127.0.0.1:7070/v1/events");
  const headers = new Headers({
    cookie: "snowflock_session_7071=other; theme=dark; snowflock_session_7070=mine",
  });
  assert.equal(readSessionCookie(url, headers), "mine");
  assert.equal(readSessionCookie(url, new Headers()), undefined);
});

Deno.test("acceptsSession(): only reading events and ending the session", () => {
  assert.ok(acceptsSession("GET", "/v1/events"));
  assert.ok(acceptsSession("DELETE", "/v1/session"));
  assert.ok(!acceptsSession("POST", "/v1/session"), "a session cannot make sessions");
  assert.ok(!acceptsSession("GET", "/v1/status"));
  assert.ok(!acceptsSession("POST", "/v1/tickets"));
});
