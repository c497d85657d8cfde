// The evaluator's assessment form in the panel: a level per criterion, an overall level and a
// comment, saved as typed (like the notes, but over HTTP: /r/{token}/assessment, so it works
// whether or not the call is connected), then submitted once, after a confirmation; from then
// on it is read-only. An interview ended without an oral (no-show, interrupted, identity
// refused) has no assessment: the form gives way to a sentence saying why.
//
// Stable hooks for tests: #assessment[data-state] ("loading", "none", "edit", "submitted"),
// select[data-criterion="<code>"], #assessment-overall, #assessment-comment,
// #assessment-submit, #assessment-confirm (in #assessment-dialog), #assessment-submitted.

import { $, announce } from "./ui.js";
import { complete, label, marksBody, missing, reconcile, sameMarks } from "./assessment-rules.js";

const SELECT_DELAY_MS = 300;
const TYPING_DELAY_MS = 800;
const RETRY_MS = 3000;

export function createAssessment({ data, t, formatTime, clock }) {
  // `drawn`: the marks of the server's answer the form was last drawn from (what tells the
  // evaluator's changes from the server's); `loads`/`shown`: answers arriving out of order.
  const state = {
    started: false,
    scheme: null,
    mode: "loading",
    sent: null,
    drawn: null,
    loads: 0,
    shown: 0,
    timer: 0,
    busy: false,
  };

  function address(suffix = "") {
    return ((data.urls || {}).assessment || "") + suffix;
  }

  /** Wires the form once it is in the page (the call section may arrive later). */
  function init() {
    const section = $("assessment");
    if (state.started || !section || !address()) {
      return;
    }
    state.started = true;
    $("assessment-overall").addEventListener("change", () => later(SELECT_DELAY_MS));
    const comment = $("assessment-comment");
    comment.addEventListener("input", () => later(TYPING_DELAY_MS));
    comment.addEventListener("blur", flush);
    $("assessment-submit").addEventListener("click", askToSubmit);
    const dialog = $("assessment-dialog");
    if (dialog) {
      dialog.addEventListener("close", () => {
        if (dialog.returnValue === "submit") {
          submit();
        } else {
          $("assessment-submit").focus();
        }
        dialog.returnValue = "";
      });
    }
    // The interview's end shows its outcome in the panel: an outcome without an oral
    // leaves nothing to assess, which the server now says.
    const outcome = $("panel-outcome");
    if (outcome && typeof MutationObserver === "function") {
      let shown = "";
      new MutationObserver(() => {
        const text = outcome.hidden ? "" : outcome.textContent;
        if (text && text !== shown) {
          load();
        }
        shown = text;
      }).observe(outcome, { attributes: true, childList: true, characterData: true, subtree: true });
    }
    load();
  }

  async function request(method, suffix, body) {
    const options = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(address(suffix), options);
    const answer = await response.json().catch(() => null);
    return { status: response.status, answer };
  }

  /**
   * Asks the server for the assessment; after a refusal, its answer replaces the
   * form whole: saving the kept choices again would only be refused again, in a loop.
   */
  async function load({ afterRefusal = false } = {}) {
    if (!afterRefusal && unsaved()) {
      await flush(); // what was chosen goes first; the answer below then includes it
    }
    const load = ++state.loads;
    try {
      const { status, answer } = await request("GET", "");
      if (status === 200 && answer && load > state.shown) {
        state.shown = load;
        show(answer, { keep: !afterRefusal });
      }
    } catch {
      // Offline for a moment: the form keeps what it has; the next save tries again.
    }
  }

  function show(answer, { keep = true } = {}) {
    // Choices made while the answer travelled are kept over it, then saved.
    const { view, marks, save } = reconcile(answer, {
      mode: keep ? state.mode : "loading",
      scheme: state.scheme,
      drawn: state.drawn,
      local: state.mode === "edit" && state.scheme ? current() : null,
    });
    // Same scheme, still editing: the selects stay (with their focus), only their values move.
    const redraw =
      !keep ||
      view.mode !== "edit" ||
      state.mode !== "edit" ||
      JSON.stringify(state.scheme) !== JSON.stringify(answer.scheme);
    state.scheme = answer.scheme;
    state.mode = view.mode;
    $("assessment").dataset.state = view.mode;
    const none = $("assessment-none");
    if (view.mode === "none") {
      none.textContent = t("assessment_none_" + view.reason);
      none.hidden = false;
      window.clearTimeout(state.timer);
      return;
    }
    none.hidden = true;
    if (redraw) {
      build(answer.scheme, marks);
    } else {
      fill(marks);
    }
    state.drawn = view.marks;
    state.sent = view.marks;
    const readOnly = view.mode === "submitted";
    const form = $("assessment-form");
    form.querySelectorAll("select").forEach((select) => {
      select.disabled = readOnly;
    });
    $("assessment-comment").readOnly = readOnly;
    $("assessment-submit").hidden = readOnly;
    const done = $("assessment-submitted");
    if (readOnly) {
      window.clearTimeout(state.timer);
      const at = Date.parse(view.submittedAt || "");
      done.textContent = t("assessment_submitted", {
        time: formatTime(Number.isNaN(at) ? clock.now() : at),
      });
      done.hidden = false;
      $("assessment-status").textContent = "";
    } else {
      done.hidden = true;
      if (save) {
        later(SELECT_DELAY_MS); // the evaluator's choices kept over the answer: saved now
      }
    }
  }

  /** The selects, built from the scheme (its labels in the page's language). */
  function build(scheme, marks) {
    const box = $("assessment-criteria");
    const legend = box.querySelector("legend");
    box.replaceChildren(...(legend ? [legend] : []));
    for (const criterion of scheme.criteria) {
      const id = "assessment-level-" + criterion.code;
      const field = document.createElement("div");
      field.className = "rm-field";
      const name = document.createElement("label");
      name.htmlFor = id;
      name.textContent = label(criterion, data.locale);
      const select = levelSelect(scheme, marks.levels[criterion.code] || "");
      select.id = id;
      select.name = "level-" + criterion.code;
      select.dataset.criterion = criterion.code;
      select.addEventListener("change", () => later(SELECT_DELAY_MS));
      field.append(name, select);
      box.appendChild(field);
    }
    const overall = $("assessment-overall");
    overall.replaceChildren(...levelSelect(scheme, marks.overall_level).children);
    fill(marks);
  }

  /** The form's values, set only where they differ (so the caret stays where it is). */
  function fill(marks) {
    $("assessment-criteria")
      .querySelectorAll("select[data-criterion]")
      .forEach((select) => {
        const chosen = marks.levels[select.dataset.criterion] || "";
        if (select.value !== chosen) {
          select.value = chosen;
        }
      });
    const overall = $("assessment-overall");
    if (overall.value !== (marks.overall_level || "")) {
      overall.value = marks.overall_level || "";
    }
    const comment = $("assessment-comment");
    if (comment.value !== marks.comment) {
      comment.value = marks.comment;
    }
  }

  function levelSelect(scheme, chosen) {
    const select = document.createElement("select");
    const empty = new Option(t("assessment_choose"), "");
    select.appendChild(empty);
    for (const level of scheme.levels) {
      select.appendChild(new Option(label(level, data.locale), level.code));
    }
    select.value = chosen || "";
    return select;
  }

  function current() {
    const levels = {};
    $("assessment-criteria")
      .querySelectorAll("select[data-criterion]")
      .forEach((select) => {
        levels[select.dataset.criterion] = select.value;
      });
    return marksBody(state.scheme, levels, $("assessment-overall").value, $("assessment-comment").value);
  }

  function later(delay) {
    if (state.mode !== "edit") {
      return;
    }
    $("assessment-error").hidden = true;
    window.clearTimeout(state.timer);
    state.timer = window.setTimeout(flush, delay);
  }

  /** Saves the form if it changed since the last save; answers whether it is saved. */
  async function flush() {
    window.clearTimeout(state.timer);
    if (state.mode !== "edit" || !state.scheme) {
      return state.mode === "submitted";
    }
    const body = current();
    if (sameMarks(body, state.sent)) {
      return true;
    }
    $("assessment-status").textContent = t("notes_saving");
    try {
      const { status, answer } = await request("PUT", "", body);
      if (status === 200) {
        state.sent = body;
        $("assessment-status").textContent = t("notes_saved", { time: formatTime(clock.now()) });
        return true;
      }
      refused(status, answer);
    } catch {
      $("assessment-status").textContent = t("assessment_retry");
      state.timer = window.setTimeout(flush, RETRY_MS);
    }
    return false;
  }

  /** The server refused: say why; a conflict (submitted elsewhere, the outcome) reloads. */
  function refused(status, answer) {
    $("assessment-status").textContent = "";
    const error = $("assessment-error");
    error.textContent = t("assessment_failed", { message: (answer && answer.detail) || status });
    error.hidden = false;
    if (status === 409) {
      load({ afterRefusal: true });
    }
  }

  function askToSubmit() {
    if (state.mode !== "edit") {
      return;
    }
    const body = current();
    if (!complete(state.scheme, body)) {
      const gaps = missing(state.scheme, body);
      const names = gaps.criteria.map((code) =>
        label(state.scheme.criteria.find((c) => c.code === code), data.locale)
      );
      if (gaps.overall) {
        names.push(t("assessment_overall"));
      }
      const error = $("assessment-error");
      error.textContent = t("assessment_missing", { list: names.join(", ") });
      error.hidden = false;
      return;
    }
    const dialog = $("assessment-dialog");
    if (dialog && typeof dialog.showModal === "function") {
      dialog.showModal();
      $("assessment-cancel").focus();
    } else if (window.confirm($("assessment-dialog-title").textContent)) {
      submit();
    }
  }

  async function submit() {
    if (state.busy || state.mode !== "edit") {
      return;
    }
    state.busy = true;
    window.clearTimeout(state.timer);
    const button = $("assessment-submit");
    button.setAttribute("aria-disabled", "true");
    try {
      const { status, answer } = await request("POST", "/submit", current());
      if (status === 200 && answer) {
        show(answer);
        $("assessment-submitted").focus();
        announce($("assessment-submitted").textContent);
      } else {
        refused(status, answer);
      }
    } catch {
      refused(0, null);
    } finally {
      state.busy = false;
      button.removeAttribute("aria-disabled");
    }
  }

  /** Marks chosen but not saved yet: a reload now would lose them. */
  function unsaved() {
    return state.mode === "edit" && Boolean(state.scheme) && !sameMarks(current(), state.sent);
  }

  return { init, flush, unsaved, load };
}
