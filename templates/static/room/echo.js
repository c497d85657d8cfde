// The device check's connection test: a loopback peer on the server (/r/{token}/echo, see
// docs/rooms.md, "The connection test") sends the page's picture and sound straight back.

import { $, announce, setBusy, setCheck } from "./ui.js";
import { answerOffer, rtcConfiguration, trickler, wsUrl } from "./negotiation.js";

// Refusals before the hello, and the sentence each one gets.
const REFUSALS = { busy: "conn_busy", not_found: "not_found", revoked: "not_found" };

export function emptyOutcome() {
  return {
    unavailable: true,
    refused: null,
    cancelled: false,
    up: false,
    down: false,
    rtt: null,
    serverReceived: 0,
  };
}

/** Reads one getStats() report into `outcome`: what went up, what came back, the round trip. */
export function readStats(reports, outcome) {
  let sent = 0;
  let reported = false;
  let decoded = 0;
  let audioIn = 0;
  reports.forEach((report) => {
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
  return outcome;
}

/**
 * What the test's outcome shows: the connection row (`result`, `text`) and the result lines
 * (`lines`, each a text and whether it is good news). `cancelled` says the interview is gone.
 */
export function verdict(t, outcome) {
  if (outcome.cancelled) {
    return { result: "pending", text: t("conn_untested"), lines: [], cancelled: true };
  }
  if (outcome.unavailable) {
    const why = REFUSALS[outcome.refused] || "conn_unavailable";
    return { result: "pending", text: t("conn_untested"), lines: [{ text: t(why) }] };
  }
  const lines = [
    { text: t("conn_up", { result: outcome.up ? t("yes") : t("no") }), ok: outcome.up },
    { text: t("conn_down", { result: outcome.down ? t("yes") : t("no") }), ok: outcome.down },
  ];
  if (outcome.rtt !== null) {
    lines.push({ text: t("conn_rtt", { ms: Math.round(outcome.rtt * 1000) }) });
  }
  if (outcome.up && outcome.down) {
    return { result: "ok", text: t("conn_ok"), lines };
  }
  if (outcome.up || outcome.down) {
    return { result: "warn", text: t("conn_partial"), lines };
  }
  return { result: "failed", text: t("conn_failed"), lines };
}

/** One sentence for the whole result, read out at once: the row's name and text, then lines. */
export function summary(name, text, lines) {
  const end = (sentence) => (/[.!?…]$/.test(sentence) ? sentence : sentence + ".");
  return [end(name.trim() + ": " + text)].concat(lines.map((line) => end(line.text))).join(" ");
}

/**
 * The test's button handler. `page` gives the page's data, `t`, and `showCancelled`; the
 * button stays focused while the test runs (aria-disabled), and the result is announced once.
 */
export function createConnectionTest({ data, t, media, showCancelled }) {
  let running = false;

  function result(line) {
    const item = document.createElement("li");
    item.dataset.ok = line.ok === undefined ? "" : String(line.ok);
    item.textContent = line.text;
    $("conn-results").appendChild(item);
  }

  function report(shown) {
    setCheck("connection", shown.result, shown.text);
    shown.lines.forEach(result);
    const name = $("check-connection").querySelector(".rm-checks__name");
    announce(summary(name ? name.textContent : "", shown.text, shown.lines));
  }

  async function run() {
    if (running) {
      return;
    }
    running = true;
    const button = $("conn-test");
    setBusy(button, true);
    $("conn-results").replaceChildren();
    try {
      if (!media.hasMedia()) {
        await media.acquire();
      }
      if (!media.hasMedia()) {
        report({ result: "failed", text: t("failed"), lines: [{ text: t("conn_no_media") }] });
        return;
      }
      setCheck("connection", "running", t("conn_running"));
      const shown = verdict(t, await runEcho());
      if (shown.cancelled) {
        setCheck("connection", shown.result, shown.text);
        showCancelled();
        return;
      }
      report(shown);
    } finally {
      running = false;
      setBusy(button, false);
    }
  }

  function runEcho() {
    return new Promise((resolve) => {
      const outcome = emptyOutcome();
      const ws = new WebSocket(wsUrl(data.urls.echo, window.location));
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
          pc = new RTCPeerConnection(rtcConfiguration(message.ice_servers, data.ice_transport_policy));
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
            send({ type: "answer", sdp: await answerOffer(pc, message.sdp, media.track) });
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
    readStats(stats, outcome);
  }

  return { run };
}
