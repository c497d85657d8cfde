// The device check's pure parts (media.js, audio.js): why a device failed, the saved choice,
// and the microphone meter's scale.
import { test } from "node:test";
import assert from "node:assert/strict";

import { explain, savedChoice } from "../../templates/static/room/media.js";
import { meterLevel } from "../../templates/static/room/audio.js";

const t = (key, vars) => (vars ? key + JSON.stringify(vars) : key);
const error = (name) => Object.assign(new Error("x"), { name });

test("each getUserMedia failure is explained by what the participant can do", () => {
  assert.equal(explain(t, "camera", error("NotAllowedError")), "camera_blocked");
  assert.equal(explain(t, "mic", error("SecurityError")), "mic_blocked");
  assert.equal(explain(t, "camera", error("NotReadableError")), "camera_busy");
  assert.equal(explain(t, "mic", error("OverconstrainedError")), "mic_missing");
  assert.equal(explain(t, "camera", error("TypeError")), 'camera_failed{"error":"TypeError"}');
  assert.equal(explain(t, "mic", "odd"), 'mic_failed{"error":"odd"}');
});

test("a saved device choice is read back; a damaged one gives the defaults", () => {
  assert.deepEqual(savedChoice('{"camera":"c1","mic":"m1","speaker":"s1"}'), {
    camera: "c1",
    mic: "m1",
    speaker: "s1",
  });
  assert.deepEqual(savedChoice('{"camera":42,"mic":"m1"}'), { camera: "", mic: "m1", speaker: "" });
  assert.deepEqual(savedChoice("{not json"), { camera: "", mic: "", speaker: "" });
  assert.deepEqual(savedChoice(null), { camera: "", mic: "", speaker: "" });
});

test("the meter maps -60..0 dBFS onto 0..100 and falls back slowly", () => {
  assert.equal(meterLevel(new Float32Array(8), 0).level, 0);
  assert.equal(meterLevel(new Float32Array(8).fill(1), 0).level, 100);
  const quiet = meterLevel(new Float32Array(8).fill(0.001), 0); // -60 dBFS
  assert.ok(Math.abs(quiet.level) < 1e-3); // float32 samples: near enough
  const tenth = meterLevel(new Float32Array(8).fill(0.1), 0); // -20 dBFS
  assert.ok(Math.abs(tenth.level - 200 / 3) < 1e-3);
  // Silence after a loud sound: the bar falls by 15% a reading, not at once.
  assert.equal(meterLevel(new Float32Array(8), 80).shown, 68);
});
