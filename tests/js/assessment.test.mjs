// The assessment form's pure rules (templates/static/room/assessment-rules.js).
import { test } from "node:test";
import assert from "node:assert/strict";

import {
  complete,
  formView,
  label,
  marksBody,
  missing,
  sameMarks,
} from "../../templates/static/room/assessment-rules.js";

const item = (code, fr, en) => ({ code, labels: { fr, en } });
const SCHEME = {
  levels: [item("below_A1", "Inférieur à A1", "Below A1"), item("B1", "B1", "B1"), item("B2", "B2", "B2")],
  criteria: [item("range", "Étendue", "Range"), item("fluency", "Aisance", "Fluency")],
};

test("labels come in the page's language, then English, then the code", () => {
  assert.equal(label(SCHEME.levels[0], "fr"), "Inférieur à A1");
  assert.equal(label(SCHEME.levels[0], "en"), "Below A1");
  assert.equal(label({ code: "x", labels: { en: "Ex" } }, "fr"), "Ex");
  assert.equal(label({ code: "x" }, "fr"), "x");
});

test("the server's answer decides the form: none, edit or read-only", () => {
  const none = formView({ state: "none", reason: "no_show", scheme: SCHEME, assessment: null });
  assert.deepEqual(none, { mode: "none", reason: "no_show", marks: null, submittedAt: null });

  const fresh = formView({ state: "none", reason: null, scheme: SCHEME, assessment: null });
  assert.equal(fresh.mode, "edit");
  assert.deepEqual(fresh.marks, { levels: {}, overall_level: "", comment: "" });

  const saved = { levels: { range: "B1" }, overall_level: null, comment: "ok", submitted_at: null };
  assert.deepEqual(formView({ state: "draft", reason: null, scheme: SCHEME, assessment: saved }).marks, {
    levels: { range: "B1" },
    overall_level: "",
    comment: "ok",
  });

  const done = { ...saved, overall_level: "B1", submitted_at: "2026-12-01T08:30:00Z" };
  const view = formView({ state: "submitted", reason: null, scheme: SCHEME, assessment: done });
  assert.equal(view.mode, "submitted");
  assert.equal(view.submittedAt, "2026-12-01T08:30:00Z");
});

test("the body sends chosen levels of the scheme's criteria only", () => {
  const body = marksBody(SCHEME, { range: "B2", fluency: "", grammar: "C1" }, "", "Bien.");
  assert.deepEqual(body, { levels: { range: "B2" }, overall_level: null, comment: "Bien." });
});

test("submitting waits for every criterion and the overall level", () => {
  const partial = marksBody(SCHEME, { range: "B2" }, "", "");
  assert.deepEqual(missing(SCHEME, partial), { criteria: ["fluency"], overall: true });
  assert.equal(complete(SCHEME, partial), false);
  const full = marksBody(SCHEME, { range: "B2", fluency: "B1" }, "B2", "");
  assert.deepEqual(missing(SCHEME, full), { criteria: [], overall: false });
  assert.equal(complete(SCHEME, full), true);
});

test("the same marks in another order, or empty versus null, need no save", () => {
  const a = { levels: { range: "B1", fluency: "B2" }, overall_level: "", comment: "" };
  const b = { levels: { fluency: "B2", range: "B1" }, overall_level: null, comment: "" };
  assert.equal(sameMarks(a, b), true);
  assert.equal(sameMarks(a, { ...b, comment: "x" }), false);
  assert.equal(sameMarks(a, null), false);
});
