// The assessment form's rules, pure (unit-tested by tests/js/assessment.test.mjs): what the
// server's answer means for the form, what the form sends, and what is still missing before
// it can be submitted. The server checks all of it again (scheduler/scheme.py); these rules
// only spare the evaluator a refusal.

/** A scheme item's label in the page's language (the code when it has none). */
export function label(item, locale) {
  const labels = item.labels || {};
  return labels[locale] || labels.en || item.code;
}

/**
 * What the form shows for the server's answer (`GET /r/{token}/assessment`):
 * `mode` is "none" (no assessment: `reason` says why), "edit" or "submitted" (read-only).
 */
export function formView(answer) {
  if (answer.reason) {
    return { mode: "none", reason: answer.reason, marks: null, submittedAt: null };
  }
  const saved = answer.assessment || {};
  const marks = {
    levels: { ...(saved.levels || {}) },
    overall_level: saved.overall_level || "",
    comment: saved.comment || "",
  };
  if (answer.state === "submitted") {
    return { mode: "submitted", reason: null, marks, submittedAt: saved.submitted_at || null };
  }
  return { mode: "edit", reason: null, marks, submittedAt: null };
}

/**
 * The body to send from the form's values: `levels` maps each criterion to its chosen level
 * ("" when none is chosen yet), only for the criteria of the scheme.
 */
export function marksBody(scheme, levels, overall, comment) {
  const body = { levels: {}, overall_level: overall || null, comment: comment || "" };
  for (const criterion of scheme.criteria) {
    const chosen = levels[criterion.code];
    if (chosen) {
      body.levels[criterion.code] = chosen;
    }
  }
  return body;
}

/** The criteria without a level, and whether the overall level is missing: submit waits. */
export function missing(scheme, body) {
  return {
    criteria: scheme.criteria
      .map((criterion) => criterion.code)
      .filter((code) => !body.levels[code]),
    overall: !body.overall_level,
  };
}

export function complete(scheme, body) {
  const gaps = missing(scheme, body);
  return gaps.criteria.length === 0 && !gaps.overall;
}

/** Same marks: nothing to save. */
export function sameMarks(a, b) {
  return JSON.stringify(normalise(a)) === JSON.stringify(normalise(b));
}

function normalise(body) {
  if (!body) {
    return null;
  }
  const levels = Object.keys(body.levels || {})
    .sort()
    .map((code) => [code, body.levels[code]]);
  return [levels, body.overall_level || null, body.comment || ""];
}

/**
 * What the form draws when the server answers (`GET` or submit), given what it holds: an
 * answer may have left before the evaluator's last choices, or before their save reached the
 * server, so redrawing it as is would wipe them. `form` is the form now: `mode` ("loading"
 * before the first answer), `scheme`, `drawn` (the marks of the answer it was last drawn
 * from) and `local` (its values, as `marksBody` makes them). In edit mode with the same
 * scheme, a field the evaluator changed since `drawn` keeps their value; any other field
 * takes the server's (another tab may have saved it). `save` says the drawn marks differ from
 * the server's, so the form must send them. A submitted or absent assessment is the server's
 * to decide: it replaces the form whole.
 */
export function reconcile(answer, form) {
  const view = formView(answer);
  const editing =
    view.mode === "edit" &&
    form.mode === "edit" &&
    Boolean(form.local) &&
    JSON.stringify(form.scheme) === JSON.stringify(answer.scheme);
  if (!editing) {
    return { view, marks: view.marks, save: false };
  }
  const drawn = form.drawn || { levels: {}, overall_level: "", comment: "" };
  const local = form.local;
  const pick = (mine, before, theirs) => ((mine || "") !== (before || "") ? mine || "" : theirs || "");
  const levels = {};
  for (const criterion of answer.scheme.criteria) {
    const code = criterion.code;
    const chosen = pick((local.levels || {})[code], (drawn.levels || {})[code], view.marks.levels[code]);
    if (chosen) {
      levels[code] = chosen;
    }
  }
  const marks = {
    levels,
    overall_level: pick(local.overall_level, drawn.overall_level, view.marks.overall_level),
    comment: pick(local.comment, drawn.comment, view.marks.comment),
  };
  return { view, marks, save: !sameMarks(marks, view.marks) };
}
