// The assessment form's pure rules (templates/static/room/assessment-rules.js).
import { test } from "node:test";
import assert from "node:assert/strict";

import {
  complete,
  formView,
  label,
  marksBody,
  missing,
  reconcile,
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

const draft = (levels, overall_level = null, comment = "") => ({
  state: "draft",
  reason: null,
  scheme: SCHEME,
  assessment: { levels, overall_level, comment, submitted_at: null },
});
const editing = (drawn, local) => ({ mode: "edit", scheme: SCHEME, drawn, local });
const EMPTY = { levels: {}, overall_level: "", comment: "" };

test("the first answer is drawn as the server has it, with nothing to save", () => {
  const loading = { mode: "loading", scheme: null, drawn: null, local: null };
  const result = reconcile(draft({ range: "B1" }, "B1", "ok"), loading);
  assert.equal(result.view.mode, "edit");
  assert.deepEqual(result.marks, { levels: { range: "B1" }, overall_level: "B1", comment: "ok" });
  assert.equal(result.save, false);
});

test("a load answering after the evaluator chose a level keeps that choice, and saves it", () => {
  // The form was drawn empty; the evaluator chose range B2; the answer (sent before) is empty.
  const local = marksBody(SCHEME, { range: "B2" }, "", "");
  const result = reconcile(draft({}), editing(EMPTY, local));
  assert.deepEqual(result.marks.levels, { range: "B2" });
  assert.equal(result.save, true);
});

test("an answer older than the evaluator's last save does not bring back the older marks", () => {
  // Drawn with range B1; the evaluator chose B2 and it was saved; a load sent before that save
  // answers B1.
  const drawn = { levels: { range: "B1" }, overall_level: "", comment: "" };
  const local = marksBody(SCHEME, { range: "B2", fluency: "B1" }, "B2", "Bien.");
  const result = reconcile(draft({ range: "B1" }), editing(drawn, local));
  assert.deepEqual(result.marks, {
    levels: { range: "B2", fluency: "B1" },
    overall_level: "B2",
    comment: "Bien.",
  });
  assert.equal(result.save, true);
});

test("a level the evaluator cleared stays cleared", () => {
  const drawn = { levels: { range: "B1" }, overall_level: "B1", comment: "x" };
  const local = marksBody(SCHEME, { range: "" }, "", "");
  const result = reconcile(draft({ range: "B1" }, "B1", "x"), editing(drawn, local));
  assert.deepEqual(result.marks, { levels: {}, overall_level: "", comment: "" });
  assert.equal(result.save, true);
});

test("fields the evaluator left alone take the server's marks (saved from another tab)", () => {
  const drawn = { levels: { range: "B1" }, overall_level: "", comment: "" };
  const local = marksBody(SCHEME, { range: "B1", fluency: "B2" }, "", "");
  const result = reconcile(draft({ range: "B2" }, "B1", "autre onglet"), editing(drawn, local));
  assert.deepEqual(result.marks, {
    levels: { range: "B2", fluency: "B2" },
    overall_level: "B1",
    comment: "autre onglet",
  });
  assert.equal(result.save, true);
  const same = reconcile(draft({ range: "B2" }), editing(drawn, marksBody(SCHEME, { range: "B1" }, "", "")));
  assert.deepEqual(same.marks.levels, { range: "B2" });
  assert.equal(same.save, false);
});

test("a submitted or absent assessment, or another scheme, replaces the form whole", () => {
  const local = marksBody(SCHEME, { range: "B2" }, "B2", "mine");
  const submitted = {
    state: "submitted",
    reason: null,
    scheme: SCHEME,
    assessment: {
      levels: { range: "B1" },
      overall_level: "B1",
      comment: "",
      submitted_at: "2026-12-01T08:30:00Z",
    },
  };
  const done = reconcile(submitted, editing(EMPTY, local));
  assert.equal(done.view.mode, "submitted");
  assert.deepEqual(done.marks.levels, { range: "B1" });
  assert.equal(done.save, false);

  const absent = { state: "none", reason: "no_show", scheme: SCHEME, assessment: null };
  const none = reconcile(absent, editing(EMPTY, local));
  assert.equal(none.view.mode, "none");
  assert.equal(none.save, false);

  const other = { ...draft({}), scheme: { ...SCHEME, criteria: [SCHEME.criteria[1]] } };
  const changed = reconcile(other, editing(EMPTY, local));
  assert.deepEqual(changed.marks, EMPTY);
  assert.equal(changed.save, false);
});
