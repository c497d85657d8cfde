// WebRTC negotiation, shared by the call and the connection test. The server offers (one
// sendrecv audio and one sendrecv video transceiver); the page puts its tracks on the offered
// transceivers and answers at once (docs/rooms.md).

/** Answers the server's offer with the page's tracks (`track(kind)`) on its transceivers. */
export async function answerOffer(pc, sdp, track) {
  await pc.setRemoteDescription({ type: "offer", sdp: sdp });
  for (const transceiver of pc.getTransceivers()) {
    const kind = transceiver.receiver.track && transceiver.receiver.track.kind;
    await transceiver.sender.replaceTrack(kind ? track(kind) : null);
    transceiver.direction = "sendrecv";
  }
  await pc.setLocalDescription(await pc.createAnswer());
  return pc.localDescription.sdp;
}

/** The `candidate` message for an ICE candidate; `null` (the end of candidates) as such. */
export function candidateMessage(candidate) {
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

/**
 * Candidates gathered before the answer went out wait for it (the server refuses them before
 * the answer); the end of candidates is sent once, and nothing after it.
 */
export function trickler(send) {
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

/** The servers from the hello; "relay" only when the page says so (a dev-mode test switch). */
export function rtcConfiguration(iceServers, policy) {
  return {
    iceServers: iceServers || [],
    iceTransportPolicy: policy === "relay" ? "relay" : "all",
  };
}

/** The WebSocket URL of a path on the page's own origin (wss: under https:). */
export function wsUrl(path, location) {
  const url = new URL(path, location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}
