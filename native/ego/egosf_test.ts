import assert from "node:assert/strict";
import { EgoSession, EgoSfError } from "./egosf.ts";
import {
  buildStandinLibegosf,
  EGO_CONSUMER,
  EGO_PASSWORD,
  EGO_RESOURCE_GROUP,
  EGO_USER,
  standinReclaim,
  writeStandinConf,
} from "../../tests/ego_standin.ts";
import { tempDir } from "../../tests/harness/temp_dir.ts";

async function withSession(fn: (s: EgoSession, confDir: string) => Promise<void>): Promise<void> {
  const library = await buildStandinLibegosf();
  await using conf = await tempDir("sf-egosf");
  await writeStandinConf(conf.path, [{ name: "h1", slots: 2 }, { name: "h2", slots: 1 }]);
  const s = EgoSession.open({
    library,
    confDir: conf.path,
    user: EGO_USER,
    password: EGO_PASSWORD,
    client: "test",
  });
  try {
    await fn(s, conf.path);
  } finally {
    s.close();
  }
}

function drain(s: EgoSession, timeoutMs: number) {
  const events = [];
  for (let e = s.poll(timeoutMs); e; e = s.poll(timeoutMs)) events.push(e);
  return events;
}

Deno.test("libegosf (stand-in EGO): slots arrive asynchronously, partial, one host per event", async () => {
  await withSession((s) => {
    const id = s.request(EGO_CONSUMER, EGO_RESOURCE_GROUP, 10);
    assert.match(id, /^alloc-\d+$/);
    assert.equal(s.poll(0), undefined, "nothing before the stand-in's delay");
    assert.deepEqual(drain(s, 200), [
      { kind: "add", allocId: id, host: "h1", slots: 2 },
      { kind: "add", allocId: id, host: "h2", slots: 1 },
    ]);
    s.release(id);
    return Promise.resolve();
  });
});

Deno.test("libegosf (stand-in EGO): a reclaimed host comes as a reclaim event", async () => {
  await withSession(async (s, confDir) => {
    const id = s.request(EGO_CONSUMER, EGO_RESOURCE_GROUP, 2);
    assert.equal(drain(s, 200).length, 1);
    await standinReclaim(confDir, "h1");
    assert.deepEqual(s.poll(200), { kind: "reclaim", allocId: id, host: "h1", slots: 2 });
    s.releaseHost(id, "h1");
    s.release(id);
  });
});

Deno.test("libegosf (stand-in EGO): errors carry EGO's egoerrno and text", async () => {
  const library = await buildStandinLibegosf();
  await using conf = await tempDir("sf-egosf");
  await writeStandinConf(conf.path, [{ name: "h1", slots: 1 }]);
  const open = (confDir: string, password: string) =>
    EgoSession.open({ library, confDir, user: EGO_USER, password, client: "t" });
  assert.throws(
    () => open(conf.path, "wrong"),
    /Cannot log on to EGO: Authentication failed.*\(egoerrno 4\)/,
  );
  assert.throws(
    () => open(`${conf.path}/missing`, EGO_PASSWORD),
    /Cannot open EGO session: Cannot connect to the EGO master \(egoerrno 3\)/,
  );
  assert.throws(
    () =>
      EgoSession.open({
        library: "/nonexistent.so",
        confDir: "",
        user: "",
        password: "",
        client: "",
      }),
    /Cannot load libegosf/,
  );
  const s = open(conf.path, EGO_PASSWORD);
  try {
    assert.throws(
      () => s.request("/Nobody", EGO_RESOURCE_GROUP, 1),
      (e) => e instanceof EgoSfError && e.code === -7 && /Unknown consumer/.test(e.message),
    );
    assert.throws(
      () => s.release("alloc-999"),
      /Cannot release EGO allocation: Unknown allocation/,
    );
  } finally {
    s.close();
  }
});
