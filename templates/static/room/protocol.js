// What the room protocol's messages and close codes mean for the page (docs/rooms.md, "Close
// codes" and "Refusals"): pure decisions, taken apart from the WebSocket that carries them.

// 1 s, 2 s, 4 s… up to 15 s (docs/rooms.md, close codes 1001, 1006, 1011).
export const RECONNECT_DELAYS = Object.freeze([1, 2, 4, 8, 15]);

// A room held elsewhere is followed this many times in a row at most.
export const MAX_HOPS = 3;

export function reconnectDelay(attempt) {
  return RECONNECT_DELAYS[Math.min(attempt, RECONNECT_DELAYS.length - 1)];
}

/** A `state` overtaken on the wire by a newer one (its version is lower) is dropped. */
export function isStale(room, version) {
  return typeof room.version === "number" && room.version < version;
}

/**
 * What a closed WebSocket means. `code` is the close code, `refusal` the `error` (or
 * `replaced`) that came before it, if any. One of:
 *   { kind: "hop", url }  the room is held elsewhere: go there (no url: back to our address)
 *   { kind: "over", text, action, label, release, cancelled }  the call stops for good
 *   { kind: "moved" }  the interview moved: reload into its new time
 *   { kind: "too_early", opensAt, now }  wait for the window
 *   { kind: "retry" }  try again with backoff
 */
export function closeAction(t, code, refusal, { isEvaluator, hops, opensAt }) {
  const why = refusal || {};
  if ((code === 4307 || why.code === "elsewhere") && hops < MAX_HOPS) {
    // No address: this process lost the room's lease; start over at ours, which sends us on.
    return { kind: "hop", url: why.url || null };
  }
  const over = (text, action = null, label = null, release = true) => ({
    kind: "over",
    text,
    action,
    label,
    release,
    cancelled: false,
  });
  if (code === 4409 || why.code === "replaced") {
    return over(t("replaced"), "join", t("use_here"));
  }
  if (why.code === "missed") {
    return over(t("missed"));
  }
  if (code === 4000 || (why.code === "ended" && !isEvaluator)) {
    return over(t("ended_candidate"));
  }
  if (code === 4001 || why.code === "cancelled") {
    return { ...over(t("cancelled") + " " + t("cancelled_hint")), cancelled: true };
  }
  if (code === 4002 || why.code === "moved") {
    return { kind: "moved" };
  }
  if (code === 4404 || code === 4403 || ["not_found", "revoked"].includes(why.code)) {
    return over(t("not_found"));
  }
  if (code === 4451 || why.code === "consent_required") {
    return over(t("consent_required"), "reload", t("reload"));
  }
  if (code === 4410 || why.code === "too_late") {
    return over(t("room_closed"));
  }
  if (code === 1000) {
    return over(t("left"), "join", t("rejoin"));
  }
  if (code === 1008 || code === 1009) {
    return over(t("policy"), "reload", t("reload"), false);
  }
  if (code === 4425 || why.code === "too_early") {
    return { kind: "too_early", opensAt: Date.parse(why.opens_at || opensAt), now: why.now || null };
  }
  return { kind: "retry" };
}

/**
 * The call's one-line message for a room state: who is here, what happens next. `who` holds
 * isEvaluator, the other participant's `name`, `hasMedia`, and `closesAt()` (the closing time, formatted).
 */
export function roomMessage(t, room, who) {
  const otherRole = who.isEvaluator ? "candidate" : "evaluator";
  const otherHere = Boolean((room.present || {})[otherRole]);
  const name = who.name;
  let message = "";
  if (room.phase === "lobby") {
    if (who.isEvaluator) {
      message = otherHere ? t("lobby_evaluator_waiting", { name: name }) : t("lobby_evaluator_alone");
    } else {
      message = otherHere ? t("lobby_candidate") : t("lobby_candidate_alone");
    }
  } else if (room.phase === "admitted") {
    if (!otherHere) {
      message = who.isEvaluator ? t("other_gone_evaluator", { name: name }) : t("other_gone_candidate");
    } else if (who.isEvaluator) {
      message = t("admitted_evaluator", { name: name });
    } else if (room.step === "id_check" && !room.id_checked_at) {
      message = t("admitted_candidate") + " " + t("show_id");
    } else {
      message = t("admitted_candidate");
    }
  } else if (room.phase === "ended") {
    message = who.isEvaluator ? t("ended_evaluator", { time: who.closesAt() }) : t("ended_candidate");
  }
  if (!who.hasMedia && room.phase !== "ended") {
    message += " " + t("no_media");
  }
  return message;
}

// The panel's errors (an `error` with `about`) that have a sentence of their own.
export const KNOWN_ERRORS = Object.freeze([
  "candidate_absent",
  "not_admitted",
  "id_not_checked",
  "interview_started",
  "ended",
  "internal",
]);
