// What the room protocol's close codes, refusals and states mean for the page
// (templates/static/room/protocol.js against docs/rooms.md, "Close codes" and "Refusals").
import { test } from "node:test";
import assert from "node:assert/strict";

import {
  KNOWN_ERRORS,
  MAX_HOPS,
  closeAction,
  isStale,
  reconnectDelay,
  roomMessage,
} from "../../templates/static/room/protocol.js";

// The key itself, with its variables: what was said, without a language.
const t = (key, vars) => (vars ? key + JSON.stringify(vars) : key);
const candidate = { isEvaluator: false, hops: 0, opensAt: "2026-12-01T07:45:00Z" };
const evaluator = { ...candidate, isEvaluator: true };

function kind(code, refusal = null, who = candidate) {
  const action = closeAction(t, code, refusal, who);
  return action.kind === "over" ? "over:" + action.text : action.kind;
}

test("each close code of docs/rooms.md gets what the table says", () => {
  const table = {
    1000: "over:left",
    1001: "retry",
    1006: "retry",
    1008: "over:policy",
    1009: "over:policy",
    1011: "retry",
    4000: "over:ended_candidate",
    4001: "over:cancelled cancelled_hint",
    4002: "moved",
    4307: "hop",
    4403: "over:not_found",
    4404: "over:not_found",
    4409: "over:replaced",
    4410: "over:room_closed",
    4425: "too_early",
    4451: "over:consent_required",
  };
  for (const [code, expected] of Object.entries(table)) {
    assert.equal(kind(Number(code)), expected, code);
  }
});

test("a refusal before the close decides as its code does", () => {
  const table = {
    elsewhere: "hop",
    replaced: "over:replaced",
    missed: "over:missed",
    cancelled: "over:cancelled cancelled_hint",
    moved: "moved",
    not_found: "over:not_found",
    revoked: "over:not_found",
    too_late: "over:room_closed",
    too_early: "too_early",
    consent_required: "over:consent_required",
  };
  for (const [code, expected] of Object.entries(table)) {
    assert.equal(kind(1006, { code }), expected, code);
  }
});

test("the end is final for the candidate; the evaluator stays to finish the notes", () => {
  assert.equal(kind(1006, { code: "ended" }), "over:ended_candidate");
  assert.equal(kind(1006, { code: "ended" }, evaluator), "retry");
});

test("what the participant can do after the call stops", () => {
  const replaced = closeAction(t, 4409, null, candidate);
  assert.deepEqual([replaced.action, replaced.label, replaced.release], ["join", "use_here", true]);
  const left = closeAction(t, 1000, null, candidate);
  assert.deepEqual([left.action, left.label], ["join", "rejoin"]);
  // After protocol errors the devices stay on: a reload is offered, not a new check.
  const policy = closeAction(t, 1008, null, candidate);
  assert.deepEqual([policy.action, policy.release], ["reload", false]);
  assert.equal(closeAction(t, 4001, null, candidate).cancelled, true);
  assert.equal(closeAction(t, 4404, null, candidate).action, null);
});

test("a room held elsewhere is followed a few times, then the page backs off", () => {
  const action = closeAction(t, 4307, { code: "elsewhere", url: "wss://b.example/r/x/ws" }, candidate);
  assert.deepEqual(action, { kind: "hop", url: "wss://b.example/r/x/ws" });
  // No address: the lease was lost; back to the page's own address.
  assert.deepEqual(closeAction(t, 4307, null, candidate), { kind: "hop", url: null });
  assert.equal(kind(4307, null, { ...candidate, hops: MAX_HOPS }), "retry");
});

test("too early waits for the refusal's opens_at, else the page's", () => {
  const refused = closeAction(
    t,
    4425,
    { code: "too_early", opens_at: "2026-12-01T07:50:00Z", now: "2026-12-01T07:40:00Z" },
    candidate
  );
  assert.equal(refused.opensAt, Date.parse("2026-12-01T07:50:00Z"));
  assert.equal(refused.now, "2026-12-01T07:40:00Z");
  const bare = closeAction(t, 4425, null, candidate);
  assert.equal(bare.opensAt, Date.parse(candidate.opensAt));
  assert.equal(bare.now, null);
});

test("reconnections back off 1, 2, 4, 8, then 15 s", () => {
  assert.deepEqual([0, 1, 2, 3, 4, 5, 50].map(reconnectDelay), [1, 2, 4, 8, 15, 15, 15]);
});

test("a state overtaken by a newer one is stale; one without a version never is", () => {
  assert.equal(isStale({ version: 3 }, 4), true);
  assert.equal(isStale({ version: 4 }, 4), false);
  assert.equal(isStale({ version: 5 }, 4), false);
  assert.equal(isStale({}, 4), false);
});

const who = (isEvaluator, hasMedia = true) => ({
  isEvaluator,
  name: "Ada",
  hasMedia,
  closesAt: () => "09:00",
});

test("the call's message says who is here and what comes next", () => {
  const lobby = (present) => ({ phase: "lobby", present });
  assert.equal(roomMessage(t, lobby({}), who(false)), "lobby_candidate_alone");
  assert.equal(roomMessage(t, lobby({ evaluator: true }), who(false)), "lobby_candidate");
  assert.equal(roomMessage(t, lobby({}), who(true)), "lobby_evaluator_alone");
  assert.equal(
    roomMessage(t, lobby({ candidate: true }), who(true)),
    'lobby_evaluator_waiting{"name":"Ada"}'
  );
  const admitted = { phase: "admitted", present: { candidate: true, evaluator: true } };
  assert.equal(roomMessage(t, { ...admitted, step: "id_check" }, who(false)), "admitted_candidate show_id");
  assert.equal(
    roomMessage(t, { ...admitted, step: "id_check", id_checked_at: "x" }, who(false)),
    "admitted_candidate"
  );
  assert.equal(roomMessage(t, admitted, who(true)), 'admitted_evaluator{"name":"Ada"}');
  const gone = { phase: "admitted", present: {} };
  assert.equal(roomMessage(t, gone, who(false)), "other_gone_candidate");
  assert.equal(roomMessage(t, gone, who(true)), 'other_gone_evaluator{"name":"Ada"}');
  assert.equal(roomMessage(t, { phase: "ended" }, who(true)), 'ended_evaluator{"time":"09:00"}');
  assert.equal(roomMessage(t, { phase: "ended" }, who(false)), "ended_candidate");
});

test("without camera or microphone the message says so, until the end", () => {
  assert.equal(roomMessage(t, { phase: "lobby" }, who(false, false)), "lobby_candidate_alone no_media");
  assert.equal(roomMessage(t, { phase: "ended" }, who(false, false)), "ended_candidate");
  // The closing time is formatted only when it is shown.
  let asked = 0;
  roomMessage(t, { phase: "lobby" }, { ...who(true), closesAt: () => (asked += 1) });
  assert.equal(asked, 0);
});

test("the panel explains exactly the errors docs/rooms.md says do not count (the evaluator's own)", () => {
  assert.deepEqual([...KNOWN_ERRORS].sort(), [
    "candidate_absent",
    "ended",
    "id_not_checked",
    "internal",
    "interview_started",
    "not_admitted",
  ]);
});
