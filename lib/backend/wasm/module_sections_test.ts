import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { GuestError } from "./errors.ts";
import {
  appendCustomSection,
  IMAGE_SECTION,
  SETTINGS_SECTION,
  splitModuleSections,
} from "./module_sections.ts";

// (module (memory 1)): magic, version, a memory section.
const EMPTY = new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 5, 3, 1, 0, 1]);
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const json = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));

Deno.test("splitModuleSections() takes settings and image out and keeps the rest", () => {
  const image = new Uint8Array(1000).fill(7);
  const settings = { asyncifyPages: 2, image: { guestPath: "/usr/lib/x", sha256: sha(image) } };
  const other = appendCustomSection(EMPTY, "name", new Uint8Array([0]));
  const bytes = appendCustomSection(
    appendCustomSection(other, SETTINGS_SECTION, json(settings)),
    IMAGE_SECTION,
    image,
  );
  const split = splitModuleSections(bytes);
  assert.deepEqual(split.settings, settings);
  assert.deepEqual(split.image, image);
  assert.deepEqual(split.module, other);
  assert.ok(WebAssembly.validate(split.module.slice()));
  assert.deepEqual(splitModuleSections(EMPTY), { module: EMPTY, settings: null, image: null });
});

Deno.test("splitModuleSections() rejects a wrong image hash and bad settings", () => {
  const image = new Uint8Array([1, 2, 3]);
  const wrong = { image: { guestPath: "/x", sha256: "0".repeat(64) } };
  const bytes = appendCustomSection(
    appendCustomSection(EMPTY, SETTINGS_SECTION, json(wrong)),
    IMAGE_SECTION,
    image,
  );
  assert.throws(() => splitModuleSections(bytes), GuestError);
  for (
    const bad of [{ asyncifyPages: 0 }, { image: { guestPath: "/../etc", sha256: sha(image) } }]
  ) {
    assert.throws(
      () => splitModuleSections(appendCustomSection(EMPTY, SETTINGS_SECTION, json(bad))),
      /invalid settings/,
    );
  }
});
