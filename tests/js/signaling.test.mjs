// The room's WebSocket client (signaling.js) against an in-memory socket: messages in and
// out, the keepalive, and exactly one close report, never for a socket the page closed.
import { afterEach, beforeEach, mock, test } from "node:test";
import assert from "node:assert/strict";

import { openSignal } from "../../templates/static/room/signaling.js";

class FakeSocket {
  static OPEN = 1;
  static opened = [];
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    this.closed = null;
    FakeSocket.opened.push(this);
  }
  send(text) {
    this.sent.push(JSON.parse(text));
  }
  close(code, reason) {
    this.closed = [code, reason];
    this.readyState = 3;
    this.onclose({ code: code || 1005 });
  }
  // The server's side.
  open() {
    this.readyState = FakeSocket.OPEN;
  }
  receive(data) {
    this.onmessage({ data: typeof data === "string" ? data : JSON.stringify(data) });
  }
  drop(code) {
    this.readyState = 3;
    this.onclose({ code });
  }
}

let heard;
function open() {
  heard = { messages: [], closes: [], silences: 0 };
  const signal = openSignal("ws://viva.test/r/x/ws", {
    onMessage: (message) => heard.messages.push(message),
    onClose: (code) => heard.closes.push(code),
    onSilence: () => (heard.silences += 1),
  });
  const socket = FakeSocket.opened.at(-1);
  socket.open();
  return { signal, socket };
}

beforeEach(() => {
  globalThis.window = globalThis;
  globalThis.WebSocket = FakeSocket;
  mock.timers.enable({ apis: ["setInterval", "setTimeout"] });
});

afterEach(() => {
  mock.timers.reset();
  delete globalThis.WebSocket;
});

test("messages with a type are handed on; anything else is dropped", () => {
  const { socket } = open();
  assert.equal(socket.url, "ws://viva.test/r/x/ws");
  socket.receive({ type: "hello", now: "2026-12-01T08:00:00Z" });
  socket.receive("not json");
  socket.receive({ no: "type" });
  socket.receive("null");
  socket.receive({ type: "future_message" });
  assert.deepEqual(
    heard.messages.map((m) => m.type),
    ["hello", "future_message"]
  );
});

test("send says whether the message went out", () => {
  const { signal, socket } = open();
  assert.equal(signal.send({ type: "admit" }), true);
  assert.deepEqual(socket.sent, [{ type: "admit" }]);
  socket.readyState = 2; // closing
  assert.equal(signal.send({ type: "leave" }), false);
});

test("a dropped connection is reported once; one the page closed is not reported", () => {
  const dropped = open();
  dropped.socket.drop(1006);
  dropped.socket.drop(1006);
  assert.deepEqual(heard.closes, [1006]);
  assert.equal(dropped.signal.send({ type: "ping" }), false);

  const closed = open();
  closed.signal.close(1000, "reconnect");
  assert.deepEqual(closed.socket.closed, [1000, "reconnect"]);
  assert.deepEqual(heard.closes, []);
  closed.socket.receive({ type: "state" }); // a late message from a socket left behind
  assert.deepEqual(heard.messages, []);
});

test("a ping every 15 s; no pong within 10 s is silence; a pong in time is not", () => {
  const { signal, socket } = open();
  signal.keepalive();
  mock.timers.tick(14999);
  assert.deepEqual(socket.sent, []);
  mock.timers.tick(1);
  assert.deepEqual(socket.sent, [{ type: "ping" }]);
  socket.receive({ type: "pong" });
  mock.timers.tick(10000);
  assert.equal(heard.silences, 0);
  mock.timers.tick(5000); // the second ping, left unanswered
  assert.equal(socket.sent.length, 2);
  mock.timers.tick(9999);
  assert.equal(heard.silences, 0);
  mock.timers.tick(1);
  assert.equal(heard.silences, 1);
  assert.deepEqual(
    heard.messages.map((m) => m.type),
    ["pong"]
  );
});

test("the keepalive stops with the connection", () => {
  const { signal, socket } = open();
  signal.keepalive();
  mock.timers.tick(15000);
  socket.drop(1001);
  mock.timers.tick(60000);
  assert.equal(socket.sent.length, 1);
  assert.equal(heard.silences, 0);
});
