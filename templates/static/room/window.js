// The room's window: the countdown before it opens, then the call without a reload. The
// server's clock decides: when the countdown ends the page asks for itself again and takes the
// parts that depend on the window; the device check keeps running meanwhile.

import { $, announce } from "./ui.js";
import { countdownText } from "./format.js";
import { recall, store } from "./storage.js";

// A page left open before the window has no WebSocket to hear of a move or a cancellation
// (docs/rooms.md): it asks the server again this often while it waits.
const WAITING_POLL_MS = 5 * 60 * 1000;

/** Set before the page reloads itself because the interview was moved (read once after). */
export function movedKey(data) {
  return "viva.room.moved:" + data.urls.page;
}

/**
 * `onCallArrived` wires a #call that came with a fresh copy of the page; `join` is the join
 * button's action.
 */
export function createWindow({ data, t, clock, unit, onCallArrived, join }) {
  let countdownTimer = 0;
  let retry = 0;
  let poll = 0;

  function startCountdown(opensAt) {
    window.clearInterval(countdownTimer);
    const tick = () => {
      const node = $("countdown");
      const remaining = opensAt - clock.now();
      if (remaining <= 0) {
        window.clearInterval(countdownTimer);
        if (node) {
          node.textContent = t("opening");
        }
        refresh();
        return;
      }
      if (node) {
        node.textContent = t("opens_in", { time: countdownText(remaining, unit) });
      }
    };
    countdownTimer = window.setInterval(tick, 1000);
    tick();
  }

  async function refresh() {
    let fresh;
    let doc;
    try {
      const response = await fetch(window.location.href, { cache: "no-store", credentials: "omit" });
      if (response.status === 404) {
        // This link worked when the page loaded: only a cancellation revokes it.
        showCancelled();
        return;
      }
      if (!response.ok) {
        throw new Error(String(response.status));
      }
      doc = new DOMParser().parseFromString(await response.text(), "text/html");
      fresh = JSON.parse(doc.getElementById("room-data").textContent);
    } catch (error) {
      retry = Math.min(30000, (retry || 1000) * 2);
      window.setTimeout(refresh, retry);
      return;
    }
    retry = 0;
    if (fresh.start !== data.start) {
      // Moved while the page waited: show it anew, with the new time and why it changed.
      store(window.sessionStorage, movedKey(data), "1");
      window.location.reload();
      return;
    }
    clock.sync(fresh.now);
    data.now = fresh.now;
    data.opens_at = fresh.opens_at;
    data.closes_at = fresh.closes_at;
    if (fresh.window === data.window) {
      if (fresh.window === "too_early") {
        // Not yet by the server's clock: count down again from its time (at least a second).
        startCountdown(Math.max(Date.parse(fresh.opens_at), clock.now() + 1000));
      }
      return;
    }
    data.window = fresh.window;
    $("window").replaceWith(document.adoptNode(doc.getElementById("window")));
    const freshCall = doc.getElementById("call");
    if (freshCall && !$("call")) {
      $("devcheck").before(document.adoptNode(freshCall));
      onCallArrived();
    }
    init();
    if (fresh.window === "open") {
      announce(t("room_open"));
    }
  }

  function init() {
    data.window = $("window").dataset.window;
    if (data.window === "too_early") {
      startCountdown(Date.parse(data.opens_at));
      if (!poll) {
        poll = window.setInterval(() => {
          if (data.window === "too_early" && document.visibilityState === "visible") {
            refresh();
          }
        }, WAITING_POLL_MS);
      }
    }
    const button = $("join");
    if (button) {
      button.addEventListener("click", () => join());
    }
    // A recorded interview: joining waits for the box that says the participant agrees.
    const box = $("consent");
    if (button && box) {
      const sync = () => {
        button.disabled = !box.checked;
      };
      box.addEventListener("change", sync);
      sync();
    }
  }

  // The interview was cancelled while the page was open: nothing is left to wait for.
  function showCancelled() {
    window.clearInterval(countdownTimer);
    data.window = "cancelled";
    const section = $("window");
    if (section && section.dataset.window !== "cancelled") {
      const title = document.createElement("h2");
      title.id = "window-title";
      title.textContent = t("cancelled");
      const text = document.createElement("p");
      text.textContent = t("cancelled_hint");
      section.replaceChildren(title, text);
      section.dataset.window = "cancelled";
      section.className = "rm-card rm-window rm-window--cancelled";
    }
    announce(t("cancelled"));
  }

  // After the page reloaded itself because the interview moved: say why the time changed.
  function showMoved() {
    if (!recall(window.sessionStorage, movedKey(data))) {
      return;
    }
    store(window.sessionStorage, movedKey(data), null);
    const title = $("window-title");
    if (!title) {
      return;
    }
    const notice = document.createElement("p");
    notice.id = "moved-notice";
    notice.className = "notice notice--warning";
    notice.setAttribute("role", "status");
    notice.textContent = t("moved");
    title.after(notice);
    announce(t("moved"));
  }

  // After a laptop slept, the browser's elapsed time may lag: ask the server again.
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && data.window === "too_early") {
      refresh();
    }
  });

  return { init, showCancelled, showMoved };
}
