// The call's life as a state machine. Every change of state goes through `go`, which refuses
// (and logs) what the room protocol (docs/rooms.md) does not allow, so that a late timer or a
// stale event cannot, say, schedule a second reconnection or revive a call that is over.
//
//   idle ──join──▶ joining ──▶ connecting ──hello──▶ greeted
//                               ▲  │  ▲                │
//          (elsewhere: a hop)───┘  │  └────────────────┤ (the lease moved: start over)
//                                  ▼                   ▼
//                   waiting (too early, until opens_at)  retrying (backoff 1 s … 15 s)
//                                  │                   │
//                                  └──▶ connecting ◀───┘
//   connecting, greeted, waiting, retrying ──▶ over (left, replaced, ended, cancelled…)
//                                          └─▶ reloading (moved: the page loads anew)
//   over ──join again──▶ joining

export const TRANSITIONS = Object.freeze({
  idle: ["joining"],
  joining: ["connecting"],
  connecting: ["greeted", "connecting", "waiting", "retrying", "over", "reloading"],
  greeted: ["connecting", "retrying", "over", "reloading"],
  waiting: ["connecting", "over", "reloading"],
  retrying: ["connecting", "over", "reloading"],
  over: ["joining"],
  reloading: [],
});

export const STATES = Object.freeze(Object.keys(TRANSITIONS));

// In the call: a WebSocket is open or about to be, and the participant has not stopped.
const ACTIVE = ["connecting", "greeted", "waiting", "retrying"];

/**
 * A machine starting at `initial`. `onChange(from, to, why)` hears every change; `log`
 * hears every refusal (console.warn in the page, a list in the tests).
 */
export function callMachine({ initial = "idle", onChange = () => {}, log = () => {} } = {}) {
  if (!TRANSITIONS[initial]) {
    throw new Error("unknown call state: " + initial);
  }
  let state = initial;
  return {
    get state() {
      return state;
    },
    can(to) {
      return (TRANSITIONS[state] || []).includes(to);
    },
    /** Moves to `to` if the protocol allows it from here; says whether it did. */
    go(to, why = "") {
      if (!this.can(to)) {
        log("call: " + state + " → " + to + " refused" + (why ? " (" + why + ")" : ""));
        return false;
      }
      const from = state;
      state = to;
      onChange(from, to, why);
      return true;
    },
    is(...states) {
      return states.includes(state);
    },
    /** Joined and not stopped: a join now would be a second one. */
    active() {
      return ACTIVE.includes(state);
    },
    /** Over, reloading, or never joined: nothing may reconnect. */
    stopped() {
      return !ACTIVE.includes(state) && state !== "joining";
    },
  };
}
