// The device check's connection test (echo.js): what getStats() says went up and came back,
// the verdict shown, and the one sentence announced for it.
import { test } from "node:test";
import assert from "node:assert/strict";

import { emptyOutcome, readStats, summary, verdict } from "../../templates/static/room/echo.js";

const t = (key, vars) => (vars ? key + JSON.stringify(vars) : key);

test("media that came back went up too; the round trip comes from the server's report", () => {
  const outcome = readStats(
    [
      { type: "outbound-rtp", packetsSent: 40 },
      { type: "remote-inbound-rtp", roundTripTime: 0.042 },
      { type: "inbound-rtp", kind: "video", framesDecoded: 12 },
      { type: "candidate-pair", nominated: true, currentRoundTripTime: 0.5 },
    ],
    emptyOutcome()
  );
  assert.deepEqual([outcome.up, outcome.down, outcome.rtt], [true, true, 0.042]);
});

test("sent but never reported: up only once the server says it received something", () => {
  const sentOnly = [{ type: "outbound-rtp", packetsSent: 40 }];
  assert.equal(readStats(sentOnly, emptyOutcome()).up, false);
  const outcome = emptyOutcome();
  outcome.serverReceived = 7; // from the server's echo_stats
  assert.equal(readStats(sentOnly, outcome).up, true);
  assert.equal(outcome.down, false);
});

test("sound alone coming back counts; the candidate pair's round trip is the fallback", () => {
  const outcome = readStats(
    [
      { type: "inbound-rtp", kind: "audio", packetsReceived: 3 },
      { type: "candidate-pair", nominated: false, currentRoundTripTime: 0.9 },
      { type: "candidate-pair", nominated: true, currentRoundTripTime: 0.08 },
    ],
    emptyOutcome()
  );
  assert.deepEqual([outcome.up, outcome.down, outcome.rtt], [true, true, 0.08]);
  assert.equal(readStats(new Map(), emptyOutcome()).up, false); // getStats() is a Map
});

test("the verdict: working, partly working, or not working, with its lines", () => {
  const measured = (up, down, rtt = null) => ({ ...emptyOutcome(), unavailable: false, up, down, rtt });
  const ok = verdict(t, measured(true, true, 0.0426));
  assert.equal(ok.result, "ok");
  assert.equal(ok.text, "conn_ok");
  assert.deepEqual(
    ok.lines.map((line) => [line.text, line.ok]),
    [
      ['conn_up{"result":"yes"}', true],
      ['conn_down{"result":"yes"}', true],
      ['conn_rtt{"ms":43}', undefined],
    ]
  );
  assert.equal(verdict(t, measured(true, false)).result, "warn");
  assert.equal(verdict(t, measured(false, true)).text, "conn_partial");
  const failed = verdict(t, measured(false, false));
  assert.deepEqual([failed.result, failed.text, failed.lines.length], ["failed", "conn_failed", 2]);
});

test("a test that could not run says why, and a cancellation says nothing more", () => {
  const refused = (code) => verdict(t, { ...emptyOutcome(), refused: code });
  assert.deepEqual(refused("busy"), {
    result: "pending",
    text: "conn_untested",
    lines: [{ text: "conn_busy" }],
  });
  assert.equal(refused("revoked").lines[0].text, "not_found");
  assert.equal(refused(null).lines[0].text, "conn_unavailable");
  const cancelled = verdict(t, { ...emptyOutcome(), unavailable: false, cancelled: true });
  assert.deepEqual([cancelled.cancelled, cancelled.lines], [true, []]);
});

test("the result is announced as one sentence per line, each ending once", () => {
  const lines = [{ text: "Your picture reaches the server: yes" }, { text: "Round trip: 43 ms." }];
  assert.equal(
    summary(" Connection ", "working: it comes back", lines),
    "Connection: working: it comes back. Your picture reaches the server: yes. Round trip: 43 ms."
  );
  assert.equal(summary("Connexion", "ne fonctionne pas…", []), "Connexion: ne fonctionne pas…");
});
