// Negotiation shared by the call and the connection test (negotiation.js): ICE candidates
// wait for the answer, the end of candidates goes once, the offer is answered with our tracks.
import { test } from "node:test";
import assert from "node:assert/strict";

import {
  answerOffer,
  candidateMessage,
  rtcConfiguration,
  trickler,
  wsUrl,
} from "../../templates/static/room/negotiation.js";

const ice = (n) => ({ candidate: "candidate:" + n, sdpMid: "0", sdpMLineIndex: 0 });

test("a candidate message carries the candidate, and null for the end of candidates", () => {
  assert.deepEqual(candidateMessage(ice(1)), {
    type: "candidate",
    candidate: "candidate:1",
    sdpMid: "0",
    sdpMLineIndex: 0,
  });
  assert.deepEqual(candidateMessage(null), { type: "candidate", candidate: null });
  assert.deepEqual(candidateMessage({ candidate: "" }), { type: "candidate", candidate: null });
});

test("candidates wait for the answer, then go in order; nothing follows the end", () => {
  const sent = [];
  const trickle = trickler((message) => sent.push(message.candidate));
  trickle.add(ice(1));
  trickle.add(ice(2));
  assert.deepEqual(sent, []);
  trickle.answered();
  assert.deepEqual(sent, ["candidate:1", "candidate:2"]);
  trickle.add(ice(3));
  trickle.add(null);
  trickle.add(null);
  trickle.add(ice(4));
  assert.deepEqual(sent, ["candidate:1", "candidate:2", "candidate:3", null]);
});

test("relay only when the page asks for it", () => {
  assert.deepEqual(rtcConfiguration(undefined, undefined), { iceServers: [], iceTransportPolicy: "all" });
  const servers = [{ urls: "turn:turn.example:3478" }];
  assert.deepEqual(rtcConfiguration(servers, "relay"), { iceServers: servers, iceTransportPolicy: "relay" });
  assert.equal(rtcConfiguration(servers, "anything").iceTransportPolicy, "all");
});

test("the WebSocket is on the page's own origin, wss under https", () => {
  const page = (href) => ({ href, protocol: new URL(href).protocol });
  assert.equal(wsUrl("/r/abc/ws", page("https://viva.example/r/abc")), "wss://viva.example/r/abc/ws");
  assert.equal(wsUrl("/r/abc/echo", page("http://127.0.0.1:8080/r/abc")), "ws://127.0.0.1:8080/r/abc/echo");
});

test("the offer is answered with our track on each offered transceiver, both ways", async () => {
  const calls = [];
  const transceiver = (kind) => ({
    receiver: { track: kind ? { kind } : null },
    direction: "recvonly",
    sender: { replaceTrack: async (track) => calls.push([kind, track]) },
  });
  const transceivers = [transceiver("audio"), transceiver("video"), transceiver(null)];
  const pc = {
    localDescription: null,
    async setRemoteDescription(description) {
      calls.push(["remote", description]);
    },
    getTransceivers: () => transceivers,
    createAnswer: async () => ({ type: "answer", sdp: "v=0 answer" }),
    async setLocalDescription(description) {
      this.localDescription = description;
    },
  };
  const sdp = await answerOffer(pc, "v=0 offer", (kind) => "our " + kind);
  assert.equal(sdp, "v=0 answer");
  assert.deepEqual(calls, [
    ["remote", { type: "offer", sdp: "v=0 offer" }],
    ["audio", "our audio"],
    ["video", "our video"],
    [null, null],
  ]);
  assert.deepEqual(
    transceivers.map((item) => item.direction),
    ["sendrecv", "sendrecv", "sendrecv"]
  );
});
