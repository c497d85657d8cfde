// Busy buttons (ui.js): aria-disabled instead of disabled, so the keyboard's focus stays on
// them, and their clicks do nothing while they are busy.
import { test } from "node:test";
import assert from "node:assert/strict";

import { isBusy, setBusy, whenEnabled } from "../../templates/static/room/ui.js";

function button() {
  const attributes = new Map();
  return {
    setAttribute: (name, value) => attributes.set(name, String(value)),
    getAttribute: (name) => (attributes.has(name) ? attributes.get(name) : null),
    removeAttribute: (name) => attributes.delete(name),
    attributes,
  };
}

function click() {
  return { prevented: false, preventDefault() { this.prevented = true; } };
}

test("a busy button is aria-disabled, never disabled, and clicks on it do nothing", () => {
  const b = button();
  let clicks = 0;
  const handler = whenEnabled(b, () => (clicks += 1));
  handler(click());
  assert.equal(clicks, 1);
  setBusy(b, true);
  assert.equal(b.getAttribute("aria-disabled"), "true");
  assert.equal(isBusy(b), true);
  assert.ok(!b.attributes.has("disabled"));
  const ignored = click();
  handler(ignored);
  assert.equal(clicks, 1);
  assert.equal(ignored.prevented, true);
  setBusy(b, false);
  assert.equal(b.getAttribute("aria-disabled"), null);
  handler(click());
  assert.equal(clicks, 2);
});

test("a missing button is never busy, and setting it busy is harmless", () => {
  assert.equal(isBusy(null), false);
  setBusy(null, true);
});
