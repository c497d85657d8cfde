// The room's WebSocket client: JSON messages in and out, a keepalive, and one close report.
// A socket the page closed itself, or replaced, reports nothing more: its late events cannot
// touch the call that followed it.

const PING_EVERY_MS = 15000;
// No pong within this: the server or the network is gone.
const PONG_WITHIN_MS = 10000;

/**
 * Opens `url`. `onMessage(message)` hears each message that has a type; `onClose(code)` hears
 * the close the page did not ask for; `onSilence()` hears a ping left without an answer.
 */
export function openSignal(url, { onMessage, onClose, onSilence }) {
  const ws = new WebSocket(url);
  let live = true;
  let pingTimer = 0;
  let pongTimer = 0;

  function stopPing() {
    window.clearInterval(pingTimer);
    window.clearTimeout(pongTimer);
  }

  ws.onmessage = (event) => {
    if (!live) {
      return;
    }
    let message;
    try {
      message = JSON.parse(event.data);
    } catch (error) {
      return;
    }
    if (message && typeof message.type === "string") {
      if (message.type === "pong") {
        window.clearTimeout(pongTimer);
      }
      onMessage(message);
    }
  };
  ws.onclose = (event) => {
    if (!live) {
      return;
    }
    live = false;
    stopPing();
    onClose(event.code);
  };

  const signal = {
    send(message) {
      if (live && ws.readyState === WebSocket.OPEN) {
        ws.send(JSON.stringify(message));
        return true;
      }
      return false;
    },
    /** Pings every 15 s once the server said hello. */
    keepalive() {
      stopPing();
      pingTimer = window.setInterval(() => {
        if (signal.send({ type: "ping" })) {
          window.clearTimeout(pongTimer);
          pongTimer = window.setTimeout(() => {
            if (live) {
              onSilence();
            }
          }, PONG_WITHIN_MS);
        }
      }, PING_EVERY_MS);
    },
    /** Closed by the page: no close report follows. */
    close(code, reason) {
      live = false;
      stopPing();
      ws.close(code, reason);
    },
  };
  return signal;
}
