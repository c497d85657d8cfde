// The evaluator's panel: letting the candidate in, the ID check, the interview's parts, the
// timer, private notes saved as they are typed, and the end with its outcome. Keyboard focus
// follows the interview: after "let in", to the ID check; after the end, to the outcome.

import { $, announce, setBusy, whenEnabled } from "./ui.js";
import { clockText } from "./format.js";
import { KNOWN_ERRORS } from "./protocol.js";

/**
 * `send(message)` says whether the message went out; `room()` is the last room state;
 * `formatTime(ms)` and `clock` show times as the server keeps them.
 */
export function createPanel({ data, t, send, room, formatTime, clock }) {
  const notes = { sent: null, timer: 0, dirty: false };
  let timerTick = 0;
  let overTime = false;
  // Where the focus goes once the server confirms what the evaluator asked for.
  let focusWhen = null;

  function init() {
    const admit = $("admit");
    admit.addEventListener(
      "click",
      whenEnabled(admit, () => {
        if (send({ type: "admit" })) {
          // Not disabled: a disabled button would drop the keyboard's focus on the page.
          setBusy(admit, true);
          focusWhen = "admitted";
        }
      })
    );
    $("id-checked").addEventListener("change", (event) => {
      const box = event.target;
      if (!send({ type: "id_checked", checked: box.checked })) {
        box.checked = !box.checked;
      }
    });
    $("steps")
      .querySelectorAll("button[data-step]")
      .forEach((button) => {
        button.addEventListener("click", () => {
          send({ type: "step", step: button.dataset.step });
        });
      });
    const text = $("notes");
    text.addEventListener("input", () => {
      notes.dirty = true;
      window.clearTimeout(notes.timer);
      notes.timer = window.setTimeout(flushNotes, 800);
    });
    text.addEventListener("blur", flushNotes);
    initEnd();
    timerTick = window.setInterval(updateTimer, 1000);
  }

  function initEnd() {
    const dialog = $("end-dialog");
    $("end").addEventListener("click", () => {
      if (dialog && typeof dialog.showModal === "function") {
        dialog.showModal();
        $("end-cancel").focus();
      } else if (window.confirm($("end-title").textContent)) {
        if (send({ type: "end", outcome: "completed" })) {
          focusWhen = "ended";
        }
      }
    });
    if (dialog) {
      dialog.addEventListener("close", () => {
        $("end").focus();
        if (dialog.returnValue === "end") {
          const chosen = dialog.querySelector("input[name=outcome]:checked");
          if (send({ type: "end", outcome: chosen ? chosen.value : "completed" })) {
            focusWhen = "ended";
          }
        }
        dialog.returnValue = "";
      });
    }
  }

  function receiveNotes(saved) {
    if (notes.dirty) {
      flushNotes(); // typed while disconnected: this text wins
    } else if (typeof saved === "string") {
      $("notes").value = saved;
      notes.sent = saved;
    }
  }

  function flushNotes() {
    const text = $("notes");
    window.clearTimeout(notes.timer);
    if (!text || !notes.dirty || text.value === notes.sent) {
      notes.dirty = false;
      return;
    }
    if (send({ type: "notes", text: text.value })) {
      notes.sent = text.value;
      notes.dirty = false;
      $("notes-status").textContent = t("notes_saving");
    } else {
      $("notes-status").textContent = t("notes_failed");
    }
  }

  /** Notes typed but not sent yet: a reload now would lose them. */
  function unsaved() {
    const text = $("notes");
    return Boolean(text) && text.value !== (notes.sent || "");
  }

  function onNotesSaved(message) {
    const at = Date.parse(message.at);
    $("notes-status").textContent = t("notes_saved", {
      time: formatTime(Number.isNaN(at) ? clock.now() : at),
    });
  }

  function panelError(text) {
    const node = $("panel-error");
    node.textContent = text;
    node.hidden = !text;
  }

  function update(state) {
    panelError("");
    const admitted = state.phase === "admitted";
    const ended = state.phase === "ended";
    const here = Boolean((state.present || {}).candidate);
    const admit = $("admit");
    $("admit-box").hidden = state.phase !== "lobby";
    admit.disabled = !(state.phase === "lobby" && here);
    setBusy(admit, false);
    $("admit-text").textContent = here
      ? t("lobby_evaluator_waiting", { name: data.other_name })
      : t("lobby_evaluator_alone");
    const box = $("id-checked");
    box.checked = Boolean(state.id_checked_at);
    box.disabled = !admitted || (Boolean(state.id_checked_at) && state.step !== "id_check");
    $("id-checked-at").textContent = state.id_checked_at
      ? t("id_checked_at", { time: formatTime(Date.parse(state.id_checked_at)) })
      : "";
    $("steps")
      .querySelectorAll("button[data-step]")
      .forEach((button) => {
        const step = button.dataset.step;
        button.disabled = !admitted || (step !== "id_check" && !state.id_checked_at);
      });
    markSteps($("steps"), admitted || ended ? state.step : null);
    $("end").hidden = ended;
    const outcome = $("panel-outcome");
    if (ended && state.outcome) {
      outcome.textContent = t("ended_outcome", { outcome: t("outcome_" + state.outcome) });
      outcome.hidden = false;
    } else {
      outcome.hidden = true;
    }
    updateTimer();
    moveFocus(state);
  }

  function moveFocus(state) {
    if (focusWhen === "admitted" && state.phase === "admitted") {
      const box = $("id-checked");
      (box && !box.disabled ? box : $("panel-title")).focus();
      focusWhen = null;
    } else if (focusWhen === "ended" && state.phase === "ended") {
      const outcome = $("panel-outcome");
      (outcome.hidden ? $("panel-title") : outcome).focus();
      focusWhen = null;
    }
  }

  function updateTimer() {
    const state = room();
    const node = $("timer");
    if (!node || !state) {
      return;
    }
    const started = Date.parse(state.interview_started_at || "");
    if (Number.isNaN(started)) {
      node.textContent = clockText(0);
      return;
    }
    const stop = state.ended_at ? Date.parse(state.ended_at) : clock.now();
    const seconds = Math.max(0, (stop - started) / 1000);
    node.textContent = clockText(seconds);
    const target = ((data.interview || {}).target_minutes || 20) * 60;
    const over = seconds >= target;
    $("timer-box").dataset.over = String(over);
    $("timer-note").textContent = over ? t("over_time") : "";
    if (over && !overTime && !state.ended_at) {
      announce(t("over_time"));
    }
    overTime = over;
  }

  function stopTimer() {
    window.clearInterval(timerTick);
  }

  function onNotice(message) {
    if (message.code !== "no_show") {
      return; // a newer server's notice: ignored
    }
    const text = t("no_show_evaluator", {
      name: data.other_name,
      time: formatTime(Date.parse(data.closes_at)),
    });
    const node = $("panel-notice");
    node.textContent = text;
    node.hidden = false;
    announce(text);
  }

  /** An error about one of the panel's requests: nothing changed, and the panel says why. */
  function onError(message) {
    const code = message.code;
    if (message.about === "notes") {
      $("notes-status").textContent = t("notes_failed");
      notes.dirty = true;
      notes.timer = window.setTimeout(flushNotes, 3000);
      return;
    }
    focusWhen = null;
    if (room()) {
      update(room()); // undo what the click showed: nothing changed
    }
    panelError(KNOWN_ERRORS.includes(code) ? t("err_" + code) : t("err_other", { message: message.message }));
  }

  return { init, update, receiveNotes, flushNotes, unsaved, onNotesSaved, onNotice, onError, stopTimer };
}

/** Marks the current part of the interview in a list of steps (the panel's or the guide's). */
export function markSteps(list, current) {
  if (!list) {
    return;
  }
  list.querySelectorAll("li[data-step]").forEach((node) => {
    node.classList.toggle("rm-step--current", node.dataset.step === current);
    const target = node.querySelector("button") || node;
    if (node.dataset.step === current) {
      target.setAttribute("aria-current", "step");
    } else {
      target.removeAttribute("aria-current");
    }
  });
}
