// Viva room page (templates/rooms/room.html): the device check, the countdown to the room's
// window, and the call, speaking the room protocol of docs/rooms.md. No framework, nothing
// from elsewhere. Every sentence comes from the page (#room-strings), in its language.
(function () {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const dataNode = $("room-data");
  const stringsNode = $("room-strings");
  if (!dataNode || !stringsNode) {
    return;
  }
  const data = JSON.parse(dataNode.textContent);
  const S = JSON.parse(stringsNode.textContent);
  const isEvaluator = data.role === "evaluator";
  const otherRole = isEvaluator ? "candidate" : "evaluator";
  const joinedKey = "viva.room.joined:" + data.urls.page;
  // Set before the page reloads itself because the interview was moved (read once after).
  const movedKey = "viva.room.moved:" + data.urls.page;
  const devicesKey = "viva.room.devices";

  function t(key, vars) {
    const text = S[key] !== undefined ? String(S[key]) : key;
    if (!vars) {
      return text;
    }
    return text.replace(/\{(\w+)\}/g, (whole, name) =>
      Object.prototype.hasOwnProperty.call(vars, name) ? String(vars[name]) : whole
    );
  }

  function store(storage, key, value) {
    try {
      if (value === null) {
        storage.removeItem(key);
      } else {
        storage.setItem(key, value);
      }
    } catch (error) {
      // Private browsing or storage disabled: the page works without remembering.
    }
  }

  function recall(storage, key) {
    try {
      return storage.getItem(key);
    } catch (error) {
      return null;
    }
  }

  // --- the server's clock ------------------------------------------------------------------
  // Times come from the server ("now" in the page and in every message) plus the time the
  // browser saw pass since, never from the browser's own clock, which may be wrong.

  const clock = {
    base: Date.parse(data.now),
    at: performance.now(),
    sync(iso) {
      const value = Date.parse(iso);
      if (!Number.isNaN(value)) {
        this.base = value;
        this.at = performance.now();
      }
    },
    now() {
      return this.base + (performance.now() - this.at);
    },
  };

  let timeFormat = null;
  function formatTime(ms) {
    if (!timeFormat) {
      try {
        timeFormat = new Intl.DateTimeFormat(data.locale, {
          hour: "numeric",
          minute: "2-digit",
          timeZone: data.timezone,
        });
      } catch (error) {
        timeFormat = new Intl.DateTimeFormat(data.locale, { hour: "numeric", minute: "2-digit" });
      }
    }
    return timeFormat.format(new Date(ms));
  }

  function unit(value, name) {
    try {
      return new Intl.NumberFormat(data.locale, {
        style: "unit",
        unit: name,
        unitDisplay: "long",
      }).format(value);
    } catch (error) {
      return value + " " + name;
    }
  }

  function clockText(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const rest = String(s % 60).padStart(2, "0");
    return h > 0 ? h + ":" + String(m).padStart(2, "0") + ":" + rest : m + ":" + rest;
  }

  function countdownText(ms) {
    const s = Math.max(0, Math.ceil(ms / 1000));
    const days = Math.floor(s / 86400);
    const hours = Math.floor((s % 86400) / 3600);
    const minutes = Math.floor((s % 3600) / 60);
    if (days > 0) {
      return unit(days, "day") + " " + unit(hours, "hour");
    }
    if (hours > 0) {
      return unit(hours, "hour") + " " + unit(minutes, "minute");
    }
    return clockText(s);
  }

  function announce(text) {
    const node = $("announcer");
    if (!node || !text) {
      return;
    }
    node.textContent = "";
    window.setTimeout(() => {
      node.textContent = text;
    }, 60);
  }

  function wsUrl(path) {
    const url = new URL(path, window.location.href);
    url.protocol = window.location.protocol === "https:" ? "wss:" : "ws:";
    return url.href;
  }

  // --- devices: camera, microphone, speakers -------------------------------------------------

  const media = {
    stream: new MediaStream(),
    wanted: { camera: "", mic: "", speaker: "" },
    problems: { camera: null, mic: null },
    off: { audio: false, video: false },
    listeners: [],
  };
  try {
    const saved = JSON.parse(recall(window.localStorage, devicesKey) || "{}");
    ["camera", "mic", "speaker"].forEach((name) => {
      if (typeof saved[name] === "string") {
        media.wanted[name] = saved[name];
      }
    });
  } catch (error) {
    // A damaged saved choice: start from the defaults.
  }

  const speakerSelectable =
    typeof HTMLMediaElement !== "undefined" && "setSinkId" in HTMLMediaElement.prototype;

  function track(kind) {
    const tracks = kind === "video" ? media.stream.getVideoTracks() : media.stream.getAudioTracks();
    return tracks.find((item) => item.readyState === "live") || null;
  }

  function hasMedia() {
    return Boolean(track("audio") || track("video"));
  }

  function constraints(kind, exact) {
    if (kind === "video") {
      const video = { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 24 } };
      if (exact && media.wanted.camera) {
        video.deviceId = { exact: media.wanted.camera };
      }
      return video;
    }
    const audio = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
    if (exact && media.wanted.mic) {
      audio.deviceId = { exact: media.wanted.mic };
    }
    return audio;
  }

  // One device at a time: a chosen device that is gone falls back to the default one.
  async function open(kind) {
    const ask = (exact) =>
      navigator.mediaDevices.getUserMedia(
        kind === "video" ? { video: constraints("video", exact) } : { audio: constraints("audio", exact) }
      );
    try {
      return (await ask(true)).getTracks()[0];
    } catch (error) {
      const chosen = kind === "video" ? media.wanted.camera : media.wanted.mic;
      if (chosen && (error.name === "OverconstrainedError" || error.name === "NotFoundError")) {
        return (await ask(false)).getTracks()[0];
      }
      throw error;
    }
  }

  function explain(device, error) {
    const name = (error && error.name) || "";
    if (["NotAllowedError", "PermissionDeniedError", "SecurityError"].includes(name)) {
      return t(device + "_blocked");
    }
    if (["NotReadableError", "TrackStartError", "AbortError"].includes(name)) {
      return t(device + "_busy");
    }
    if (["NotFoundError", "DevicesNotFoundError", "OverconstrainedError"].includes(name)) {
      return t(device + "_missing");
    }
    return t(device + "_failed", { error: name || String(error) });
  }

  let acquiring = null;
  // Camera and microphone together (one permission prompt); when that fails, each alone, so
  // that each device's own problem can be explained.
  function acquire() {
    if (!acquiring) {
      acquiring = doAcquire().finally(() => {
        acquiring = null;
      });
    }
    return acquiring;
  }

  async function doAcquire() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      showProblems([t("unsupported")]);
      setCheck("camera", "failed", t("failed"));
      setCheck("mic", "failed", t("failed"));
      return false;
    }
    media.problems = { camera: null, mic: null };
    let video = track("video");
    let audio = track("audio");
    if (!video && !audio) {
      try {
        const stream = await navigator.mediaDevices.getUserMedia({
          video: constraints("video", true),
          audio: constraints("audio", true),
        });
        video = stream.getVideoTracks()[0] || null;
        audio = stream.getAudioTracks()[0] || null;
        setTrack("video", video);
        setTrack("audio", audio);
      } catch (error) {
        video = null;
        audio = null;
      }
    }
    if (!video) {
      try {
        setTrack("video", await open("video"));
      } catch (error) {
        media.problems.camera = explain("camera", error);
        setCheck("camera", "failed", t("failed"));
      }
    }
    if (!audio) {
      try {
        setTrack("audio", await open("audio"));
      } catch (error) {
        media.problems.mic = explain("mic", error);
        setCheck("mic", "failed", t("failed"));
      }
    }
    showProblems([media.problems.camera, media.problems.mic]);
    const start = $("devcheck-start");
    if (start) {
      start.textContent = t("try_again");
      start.hidden = !media.problems.camera && !media.problems.mic;
    }
    await refreshDevices();
    return hasMedia();
  }

  function setTrack(kind, next) {
    const current = kind === "video" ? media.stream.getVideoTracks() : media.stream.getAudioTracks();
    current.forEach((old) => {
      if (old !== next) {
        media.stream.removeTrack(old);
        old.stop();
      }
    });
    if (next) {
      next.enabled = !media.off[kind];
      if (!media.stream.getTracks().includes(next)) {
        media.stream.addTrack(next);
      }
      next.addEventListener("ended", () => {
        if (track(kind) === null) {
          setCheck(kind === "video" ? "camera" : "mic", "failed", t("failed"));
        }
      });
    }
    media.listeners.forEach((listener) => listener(kind, next));
  }

  function showProblems(list) {
    const box = $("device-problems");
    if (!box) {
      return;
    }
    box.replaceChildren();
    list.filter(Boolean).forEach((text) => {
      const p = document.createElement("p");
      p.className = "notice notice--warning";
      p.textContent = text;
      box.appendChild(p);
    });
  }

  function setCheck(name, result, text) {
    const item = $("check-" + name);
    if (!item) {
      return;
    }
    item.dataset.result = result;
    $("check-" + name + "-text").textContent = text;
  }

  async function refreshDevices() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) {
      return;
    }
    let devices = [];
    try {
      devices = await navigator.mediaDevices.enumerateDevices();
    } catch (error) {
      return;
    }
    const camera = track("video");
    const mic = track("audio");
    fill(
      $("pick-camera"),
      devices.filter((d) => d.kind === "videoinput"),
      "camera_n",
      camera ? camera.getSettings().deviceId : media.wanted.camera
    );
    fill(
      $("pick-mic"),
      devices.filter((d) => d.kind === "audioinput"),
      "mic_n",
      mic ? mic.getSettings().deviceId : media.wanted.mic
    );
    if (speakerSelectable) {
      fill(
        $("pick-speaker"),
        devices.filter((d) => d.kind === "audiooutput"),
        "speaker_n",
        media.wanted.speaker
      );
    }
  }

  function fill(select, devices, labelKey, selected) {
    if (!select) {
      return;
    }
    // Without permission, browsers list devices with neither id nor label: nothing to pick.
    const usable = devices.filter((d) => d.deviceId);
    select.replaceChildren();
    if (!usable.length) {
      const option = document.createElement("option");
      option.value = "";
      option.textContent = t("default_device");
      select.appendChild(option);
      select.disabled = true;
      return;
    }
    usable.forEach((device, index) => {
      const option = document.createElement("option");
      option.value = device.deviceId;
      option.textContent = device.label || t(labelKey, { n: index + 1 });
      select.appendChild(option);
    });
    if (usable.some((d) => d.deviceId === selected)) {
      select.value = selected;
    }
    select.disabled = false;
  }

  function remember() {
    store(window.localStorage, devicesKey, JSON.stringify(media.wanted));
  }

  async function switchDevice(kind) {
    const name = kind === "video" ? "camera" : "mic";
    // Some phones cannot open two cameras at once: release the old one first.
    if (kind === "video") {
      setTrack("video", null);
    }
    try {
      setTrack(kind, await open(kind));
      media.problems[name] = null;
    } catch (error) {
      media.problems[name] = explain(name, error);
      setCheck(name, "failed", t("failed"));
    }
    showProblems([media.problems.camera, media.problems.mic]);
    await refreshDevices();
  }

  async function applySpeaker(element) {
    if (!speakerSelectable || !element || !media.wanted.speaker) {
      return true;
    }
    try {
      await element.setSinkId(media.wanted.speaker);
      return true;
    } catch (error) {
      return false;
    }
  }

  // --- the microphone meter (Web Audio) ---------------------------------------------------

  const meter = { ctx: null, analyser: null, source: null, samples: null, timer: 0, level: 0 };
  let heard = false;

  function audioContext() {
    if (!meter.ctx) {
      const Context = window.AudioContext || window.webkitAudioContext;
      if (!Context) {
        return null;
      }
      meter.ctx = new Context();
    }
    if (meter.ctx.state === "suspended") {
      meter.ctx.resume().catch(() => {});
    }
    return meter.ctx;
  }

  function listen(audio) {
    const ctx = audioContext();
    if (meter.source) {
      meter.source.disconnect();
      meter.source = null;
    }
    if (!ctx || !audio) {
      return;
    }
    if (!meter.analyser) {
      meter.analyser = ctx.createAnalyser();
      meter.analyser.fftSize = 1024;
      meter.samples = new Float32Array(meter.analyser.fftSize);
    }
    meter.source = ctx.createMediaStreamSource(new MediaStream([audio]));
    meter.source.connect(meter.analyser); // measured only, never played back (no echo)
    if (!meter.timer) {
      meter.timer = window.setInterval(readLevel, 100);
    }
  }

  function readLevel() {
    const element = $("mic-meter");
    if (!meter.analyser || !element) {
      return;
    }
    meter.analyser.getFloatTimeDomainData(meter.samples);
    let sum = 0;
    for (let i = 0; i < meter.samples.length; i += 1) {
      sum += meter.samples[i] * meter.samples[i];
    }
    const rms = Math.sqrt(sum / meter.samples.length);
    // -60 dBFS (silence) .. 0 dBFS (loudest) onto 0..100, falling back slowly like a VU meter.
    const db = 20 * Math.log10(rms || 1e-9);
    const level = Math.max(0, Math.min(100, ((db + 60) * 100) / 60));
    meter.level = Math.max(level, meter.level * 0.85);
    element.value = Math.round(meter.level);
    element.textContent = String(Math.round(meter.level));
    const audio = track("audio");
    if (!audio || media.off.audio) {
      return;
    }
    if (level > 20 && !heard) {
      heard = true;
      setCheck("mic", "ok", t("mic_heard"));
    } else if (!heard && $("check-mic").dataset.result !== "warn") {
      setCheck("mic", "warn", t("mic_silent"));
    }
  }

  // --- the speaker test: a generated tone, no sound file ---------------------------------

  let toneElement = null;
  async function playTone() {
    const status = $("speaker-status");
    const ctx = audioContext();
    if (!ctx) {
      status.textContent = t("tone_failed");
      return;
    }
    status.textContent = t("tone_playing");
    const oscillator = ctx.createOscillator();
    const gain = ctx.createGain();
    oscillator.type = "sine";
    oscillator.frequency.value = 660;
    const start = ctx.currentTime + 0.05;
    gain.gain.setValueAtTime(0, start);
    gain.gain.linearRampToValueAtTime(0.25, start + 0.05);
    gain.gain.setValueAtTime(0.25, start + 0.45);
    gain.gain.linearRampToValueAtTime(0, start + 0.5);
    gain.gain.setValueAtTime(0, start + 0.7);
    gain.gain.linearRampToValueAtTime(0.25, start + 0.75);
    gain.gain.setValueAtTime(0.25, start + 1.15);
    gain.gain.linearRampToValueAtTime(0, start + 1.2);
    oscillator.connect(gain);
    let chosenSpeaker = true;
    if (speakerSelectable && media.wanted.speaker) {
      // Through an <audio> element, whose output device can be chosen.
      const destination = ctx.createMediaStreamDestination();
      gain.connect(destination);
      toneElement = toneElement || new Audio();
      toneElement.srcObject = destination.stream;
      chosenSpeaker = await applySpeaker(toneElement);
      toneElement.play().catch(() => {});
    } else {
      gain.connect(ctx.destination);
    }
    oscillator.onended = () => {
      oscillator.disconnect();
      gain.disconnect();
      status.textContent = chosenSpeaker ? t("tone_done") : t("speaker_failed");
    };
    oscillator.start(start);
    oscillator.stop(start + 1.25);
  }

  // --- negotiation, shared by the call and the connection test ---------------------------
  // The server offers (one sendrecv audio and one sendrecv video transceiver); the page puts
  // its tracks on the offered transceivers and answers at once (docs/rooms.md).

  async function answerOffer(pc, sdp) {
    await pc.setRemoteDescription({ type: "offer", sdp: sdp });
    for (const transceiver of pc.getTransceivers()) {
      const kind = transceiver.receiver.track && transceiver.receiver.track.kind;
      await transceiver.sender.replaceTrack(kind ? track(kind) : null);
      transceiver.direction = "sendrecv";
    }
    await pc.setLocalDescription(await pc.createAnswer());
    return pc.localDescription.sdp;
  }

  function candidateMessage(candidate) {
    if (!candidate || !candidate.candidate) {
      return { type: "candidate", candidate: null };
    }
    return {
      type: "candidate",
      candidate: candidate.candidate,
      sdpMid: candidate.sdpMid,
      sdpMLineIndex: candidate.sdpMLineIndex,
    };
  }

  // Candidates gathered before the answer went out wait for it (the server refuses them
  // before the answer); the end of candidates is sent once.
  function trickler(send) {
    let answered = false;
    let ended = false;
    const queue = [];
    function push(candidate) {
      if (ended) {
        return;
      }
      const message = candidateMessage(candidate);
      if (message.candidate === null) {
        ended = true;
      }
      send(message);
    }
    return {
      add(candidate) {
        if (answered) {
          push(candidate);
        } else {
          queue.push(candidate);
        }
      },
      answered() {
        answered = true;
        queue.splice(0).forEach(push);
      },
    };
  }

  // --- the connection test (a loopback peer on the server) -------------------------------

  const echo = { ws: null, pc: null, running: false };

  function result(text, ok) {
    const list = $("conn-results");
    const item = document.createElement("li");
    item.dataset.ok = ok === undefined ? "" : String(ok);
    item.textContent = text;
    list.appendChild(item);
  }

  async function connectionTest() {
    if (echo.running) {
      return;
    }
    echo.running = true;
    const button = $("conn-test");
    button.disabled = true;
    $("conn-results").replaceChildren();
    try {
      if (!hasMedia()) {
        await acquire();
      }
      if (!hasMedia()) {
        result(t("conn_no_media"));
        setCheck("connection", "failed", t("failed"));
        return;
      }
      setCheck("connection", "running", t("conn_running"));
      const outcome = await runEcho();
      if (outcome.cancelled) {
        setCheck("connection", "pending", t("conn_untested"));
        showCancelled();
        return;
      }
      if (outcome.unavailable) {
        setCheck("connection", "pending", t("conn_untested"));
        const why = { busy: "conn_busy", not_found: "not_found", revoked: "not_found" };
        result(t(why[outcome.refused] || "conn_unavailable"));
        return;
      }
      result(t("conn_up", { result: outcome.up ? t("yes") : t("no") }), outcome.up);
      result(t("conn_down", { result: outcome.down ? t("yes") : t("no") }), outcome.down);
      if (outcome.rtt !== null) {
        result(t("conn_rtt", { ms: Math.round(outcome.rtt * 1000) }));
      }
      if (outcome.up && outcome.down) {
        setCheck("connection", "ok", t("conn_ok"));
      } else if (outcome.up || outcome.down) {
        setCheck("connection", "warn", t("conn_partial"));
      } else {
        setCheck("connection", "failed", t("conn_failed"));
      }
    } finally {
      echo.running = false;
      button.disabled = false;
    }
  }

  function runEcho() {
    return new Promise((resolve) => {
      const outcome = {
        unavailable: true,
        refused: null,
        cancelled: false,
        up: false,
        down: false,
        rtt: null,
        serverReceived: 0,
      };
      const ws = new WebSocket(wsUrl(data.urls.echo));
      let pc = null;
      let poll = 0;
      let finished = false;
      const video = $("echo-video");
      const send = (message) => {
        if (ws.readyState === WebSocket.OPEN) {
          ws.send(JSON.stringify(message));
        }
      };
      const trickle = trickler(send);
      function finish() {
        if (finished) {
          return;
        }
        finished = true;
        window.clearInterval(poll);
        window.clearTimeout(deadline);
        send({ type: "leave" });
        window.setTimeout(() => ws.close(), 300);
        if (pc) {
          pc.close();
        }
        video.srcObject = null;
        video.hidden = true;
        resolve(outcome);
      }
      const deadline = window.setTimeout(finish, 15000);
      ws.onclose = () => finish();
      ws.onerror = () => finish();
      ws.onmessage = async (event) => {
        let message;
        try {
          message = JSON.parse(event.data);
        } catch (error) {
          return;
        }
        if (message.type === "hello") {
          outcome.unavailable = false;
          pc = new RTCPeerConnection(rtcConfiguration(message.ice_servers));
          const back = new MediaStream();
          pc.ontrack = (e) => {
            back.addTrack(e.track);
            video.srcObject = back;
            video.hidden = false;
            video.play().catch(() => {});
          };
          pc.onicecandidate = (e) => trickle.add(e.candidate);
        } else if (message.type === "offer" && pc) {
          try {
            send({ type: "answer", sdp: await answerOffer(pc, message.sdp) });
            trickle.answered();
          } catch (error) {
            finish();
            return;
          }
          const started = performance.now();
          poll = window.setInterval(async () => {
            await measure(pc, outcome);
            // A few seconds at least, so that people see themselves come back.
            const elapsed = performance.now() - started;
            const settled = outcome.up && outcome.down && outcome.rtt !== null;
            if ((settled && elapsed > 3000) || elapsed > 10000) {
              finish();
            }
          }, 500);
        } else if (message.type === "echo_stats") {
          const received = message.received || {};
          outcome.serverReceived = (received.audio || 0) + (received.video || 0);
        } else if (message.type === "error") {
          // Before the hello, a refusal (not_found, busy); after it, the end of the test's
          // time or a slip of ours: what was measured stands. Unless the interview was
          // cancelled meanwhile: then that is all the page has left to say.
          if (message.code === "cancelled") {
            outcome.cancelled = true;
          } else if (!pc) {
            outcome.refused = message.code;
          }
        }
      };
    });
  }

  async function measure(pc, outcome) {
    let stats;
    try {
      stats = await pc.getStats();
    } catch (error) {
      return;
    }
    let sent = 0;
    let reported = false;
    let decoded = 0;
    let audioIn = 0;
    stats.forEach((report) => {
      if (report.type === "outbound-rtp") {
        sent += report.packetsSent || 0;
      } else if (report.type === "remote-inbound-rtp") {
        // The server's receiver reports: what the page sent arrived there.
        reported = true;
        if (typeof report.roundTripTime === "number") {
          outcome.rtt = report.roundTripTime;
        }
      } else if (report.type === "inbound-rtp") {
        if (report.kind === "video") {
          decoded += report.framesDecoded || 0;
        } else {
          audioIn += report.packetsReceived || 0;
        }
      } else if (
        report.type === "candidate-pair" &&
        report.nominated &&
        typeof report.currentRoundTripTime === "number" &&
        outcome.rtt === null
      ) {
        outcome.rtt = report.currentRoundTripTime;
      }
    });
    outcome.down = decoded > 0 || audioIn > 0;
    // Media that came back went there first; so did media the server says it received.
    outcome.up = outcome.down || (sent > 0 && (reported || outcome.serverReceived > 0));
  }

  // --- the device check's wiring ---------------------------------------------------------------

  function attach(element, stream) {
    if (!element) {
      return;
    }
    if (element.srcObject !== stream) {
      element.srcObject = stream;
    }
    element.play().catch(() => {});
  }

  function initDevcheck() {
    const preview = $("preview");
    media.listeners.push((kind, next) => {
      if (kind === "video") {
        // Re-attach: a stream's new track is not always picked up by an element showing it.
        preview.srcObject = null;
        attach(preview, media.stream);
        $("preview-empty").hidden = Boolean(next);
        if (next) {
          setCheck("camera", "running", "…");
        }
      } else {
        heard = false;
        listen(next);
      }
    });
    preview.addEventListener("resize", () => {
      if (preview.videoWidth > 0 && track("video")) {
        setCheck("camera", "ok", t("camera_ok"));
      }
    });
    preview.addEventListener("loadeddata", () => {
      if (preview.videoWidth > 0 && track("video")) {
        setCheck("camera", "ok", t("camera_ok"));
      }
    });
    $("devcheck-start").addEventListener("click", () => {
      audioContext();
      acquire();
    });
    $("speaker-test").addEventListener("click", () => playTone());
    $("conn-test").addEventListener("click", () => {
      audioContext();
      connectionTest();
    });
    $("pick-camera").addEventListener("change", (event) => {
      media.wanted.camera = event.target.value;
      remember();
      switchDevice("video");
    });
    $("pick-mic").addEventListener("change", (event) => {
      media.wanted.mic = event.target.value;
      remember();
      switchDevice("audio");
    });
    if (speakerSelectable) {
      $("pick-speaker").addEventListener("change", async (event) => {
        media.wanted.speaker = event.target.value;
        remember();
        const ok = await applySpeaker($("remote-video"));
        if (!ok) {
          $("speaker-status").textContent = t("speaker_failed");
        }
      });
    } else {
      $("speaker-field").hidden = true;
      $("speaker-hint").hidden = false;
    }
    if (navigator.mediaDevices && navigator.mediaDevices.addEventListener) {
      navigator.mediaDevices.addEventListener("devicechange", () => refreshDevices());
    }
  }

  // --- the room's window: countdown, then the call without a reload ----------------------

  let countdownTimer = 0;
  let windowRetry = 0;
  let windowPoll = 0;
  // A page left open before the window has no WebSocket to hear of a move or a cancellation
  // (docs/rooms.md): it asks the server again this often while it waits.
  const WAITING_POLL_MS = 5 * 60 * 1000;

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
        refreshWindow();
        return;
      }
      if (node) {
        node.textContent = t("opens_in", { time: countdownText(remaining) });
      }
    };
    countdownTimer = window.setInterval(tick, 1000);
    tick();
  }

  // Ask the server for the page again and take the parts that depend on the window: the
  // server's clock decides, and the device check keeps running meanwhile.
  async function refreshWindow() {
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
      windowRetry = Math.min(30000, (windowRetry || 1000) * 2);
      window.setTimeout(refreshWindow, windowRetry);
      return;
    }
    windowRetry = 0;
    if (fresh.start !== data.start) {
      // Moved while the page waited: show it anew, with the new time and why it changed.
      store(window.sessionStorage, movedKey, "1");
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
    const freshWindow = doc.getElementById("window");
    $("window").replaceWith(document.adoptNode(freshWindow));
    const freshCall = doc.getElementById("call");
    if (freshCall && !$("call")) {
      $("devcheck").before(document.adoptNode(freshCall));
      initCall();
    }
    initWindow();
    if (fresh.window === "open") {
      announce(t("room_open"));
    }
  }

  function initWindow() {
    const section = $("window");
    data.window = section.dataset.window;
    if (data.window === "too_early") {
      startCountdown(Date.parse(data.opens_at));
      if (!windowPoll) {
        windowPoll = window.setInterval(() => {
          if (data.window === "too_early" && document.visibilityState === "visible") {
            refreshWindow();
          }
        }, WAITING_POLL_MS);
      }
    }
    const button = $("join");
    if (button) {
      button.addEventListener("click", () => join());
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
    if (!recall(window.sessionStorage, movedKey)) {
      return;
    }
    store(window.sessionStorage, movedKey, null);
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

  // --- the call ------------------------------------------------------------------------------

  const call = {
    ws: null,
    pc: null,
    remote: null,
    joined: false,
    joining: false,
    stopped: true,
    leaving: false,
    version: -1,
    room: null,
    hello: null,
    refusal: null,
    attempt: 0,
    // Several processes serve rooms: where this room is held (docs/rooms.md, `elsewhere`).
    target: null,
    hops: 0,
    greeted: false,
    retryTimer: 0,
    retryTick: 0,
    pingTimer: 0,
    pongTimer: 0,
    unstableTimer: 0,
    timerTick: 0,
    overTime: false,
    notes: { sent: null, timer: 0, dirty: false },
    trickle: null,
  };

  function el(id) {
    return $(id);
  }

  function send(message) {
    if (call.ws && call.ws.readyState === WebSocket.OPEN) {
      call.ws.send(JSON.stringify(message));
      return true;
    }
    return false;
  }

  function setConnection(state, text) {
    const node = el("conn");
    if (!node) {
      return;
    }
    node.dataset.state = state;
    el("conn-text").textContent = text || t("state_" + state);
  }

  function setMessage(text) {
    const node = el("call-message");
    if (node && node.textContent !== text) {
      node.textContent = text;
    }
  }

  function initCall() {
    const section = el("call");
    if (!section || section.dataset.ready) {
      return;
    }
    section.dataset.ready = "true";
    // No stream on a video element before it has tracks: an empty one would hold the
    // page's load event back for good.
    media.listeners.push((kind) => {
      if (kind === "video") {
        const self = el("self-video");
        self.srcObject = null;
        attach(self, media.stream);
        updateSelf();
      }
      // A device switched during the call goes straight to the server.
      if (call.pc) {
        call.pc.getTransceivers().forEach((transceiver) => {
          const receiverKind = transceiver.receiver.track && transceiver.receiver.track.kind;
          if (receiverKind === kind && transceiver.sender) {
            transceiver.sender.replaceTrack(track(kind)).catch(() => {});
          }
        });
      }
    });
    el("mic-toggle").addEventListener("click", () => toggle("audio"));
    el("cam-toggle").addEventListener("click", () => toggle("video"));
    el("leave").addEventListener("click", () => leave());
    el("sound-on").addEventListener("click", () => {
      const remote = el("remote-video");
      remote.muted = false;
      remote.play().catch(() => {});
      el("sound-on").hidden = true;
    });
    el("call-over-action").addEventListener("click", () => {
      const action = el("call-over-action").dataset.action;
      if (action === "reload") {
        window.location.reload();
      } else {
        join();
      }
    });
    if (isEvaluator) {
      initPanel();
    }
    if (data.window === "open" && recall(window.sessionStorage, joinedKey)) {
      // A reload (or a crash) while in the call: back in, with the same link.
      join();
    }
  }

  function updateSelf() {
    const off = media.off.video || !track("video");
    el("self-off").hidden = !off;
    el("self-box").dataset.off = String(off);
  }

  function toggle(kind) {
    media.off[kind] = !media.off[kind];
    media.stream.getTracks().forEach((item) => {
      if (item.kind === kind) {
        item.enabled = !media.off[kind];
      }
    });
    if (kind === "audio") {
      const button = el("mic-toggle");
      button.textContent = media.off.audio ? t("unmute") : t("mute");
      button.dataset.off = String(media.off.audio);
      announce(media.off.audio ? t("mic_muted") : "");
    } else {
      const button = el("cam-toggle");
      button.textContent = media.off.video ? t("camera_on") : t("camera_off");
      button.dataset.off = String(media.off.video);
      updateSelf();
    }
  }

  async function join() {
    const section = el("call");
    if (!section || call.joining || (call.joined && !call.stopped)) {
      return;
    }
    call.joining = true;
    const button = $("join");
    if (button) {
      button.disabled = true;
      button.textContent = t("joining");
    }
    audioContext();
    if (!hasMedia()) {
      await acquire();
    }
    call.joining = false;
    call.joined = true;
    call.stopped = false;
    call.leaving = false;
    call.refusal = null;
    call.attempt = 0;
    store(window.sessionStorage, joinedKey, "1");
    document.body.classList.add("rm--in-call");
    section.hidden = false;
    el("call-over").hidden = true;
    el("call-stage").hidden = false;
    // The device pickers follow the participant into the call.
    const pickers = $("device-pickers");
    if (pickers && el("call-devices-body")) {
      el("call-devices-body").appendChild(pickers);
    }
    attach(el("self-video"), media.stream);
    updateSelf();
    setMessage(hasMedia() ? t("joining") : t("no_media"));
    el("call-message").focus();
    connect();
  }

  function connect() {
    window.clearTimeout(call.retryTimer);
    window.clearInterval(call.retryTick);
    if (call.stopped) {
      return;
    }
    setConnection("connecting");
    const ws = new WebSocket(call.target || wsUrl(data.urls.websocket));
    call.greeted = false;
    call.ws = ws;
    call.version = -1;
    call.refusal = null;
    ws.onmessage = (event) => {
      if (call.ws !== ws) {
        return;
      }
      let message;
      try {
        message = JSON.parse(event.data);
      } catch (error) {
        return;
      }
      if (message && typeof message.type === "string") {
        onMessage(message);
      }
    };
    ws.onclose = (event) => {
      if (call.ws !== ws) {
        return;
      }
      call.ws = null;
      onClosed(event.code);
    };
  }

  function onMessage(message) {
    switch (message.type) {
      case "hello":
        call.hello = message;
        call.greeted = true;
        call.hops = 0;
        clock.sync(message.now);
        newPeer(message.ice_servers);
        applyState(message.room || {});
        if (isEvaluator) {
          receiveNotes(message.notes);
        }
        startPing();
        break;
      case "state":
        applyState(message);
        break;
      case "offer":
        onOffer(message.sdp);
        break;
      case "notes_saved":
        onNotesSaved(message);
        break;
      case "pong":
        window.clearTimeout(call.pongTimer);
        break;
      case "error":
        onError(message);
        break;
      case "replaced":
        call.refusal = { code: "replaced" };
        break;
      case "notice":
        onNotice(message);
        break;
      default:
        break; // a newer server's message: ignored, as the protocol asks
    }
  }

  // The servers from the hello; "relay" only when the page says so (a dev-mode test switch).
  function rtcConfiguration(iceServers) {
    return {
      iceServers: iceServers || [],
      iceTransportPolicy: data.ice_transport_policy === "relay" ? "relay" : "all",
    };
  }

  function newPeer(iceServers) {
    closePeer();
    const pc = new RTCPeerConnection(rtcConfiguration(iceServers));
    call.pc = pc;
    const remote = new MediaStream();
    call.remote = remote;
    const video = el("remote-video");
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
    applySpeaker(video);
  }

  async function onOffer(sdp) {
    const pc = call.pc;
    if (!pc || typeof sdp !== "string") {
      return;
    }
    try {
      const answer = await answerOffer(pc, sdp);
      if (call.pc !== pc) {
        return;
      }
      send({ type: "answer", sdp: answer });
      call.trickle.answered();
    } catch (error) {
      restart();
    }
  }

  function playRemote() {
    const video = el("remote-video");
    const playing = video.play();
    if (playing && playing.catch) {
      playing.catch((error) => {
        if (!error || error.name !== "NotAllowedError") {
          return; // interrupted by a newer source, not refused
        }
        // Sound without a click first: the browser refuses; play muted and offer the sound.
        video.muted = true;
        video.play().catch(() => {});
        el("sound-on").hidden = false;
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
    const video = el("remote-video");
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

  function restart() {
    const ws = call.ws;
    call.ws = null;
    if (ws) {
      ws.close(1000, "reconnect");
    }
    closePeer();
    stopPing();
    if (!call.stopped) {
      scheduleReconnect();
    }
  }

  function startPing() {
    stopPing();
    call.pingTimer = window.setInterval(() => {
      if (send({ type: "ping" })) {
        window.clearTimeout(call.pongTimer);
        // No answer within 10 s: the server or the network is gone; start again.
        call.pongTimer = window.setTimeout(restart, 10000);
      }
    }, 15000);
  }

  function stopPing() {
    window.clearInterval(call.pingTimer);
    window.clearTimeout(call.pongTimer);
  }

  function onClosed(code) {
    stopPing();
    closePeer();
    const refusal = call.refusal || {};
    if (call.stopped) {
      return;
    }
    if (!call.greeted) {
      call.target = null; // the address we were sent to did not answer: start over at ours
    }
    if ((code === 4307 || refusal.code === "elsewhere") && call.hops < 3) {
      // The room is held by another process: go there at once (a few hops at most). No
      // address: this process lost the room's lease; start over at ours, which sends us on.
      call.target = refusal.url || null;
      call.hops += 1;
      connect();
    } else if (code === 4409 || refusal.code === "replaced") {
      over(t("replaced"), "join", t("use_here"), true);
    } else if (refusal.code === "missed") {
      over(t("missed"), null, null, true);
    } else if (code === 4000 || (refusal.code === "ended" && !isEvaluator)) {
      over(t("ended_candidate"), null, null, true);
    } else if (code === 4001 || refusal.code === "cancelled") {
      over(t("cancelled") + " " + t("cancelled_hint"), null, null, true);
      showCancelled();
    } else if (code === 4002 || refusal.code === "moved") {
      onMoved();
    } else if (code === 4404 || code === 4403 || ["not_found", "revoked"].includes(refusal.code)) {
      over(t("not_found"), null, null, true);
    } else if (code === 4410 || refusal.code === "too_late") {
      over(t("room_closed"), null, null, true);
    } else if (code === 1000) {
      over(t("left"), "join", t("rejoin"), true);
    } else if (code === 1008 || code === 1009) {
      over(t("policy"), "reload", t("reload"), false);
    } else if (code === 4425 || refusal.code === "too_early") {
      const opensAt = Date.parse(refusal.opens_at || data.opens_at);
      if (refusal.now) {
        clock.sync(refusal.now);
      }
      setConnection("idle");
      setMessage(t("too_early", { time: formatTime(opensAt) }));
      call.retryTimer = window.setTimeout(connect, Math.max(1000, opensAt - clock.now() + 500));
    } else {
      scheduleReconnect();
    }
  }

  // The interview moved: the page reloads to show its new time and, if the room is open
  // then, joins again by itself (the joined flag stays). A reload would lose notes not
  // saved yet: then the evaluator reloads when ready.
  function onMoved() {
    store(window.sessionStorage, movedKey, "1");
    const notes = el("notes");
    if (isEvaluator && notes && notes.value !== (call.notes.sent || "")) {
      over(t("moved_unsaved"), "reload", t("reload"), true);
      return;
    }
    call.stopped = true;
    window.location.reload();
  }

  // 1 s, 2 s, 4 s… up to 15 s (docs/rooms.md, close codes 1001, 1006, 1011).
  function scheduleReconnect() {
    call.hops = 0;
    const delays = [1, 2, 4, 8, 15];
    let seconds = delays[Math.min(call.attempt, delays.length - 1)];
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
    if (call.joined && !call.stopped && !call.ws) {
      connect();
    }
  });

  // The call stops for good (until the participant chooses otherwise).
  function over(text, action, label, releaseMedia) {
    call.stopped = true;
    window.clearTimeout(call.retryTimer);
    window.clearInterval(call.retryTick);
    window.clearInterval(call.timerTick);
    stopPing();
    closePeer();
    if (call.ws) {
      const ws = call.ws;
      call.ws = null;
      ws.close(1000);
    }
    setConnection("idle");
    store(window.sessionStorage, joinedKey, null);
    if (releaseMedia) {
      setTrack("video", null);
      setTrack("audio", null);
      const start = $("devcheck-start");
      if (start) {
        start.hidden = false;
      }
    }
    el("call-stage").hidden = true;
    el("call-over-text").textContent = text;
    const button = el("call-over-action");
    button.hidden = !action;
    if (action) {
      button.dataset.action = action;
      button.textContent = label;
    }
    el("call-over").hidden = false;
    setMessage("");
    el("call").dataset.phase = "over";
    el("call-over-text").focus(); // read out, and the keyboard stays in the call's area
    if (isEvaluator && el("notes")) {
      flushNotes();
    }
  }

  function leave() {
    call.leaving = true;
    if (isEvaluator) {
      flushNotes();
    }
    send({ type: "leave" });
    over(t("left"), "join", t("rejoin"), true);
  }

  // --- the room's state ----------------------------------------------------------------------

  function applyState(room) {
    if (typeof room.version === "number") {
      if (room.version < call.version) {
        return; // overtaken on the wire by a newer one
      }
      call.version = room.version;
    }
    if (room.now) {
      clock.sync(room.now);
    }
    const previous = call.room;
    call.room = room;
    const present = room.present || {};
    const otherHere = Boolean(present[otherRole]);
    const name = data.other_name;
    let message = "";
    if (room.phase === "lobby") {
      if (isEvaluator) {
        message = otherHere
          ? t("lobby_evaluator_waiting", { name: name })
          : t("lobby_evaluator_alone");
      } else {
        message = otherHere ? t("lobby_candidate") : t("lobby_candidate_alone");
      }
    } else if (room.phase === "admitted") {
      if (!otherHere) {
        message = isEvaluator
          ? t("other_gone_evaluator", { name: name })
          : t("other_gone_candidate");
      } else if (isEvaluator) {
        message = t("admitted_evaluator", { name: name });
      } else if (room.step === "id_check" && !room.id_checked_at) {
        message = t("admitted_candidate") + " " + t("show_id");
      } else {
        message = t("admitted_candidate");
      }
    } else if (room.phase === "ended") {
      message = isEvaluator
        ? t("ended_evaluator", { time: formatTime(Date.parse(data.closes_at)) })
        : t("ended_candidate");
    }
    if (!hasMedia() && room.phase !== "ended") {
      message += " " + t("no_media");
    }
    el("call").dataset.phase = room.phase || "";
    el("call").dataset.other = String(otherHere);
    el("rec-badge").hidden = !room.recording;
    setMessage(message);
    updateRemote();
    if (
      room.step &&
      previous &&
      previous.step !== room.step &&
      room.phase === "admitted"
    ) {
      announce(t("step_now", { step: (S.steps || {})[room.step] || room.step }));
    }
    if (isEvaluator) {
      updatePanel(room);
    } else {
      updateGuide(room);
    }
  }

  function updateRemote() {
    const box = el("remote-box");
    if (!box) {
      return;
    }
    const room = call.room || {};
    const live =
      Boolean(call.pc) && room.phase === "admitted" && Boolean((room.present || {})[otherRole]);
    box.dataset.live = String(live);
    const empty = el("remote-empty");
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

  function markSteps(list, current) {
    if (!list) {
      return;
    }
    list.querySelectorAll("[data-step]").forEach((node) => {
      if (node.tagName === "LI") {
        node.classList.toggle("rm-step--current", node.dataset.step === current);
      }
    });
    list.querySelectorAll("li[data-step]").forEach((node) => {
      const target = node.querySelector("button") || node;
      if (node.dataset.step === current) {
        target.setAttribute("aria-current", "step");
      } else {
        target.removeAttribute("aria-current");
      }
    });
  }

  function updateGuide(room) {
    const hint = el("guide-id");
    if (room.phase === "admitted" && room.step === "id_check" && !room.id_checked_at) {
      hint.textContent = t("show_id");
      hint.dataset.attention = "true";
    } else if (room.id_checked_at) {
      hint.textContent = t("id_done");
      hint.dataset.attention = "false";
    }
    markSteps(el("guide-steps"), room.phase === "admitted" ? room.step : null);
  }

  // --- the evaluator's panel -------------------------------------------------------------------

  function initPanel() {
    el("admit").addEventListener("click", () => {
      if (send({ type: "admit" })) {
        el("admit").disabled = true;
      }
    });
    el("id-checked").addEventListener("change", (event) => {
      const box = event.target;
      if (!send({ type: "id_checked", checked: box.checked })) {
        box.checked = !box.checked;
      }
    });
    el("steps").querySelectorAll("button[data-step]").forEach((button) => {
      button.addEventListener("click", () => {
        send({ type: "step", step: button.dataset.step });
      });
    });
    const notes = el("notes");
    notes.addEventListener("input", () => {
      call.notes.dirty = true;
      window.clearTimeout(call.notes.timer);
      call.notes.timer = window.setTimeout(flushNotes, 800);
    });
    notes.addEventListener("blur", flushNotes);
    const dialog = el("end-dialog");
    el("end").addEventListener("click", () => {
      if (dialog && typeof dialog.showModal === "function") {
        dialog.showModal();
        el("end-cancel").focus();
      } else if (window.confirm(el("end-title").textContent)) {
        send({ type: "end", outcome: "completed" });
      }
    });
    if (dialog) {
      dialog.addEventListener("close", () => {
        if (dialog.returnValue === "end") {
          const chosen = dialog.querySelector("input[name=outcome]:checked");
          send({ type: "end", outcome: chosen ? chosen.value : "completed" });
        }
        dialog.returnValue = "";
        el("end").focus();
      });
    }
    call.timerTick = window.setInterval(updateTimer, 1000);
  }

  function receiveNotes(saved) {
    const notes = el("notes");
    if (call.notes.dirty) {
      flushNotes(); // typed while disconnected: this text wins
    } else if (typeof saved === "string") {
      notes.value = saved;
      call.notes.sent = saved;
    }
  }

  function flushNotes() {
    const notes = el("notes");
    window.clearTimeout(call.notes.timer);
    if (!notes || !call.notes.dirty || notes.value === call.notes.sent) {
      call.notes.dirty = false;
      return;
    }
    if (send({ type: "notes", text: notes.value })) {
      call.notes.sent = notes.value;
      call.notes.dirty = false;
      el("notes-status").textContent = t("notes_saving");
    } else {
      el("notes-status").textContent = t("notes_failed");
    }
  }

  function onNotesSaved(message) {
    const at = Date.parse(message.at);
    el("notes-status").textContent = t("notes_saved", {
      time: formatTime(Number.isNaN(at) ? clock.now() : at),
    });
  }

  function panelError(text) {
    const node = el("panel-error");
    node.textContent = text;
    node.hidden = !text;
  }

  function updatePanel(room) {
    panelError("");
    const admitted = room.phase === "admitted";
    const ended = room.phase === "ended";
    const here = Boolean((room.present || {}).candidate);
    el("admit-box").hidden = room.phase !== "lobby";
    el("admit").disabled = !(room.phase === "lobby" && here);
    el("admit-text").textContent = here
      ? t("lobby_evaluator_waiting", { name: data.other_name })
      : t("lobby_evaluator_alone");
    const box = el("id-checked");
    box.checked = Boolean(room.id_checked_at);
    box.disabled = !admitted || (Boolean(room.id_checked_at) && room.step !== "id_check");
    el("id-checked-at").textContent = room.id_checked_at
      ? t("id_checked_at", { time: formatTime(Date.parse(room.id_checked_at)) })
      : "";
    el("steps").querySelectorAll("button[data-step]").forEach((button) => {
      const step = button.dataset.step;
      button.disabled = !admitted || (step !== "id_check" && !room.id_checked_at);
    });
    markSteps(el("steps"), admitted || ended ? room.step : null);
    el("end").hidden = ended;
    const outcome = el("panel-outcome");
    if (ended && room.outcome) {
      outcome.textContent = t("ended_outcome", { outcome: t("outcome_" + room.outcome) });
      outcome.hidden = false;
    } else {
      outcome.hidden = true;
    }
    updateTimer();
  }

  function updateTimer() {
    const room = call.room;
    const node = el("timer");
    if (!node || !room) {
      return;
    }
    const started = Date.parse(room.interview_started_at || "");
    if (Number.isNaN(started)) {
      node.textContent = clockText(0);
      return;
    }
    const stop = room.ended_at ? Date.parse(room.ended_at) : clock.now();
    const seconds = Math.max(0, (stop - started) / 1000);
    node.textContent = clockText(seconds);
    const target = ((data.interview || {}).target_minutes || 20) * 60;
    const over = seconds >= target;
    el("timer-box").dataset.over = String(over);
    el("timer-note").textContent = over ? t("over_time") : "";
    if (over && !call.overTime && !room.ended_at) {
      announce(t("over_time"));
    }
    call.overTime = over;
  }

  function onNotice(message) {
    if (message.code !== "no_show" || !isEvaluator) {
      return; // a newer server's notice: ignored
    }
    const text = t("no_show_evaluator", {
      name: data.other_name,
      time: formatTime(Date.parse(data.closes_at)),
    });
    const node = el("panel-notice");
    node.textContent = text;
    node.hidden = false;
    announce(text);
  }

  function onError(message) {
    const code = message.code;
    if (!message.about) {
      // A refusal; the close that follows says what to do.
      call.refusal = message;
      return;
    }
    if (!isEvaluator) {
      return;
    }
    const known = [
      "candidate_absent",
      "not_admitted",
      "id_not_checked",
      "interview_started",
      "ended",
      "internal",
    ];
    if (message.about === "notes") {
      el("notes-status").textContent = t("notes_failed");
      call.notes.dirty = true;
      call.notes.timer = window.setTimeout(flushNotes, 3000);
      return;
    }
    if (call.room) {
      updatePanel(call.room); // undo what the click showed: nothing changed
    }
    panelError(known.includes(code) ? t("err_" + code) : t("err_other", { message: message.message }));
  }

  // --- start ---------------------------------------------------------------------------------

  document.addEventListener("visibilitychange", () => {
    // After a laptop slept, the browser's elapsed time may lag: ask the server again.
    if (document.visibilityState === "visible" && data.window === "too_early") {
      refreshWindow();
    }
  });

  initDevcheck();
  initWindow();
  showMoved();
  initCall();
})();
