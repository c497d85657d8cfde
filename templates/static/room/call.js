// The call: joining, the WebSocket and the peer connection, reconnections, and the end. Its
// life is the state machine of call-state.js; what the server's messages and close codes mean
// is decided in protocol.js; the evaluator's panel is panel.js.

import { $, announce, attach } from "./ui.js";
import { callMachine } from "./call-state.js";
import { closeAction, isStale, reconnectDelay, roomMessage } from "./protocol.js";
import { openSignal } from "./signaling.js";
import { answerOffer, rtcConfiguration, trickler, wsUrl } from "./negotiation.js";
import { createPanel, markSteps } from "./panel.js";
import { offerStart } from "./devcheck.js";
import { recall, store } from "./storage.js";

/** Set while in the call: a reload (or a crash) joins again by itself. */
export function joinedKey(data) {
  return "viva.room.joined:" + data.urls.page;
}

/**
 * `page` holds the page's data, `t`, the server's `clock`, `formatTime`, the shared `media`
 * and `audio`, and the window's `showCancelled` and `markMoved`.
 */
export function createCall(page) {
  const { data, t, clock, formatTime, media, audio } = page;
  const isEvaluator = data.role === "evaluator";
  const otherRole = isEvaluator ? "candidate" : "evaluator";
  const call = {
    signal: null,
    pc: null,
    remote: null,
    room: null,
    version: -1,
    refusal: null,
    attempt: 0,
    // Several processes serve rooms: where this room is held (docs/rooms.md, `elsewhere`).
    target: null,
    hops: 0,
    retryTimer: 0,
    retryTick: 0,
    unstableTimer: 0,
    trickle: null,
  };
  const machine = callMachine({
    onChange(from, to) {
      const section = $("call");
      if (section) {
        section.dataset.call = to;
      }
    },
    log: (text) => console.warn(text),
  });
  const panel = isEvaluator
    ? createPanel({ data, t, send, room: () => call.room, formatTime, clock })
    : null;

  function send(message) {
    return call.signal ? call.signal.send(message) : false;
  }

  function setConnection(state, text) {
    const node = $("conn");
    if (!node) {
      return;
    }
    node.dataset.state = state;
    $("conn-text").textContent = text || t("state_" + state);
  }

  function setMessage(text) {
    const node = $("call-message");
    if (node && node.textContent !== text) {
      node.textContent = text;
    }
  }

  function init() {
    const section = $("call");
    if (!section || section.dataset.ready) {
      return;
    }
    section.dataset.ready = "true";
    section.dataset.call = machine.state;
    // No stream on a video element before it has tracks: an empty one would hold the
    // page's load event back for good.
    media.listeners.push((kind) => {
      if (kind === "video") {
        const self = $("self-video");
        self.srcObject = null;
        attach(self, media.stream);
        updateSelf();
      }
      // A device switched during the call goes straight to the server.
      if (call.pc) {
        call.pc.getTransceivers().forEach((transceiver) => {
          const receiverKind = transceiver.receiver.track && transceiver.receiver.track.kind;
          if (receiverKind === kind && transceiver.sender) {
            transceiver.sender.replaceTrack(media.track(kind)).catch(() => {});
          }
        });
      }
    });
    $("mic-toggle").addEventListener("click", () => toggle("audio"));
    $("cam-toggle").addEventListener("click", () => toggle("video"));
    $("leave").addEventListener("click", () => leave());
    $("sound-on").addEventListener("click", () => {
      const remote = $("remote-video");
      remote.muted = false;
      remote.play().catch(() => {});
      $("sound-on").hidden = true;
    });
    $("call-over-action").addEventListener("click", () => {
      if ($("call-over-action").dataset.action === "reload") {
        window.location.reload();
      } else {
        join();
      }
    });
    if (panel) {
      panel.init();
    }
    if (data.window === "open" && recall(window.sessionStorage, joinedKey(data))) {
      // A reload (or a crash) while in the call: back in, with the same link.
      join();
    }
  }

  function updateSelf() {
    const off = media.off.video || !media.track("video");
    $("self-off").hidden = !off;
    $("self-box").dataset.off = String(off);
  }

  // Mute and camera are toggle buttons: aria-pressed says "muted" / "camera off".
  function toggle(kind) {
    media.off[kind] = !media.off[kind];
    media.stream.getTracks().forEach((item) => {
      if (item.kind === kind) {
        item.enabled = !media.off[kind];
      }
    });
    const off = media.off[kind];
    const button = $(kind === "audio" ? "mic-toggle" : "cam-toggle");
    button.dataset.off = String(off);
    button.setAttribute("aria-pressed", String(off));
    if (kind === "audio") {
      button.textContent = off ? t("unmute") : t("mute");
      announce(off ? t("mic_muted") : "");
    } else {
      button.textContent = off ? t("camera_on") : t("camera_off");
      updateSelf();
    }
  }

  // A recorded room seats nobody without consent: the ticked box is stored before the
  // page connects. Unticked (a reload back into the call), the consent stored before
  // stands, and without one the server refuses with `consent_required`.
  async function consent() {
    const box = $("consent");
    if (!data.recording || !box || !box.checked) {
      return true;
    }
    try {
      const response = await fetch(data.urls.consent, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ notice: data.notice }),
        credentials: "same-origin",
      });
      if (response.ok) {
        return true;
      }
    } catch (error) {
      console.warn("consent not saved", error);
    }
    const hint = $("join-hint");
    if (hint) {
      hint.textContent = t("consent_failed");
    }
    return false;
  }

  async function join() {
    const section = $("call");
    if (!section || !(await consent()) || !machine.go("joining", "join")) {
      return;
    }
    const button = $("join");
    if (button) {
      button.disabled = true;
      button.textContent = t("joining");
    }
    audio.context();
    if (!media.hasMedia()) {
      await media.acquire();
    }
    call.refusal = null;
    call.attempt = 0;
    store(window.sessionStorage, joinedKey(data), "1");
    document.body.classList.add("rm--in-call");
    section.hidden = false;
    $("call-over").hidden = true;
    $("call-stage").hidden = false;
    // The device pickers follow the participant into the call.
    const pickers = $("device-pickers");
    if (pickers && $("call-devices-body")) {
      $("call-devices-body").appendChild(pickers);
    }
    attach($("self-video"), media.stream);
    updateSelf();
    setMessage(media.hasMedia() ? t("joining") : t("no_media"));
    $("call-message").focus();
    connect();
  }

  function connect() {
    window.clearTimeout(call.retryTimer);
    window.clearInterval(call.retryTick);
    if (!machine.go("connecting", "connect")) {
      return;
    }
    setConnection("connecting");
    if (call.signal) {
      call.signal.close(1000, "reconnect");
    }
    call.version = -1;
    call.refusal = null;
    call.signal = openSignal(call.target || wsUrl(data.urls.websocket, window.location), {
      onMessage,
      onClose: onClosed,
      onSilence: restart,
    });
  }

  function onMessage(message) {
    switch (message.type) {
      case "hello":
        if (!machine.go("greeted", "hello")) {
          return;
        }
        call.hops = 0;
        clock.sync(message.now);
        newPeer(message.ice_servers);
        applyState(message.room || {});
        if (panel) {
          panel.receiveNotes(message.notes);
        }
        call.signal.keepalive();
        break;
      case "state":
        applyState(message);
        break;
      case "offer":
        onOffer(message.sdp);
        break;
      case "notes_saved":
        if (panel) {
          panel.onNotesSaved(message);
        }
        break;
      case "error":
        onError(message);
        break;
      case "replaced":
        call.refusal = { code: "replaced" };
        break;
      case "notice":
        if (panel) {
          panel.onNotice(message);
        }
        break;
      default:
        break; // a pong, or a newer server's message: ignored, as the protocol asks
    }
  }

  function onError(message) {
    if (!message.about) {
      // A refusal; the close that follows says what to do.
      call.refusal = message;
    } else if (panel) {
      panel.onError(message);
    }
  }

  function newPeer(iceServers) {
    closePeer();
    const pc = new RTCPeerConnection(rtcConfiguration(iceServers, data.ice_transport_policy));
    call.pc = pc;
    const remote = new MediaStream();
    call.remote = remote;
    const video = $("remote-video");
    call.trickle = trickler(send);
    const trickle = call.trickle;
    pc.ontrack = (event) => {
      if (call.pc !== pc) {
        return;
      }
      remote.getTracks().forEach((item) => {
        if (item.kind === event.track.kind) {
          remote.removeTrack(item);
        }
      });
      remote.addTrack(event.track);
      if (video.srcObject !== remote) {
        video.srcObject = remote;
      }
      playRemote();
    };
    pc.onicecandidate = (event) => {
      if (call.pc === pc) {
        trickle.add(event.candidate);
      }
    };
    pc.onconnectionstatechange = () => onPeerState(pc);
    media.applySpeaker(video);
  }

  async function onOffer(sdp) {
    const pc = call.pc;
    if (!pc || typeof sdp !== "string") {
      return;
    }
    try {
      const answer = await answerOffer(pc, sdp, media.track);
      if (call.pc !== pc) {
        return;
      }
      send({ type: "answer", sdp: answer });
      call.trickle.answered();
    } catch (error) {
      if (call.pc === pc) {
        restart();
      }
    }
  }

  function playRemote() {
    const video = $("remote-video");
    const playing = video.play();
    if (playing && playing.catch) {
      playing.catch((error) => {
        if (!error || error.name !== "NotAllowedError") {
          return; // interrupted by a newer source, not refused
        }
        // Sound without a click first: the browser refuses; play muted and offer the sound.
        video.muted = true;
        video.play().catch(() => {});
        $("sound-on").hidden = false;
        announce(t("sound_blocked"));
      });
    }
  }

  function closePeer() {
    window.clearTimeout(call.unstableTimer);
    if (call.pc) {
      const pc = call.pc;
      call.pc = null;
      pc.ontrack = null;
      pc.onicecandidate = null;
      pc.onconnectionstatechange = null;
      pc.close();
    }
    const video = $("remote-video");
    if (video) {
      video.srcObject = null;
    }
    updateRemote();
  }

  function onPeerState(pc) {
    if (call.pc !== pc) {
      return;
    }
    const state = pc.connectionState;
    if (state === "connected") {
      window.clearTimeout(call.unstableTimer);
      call.attempt = 0; // the backoff starts again only once media went through
      setConnection("connected");
    } else if (state === "disconnected") {
      setConnection("unstable");
      window.clearTimeout(call.unstableTimer);
      call.unstableTimer = window.setTimeout(() => {
        if (call.pc === pc && pc.connectionState !== "connected") {
          restart();
        }
      }, 8000);
    } else if (state === "failed") {
      // No ICE restart over one WebSocket: a new WebSocket gets a new peer connection.
      restart();
    } else if (state === "new" || state === "connecting") {
      setConnection("connecting");
    }
  }

  // Drops the WebSocket and the peer, then tries again with backoff.
  function restart() {
    closeSignal(1000, "reconnect");
    closePeer();
    scheduleReconnect();
  }

  function closeSignal(code, reason) {
    const signal = call.signal;
    call.signal = null;
    if (signal) {
      signal.close(code, reason);
    }
  }

  function onClosed(code) {
    const greeted = machine.is("greeted");
    call.signal = null;
    closePeer();
    if (machine.stopped()) {
      return;
    }
    if (!greeted) {
      call.target = null; // the address we were sent to did not answer: start over at ours
    }
    const action = closeAction(t, code, call.refusal, {
      isEvaluator,
      hops: call.hops,
      opensAt: data.opens_at,
    });
    if (action.kind === "hop") {
      // The room is held by another process: go there at once (a few hops at most).
      call.target = action.url;
      call.hops += 1;
      connect();
    } else if (action.kind === "over") {
      over(action.text, action.action, action.label, action.release);
      if (action.cancelled) {
        page.showCancelled();
      }
    } else if (action.kind === "moved") {
      onMoved();
    } else if (action.kind === "too_early") {
      if (!machine.go("waiting", "too early")) {
        scheduleReconnect();
        return;
      }
      if (action.now) {
        clock.sync(action.now);
      }
      setConnection("idle");
      setMessage(t("too_early", { time: formatTime(action.opensAt) }));
      call.retryTimer = window.setTimeout(connect, Math.max(1000, action.opensAt - clock.now() + 500));
    } else {
      scheduleReconnect();
    }
  }

  // The interview moved: the page reloads to show its new time and, if the room is open
  // then, joins again by itself (the joined flag stays). A reload would lose notes not
  // saved yet: then the evaluator reloads when ready.
  function onMoved() {
    page.markMoved();
    if (panel && panel.unsaved()) {
      over(t("moved_unsaved"), "reload", t("reload"), true);
      return;
    }
    if (machine.go("reloading", "moved")) {
      window.location.reload();
    }
  }

  function scheduleReconnect() {
    if (!machine.go("retrying", "reconnect")) {
      return;
    }
    call.hops = 0;
    let seconds = reconnectDelay(call.attempt);
    call.attempt += 1;
    window.clearInterval(call.retryTick);
    setConnection("retry", t("state_retry", { seconds: seconds }));
    call.retryTick = window.setInterval(() => {
      seconds -= 1;
      if (seconds > 0) {
        setConnection("retry", t("state_retry", { seconds: seconds }));
      }
    }, 1000);
    call.retryTimer = window.setTimeout(connect, seconds * 1000);
  }

  window.addEventListener("online", () => {
    if (machine.is("retrying", "waiting")) {
      connect();
    }
  });

  // The call stops for good (until the participant chooses otherwise).
  function over(text, action, label, releaseMedia) {
    if (!machine.go("over", "over")) {
      return;
    }
    window.clearTimeout(call.retryTimer);
    window.clearInterval(call.retryTick);
    if (panel) {
      panel.stopTimer();
    }
    closePeer();
    closeSignal(1000);
    setConnection("idle");
    store(window.sessionStorage, joinedKey(data), null);
    if (releaseMedia) {
      media.setTrack("video", null);
      media.setTrack("audio", null);
      offerStart();
    }
    $("call-stage").hidden = true;
    $("call-over-text").textContent = text;
    const button = $("call-over-action");
    button.hidden = !action;
    if (action) {
      button.dataset.action = action;
      button.textContent = label;
    }
    $("call-over").hidden = false;
    setMessage("");
    $("call").dataset.phase = "over";
    $("call-over-text").focus(); // read out, and the keyboard stays in the call's area
    if (panel && $("notes")) {
      panel.flushNotes();
    }
  }

  function leave() {
    if (panel) {
      panel.flushNotes();
    }
    send({ type: "leave" });
    over(t("left"), "join", t("rejoin"), true);
  }

  function applyState(room) {
    if (isStale(room, call.version)) {
      return; // overtaken on the wire by a newer one
    }
    if (typeof room.version === "number") {
      call.version = room.version;
    }
    if (room.now) {
      clock.sync(room.now);
    }
    const previous = call.room;
    call.room = room;
    const otherHere = Boolean((room.present || {})[otherRole]);
    const section = $("call");
    section.dataset.phase = room.phase || "";
    section.dataset.other = String(otherHere);
    $("rec-badge").hidden = !room.recording;
    setMessage(
      roomMessage(t, room, {
        isEvaluator,
        name: data.other_name,
        hasMedia: media.hasMedia(),
        closesAt: () => formatTime(Date.parse(data.closes_at)),
      })
    );
    updateRemote();
    if (room.step && previous && previous.step !== room.step && room.phase === "admitted") {
      announce(t("step_now", { step: (page.steps || {})[room.step] || room.step }));
    }
    if (panel) {
      panel.update(room);
    } else {
      updateGuide(room);
    }
  }

  function updateRemote() {
    const box = $("remote-box");
    if (!box) {
      return;
    }
    const room = call.room || {};
    const live =
      Boolean(call.pc) && room.phase === "admitted" && Boolean((room.present || {})[otherRole]);
    box.dataset.live = String(live);
    const empty = $("remote-empty");
    if (!empty.dataset.lobby) {
      empty.dataset.lobby = empty.textContent;
    }
    if (room.phase === "ended") {
      empty.textContent = t("err_ended");
    } else if (room.phase === "admitted") {
      empty.textContent = t("remote_waiting", { name: data.other_name });
    } else {
      empty.textContent = empty.dataset.lobby;
    }
    empty.hidden = live;
  }

  function updateGuide(room) {
    const hint = $("guide-id");
    if (room.phase === "admitted" && room.step === "id_check" && !room.id_checked_at) {
      hint.textContent = t("show_id");
      hint.dataset.attention = "true";
    } else if (room.id_checked_at) {
      hint.textContent = t("id_done");
      hint.dataset.attention = "false";
    }
    markSteps($("guide-steps"), room.phase === "admitted" ? room.step : null);
  }

  return { init, join, machine };
}
