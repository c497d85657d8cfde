// The call's state machine (templates/static/room/call-state.js): the transitions the room
// protocol allows are taken, every other one is refused and logged.
import { test } from "node:test";
import assert from "node:assert/strict";

import { STATES, TRANSITIONS, callMachine } from "../../templates/static/room/call-state.js";

function machine(initial) {
  const changes = [];
  const refused = [];
  const m = callMachine({
    initial,
    onChange: (from, to, why) => changes.push([from, to, why]),
    log: (text) => refused.push(text),
  });
  return { m, changes, refused };
}

test("a call from join to the end of the interview", () => {
  const { m, changes, refused } = machine();
  for (const to of ["joining", "connecting", "greeted", "over"]) {
    assert.equal(m.go(to), true, to);
  }
  assert.deepEqual(
    changes.map(([from, to]) => from + ">" + to),
    ["idle>joining", "joining>connecting", "connecting>greeted", "greeted>over"]
  );
  assert.deepEqual(refused, []);
});

test("a dropped connection retries, and a too early one waits, then both connect", () => {
  const { m } = machine("greeted");
  assert.ok(m.go("retrying"));
  assert.ok(m.go("connecting"));
  assert.ok(m.go("waiting"));
  assert.ok(m.go("connecting"));
  assert.ok(m.go("greeted"));
});

test("a room held elsewhere is followed from connecting and from greeted", () => {
  for (const from of ["connecting", "greeted"]) {
    const { m } = machine(from);
    assert.ok(m.go("connecting", "elsewhere"), from);
  }
});

test("a second reconnection is refused while one is scheduled", () => {
  const { m, changes, refused } = machine("retrying");
  assert.equal(m.go("retrying", "stale timer"), false);
  assert.equal(m.state, "retrying");
  assert.deepEqual(changes, []);
  assert.deepEqual(refused, ["call: retrying → retrying refused (stale timer)"]);
});

test("a call that is over stays over until the participant joins again", () => {
  for (const to of ["connecting", "greeted", "retrying", "waiting", "reloading", "over"]) {
    const { m, refused } = machine("over");
    assert.equal(m.go(to), false, to);
    assert.equal(refused.length, 1);
  }
  const { m } = machine("over");
  assert.ok(m.go("joining"));
});

test("a reload is the end: nothing follows it", () => {
  for (const to of STATES) {
    assert.equal(machine("reloading").m.go(to), false, to);
  }
});

test("a hello before connecting, or a join while in the call, is refused", () => {
  assert.equal(machine("idle").m.go("greeted"), false);
  for (const from of ["joining", "connecting", "greeted", "waiting", "retrying"]) {
    assert.equal(machine(from).m.go("joining"), false, from);
  }
  // Too early is a refusal before the hello: never after it.
  assert.equal(machine("greeted").m.go("waiting"), false);
});

test("active and stopped name the states a join or a reconnection looks at", () => {
  const active = STATES.filter((s) => machine(s).m.active());
  const stopped = STATES.filter((s) => machine(s).m.stopped());
  assert.deepEqual(active.sort(), ["connecting", "greeted", "retrying", "waiting"]);
  assert.deepEqual(stopped.sort(), ["idle", "over", "reloading"]);
  assert.ok(machine("waiting").m.is("retrying", "waiting"));
});

test("every transition leads to a known state, and every state can be left but a reload", () => {
  for (const [from, targets] of Object.entries(TRANSITIONS)) {
    for (const to of targets) {
      assert.ok(STATES.includes(to), from + " → " + to);
    }
    assert.equal(targets.length === 0, from === "reloading", from);
  }
  assert.ok(Object.isFrozen(TRANSITIONS));
});

test("an unknown state is a mistake of ours, not a transition", () => {
  assert.throws(() => callMachine({ initial: "limbo" }), /unknown call state/);
  const { m, refused } = machine();
  assert.equal(m.go("limbo"), false);
  assert.equal(refused.length, 1);
});
