// The pure helpers the room page formats and translates with: i18n.js, format.js, clock.js.
import { test } from "node:test";
import assert from "node:assert/strict";

import { translator } from "../../templates/static/room/i18n.js";
import {
  clockText,
  countdownText,
  timeFormatter,
  unitFormatter,
} from "../../templates/static/room/format.js";
import { serverClock } from "../../templates/static/room/clock.js";

test("t fills placeholders, leaves unknown ones, and shows a missing key as itself", () => {
  const t = translator({ opens_in: "Opens in {time}", n: 3, both: "{a} and {a}, not {b}" });
  assert.equal(t("opens_in", { time: "5:00" }), "Opens in 5:00");
  assert.equal(t("opens_in"), "Opens in {time}");
  assert.equal(t("both", { a: 1 }), "1 and 1, not {b}");
  assert.equal(t("n"), "3");
  assert.equal(t("missing_key", { x: 1 }), "missing_key");
  // Only the strings' own keys: nothing inherited from Object.prototype.
  assert.equal(translator({ x: "{constructor}" })("x", {}), "{constructor}");
});

test("the clock shows minutes and seconds, and hours only when there are some", () => {
  assert.equal(clockText(0), "0:00");
  assert.equal(clockText(65.9), "1:05");
  assert.equal(clockText(3599), "59:59");
  assert.equal(clockText(3600), "1:00:00");
  assert.equal(clockText(3 * 3600 + 7 * 60 + 9), "3:07:09");
  assert.equal(clockText(-5), "0:00");
});

test("the countdown is in days and hours, then hours and minutes, then the clock", () => {
  const unit = (value, name) => value + name[0];
  const DAY = 86400000;
  const HOUR = 3600000;
  assert.equal(countdownText(2 * DAY + 3 * HOUR + 1, unit), "2d 3h");
  assert.equal(countdownText(5 * HOUR + 7 * 60000, unit), "5h 7m");
  assert.equal(countdownText(59 * 60000 + 1500, unit), "59:02"); // rounded up: never early
  assert.equal(countdownText(-1000, unit), "0:00");
});

test("units are spelled out in the page's language", () => {
  assert.equal(unitFormatter("en")(2, "hour"), "2 hours");
  assert.match(unitFormatter("fr")(1, "day"), /^1\sjour$/); // a no-break space, in French
  assert.equal(unitFormatter("en")(1, "fortnight"), "1 fortnight"); // no such unit: plain text
});

test("times are shown in the participant's zone, or the browser's when it is unknown", () => {
  const at = Date.parse("2026-12-01T08:05:00Z");
  // Leading zeros are the locale's (and ICU's) choice: the hour is what matters.
  assert.match(timeFormatter("fr", "Europe/Paris")(at), /^0?9:05$/);
  assert.match(timeFormatter("en-GB", "UTC")(at), /^0?8:05$/);
  assert.match(timeFormatter("en", "America/New_York")(at), /^3:05\sAM$/);
  const fallback = timeFormatter("en-GB", "Not/A_Zone")(at);
  assert.match(fallback, /^\d?\d:05$/);
});

test("the server's clock moves with the browser's elapsed time, not its wall clock", () => {
  let elapsed = 1000;
  const clock = serverClock("2026-12-01T08:00:00Z", () => elapsed);
  assert.equal(clock.now(), Date.parse("2026-12-01T08:00:00Z"));
  elapsed += 2500;
  assert.equal(clock.now(), Date.parse("2026-12-01T08:00:02.500Z"));
  clock.sync("2026-12-01T09:00:00Z");
  assert.equal(clock.now(), Date.parse("2026-12-01T09:00:00Z"));
  clock.sync("not a time"); // ignored: the last good one stands
  elapsed += 1000;
  assert.equal(clock.now(), Date.parse("2026-12-01T09:00:01Z"));
});
