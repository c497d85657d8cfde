// The participant's camera, microphone and speakers: one MediaStream shared by the device
// check, the connection test and the call. Listeners hear of every track that comes or goes.

import { $, setCheck, showProblems } from "./ui.js";
import { recall, store } from "./storage.js";

const DEVICES_KEY = "viva.room.devices";

/** Why a device could not start, in a sentence that says what to do. */
export function explain(t, device, error) {
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

/** The devices a participant chose last time, or the defaults when nothing (valid) is saved. */
export function savedChoice(text) {
  const wanted = { camera: "", mic: "", speaker: "" };
  try {
    const saved = JSON.parse(text || "{}");
    ["camera", "mic", "speaker"].forEach((name) => {
      if (typeof saved[name] === "string") {
        wanted[name] = saved[name];
      }
    });
  } catch (error) {
    // A damaged saved choice: start from the defaults.
  }
  return wanted;
}

export function createMedia(t) {
  const media = {
    stream: new MediaStream(),
    wanted: savedChoice(recall(window.localStorage, DEVICES_KEY)),
    problems: { camera: null, mic: null },
    off: { audio: false, video: false },
    listeners: [],
    // Told after each attempt to start the devices, whoever asked (the check, a join, a test).
    acquired: [],
    speakerSelectable:
      typeof HTMLMediaElement !== "undefined" && "setSinkId" in HTMLMediaElement.prototype,
  };
  let acquiring = null;

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

  // Camera and microphone together (one permission prompt); when that fails, each alone, so
  // that each device's own problem can be explained. Resolves to whether any media runs.
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
        media.problems.camera = explain(t, "camera", error);
        setCheck("camera", "failed", t("failed"));
      }
    }
    if (!audio) {
      try {
        setTrack("audio", await open("audio"));
      } catch (error) {
        media.problems.mic = explain(t, "mic", error);
        setCheck("mic", "failed", t("failed"));
      }
    }
    showProblems([media.problems.camera, media.problems.mic]);
    media.acquired.forEach((listener) => listener(media.problems));
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

  async function refreshDevices() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) {
      return;
    }
    let devices;
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
    if (media.speakerSelectable) {
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
    store(window.localStorage, DEVICES_KEY, JSON.stringify(media.wanted));
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
      media.problems[name] = explain(t, name, error);
      setCheck(name, "failed", t("failed"));
    }
    showProblems([media.problems.camera, media.problems.mic]);
    await refreshDevices();
  }

  async function applySpeaker(element) {
    if (!media.speakerSelectable || !element || !media.wanted.speaker) {
      return true;
    }
    try {
      await element.setSinkId(media.wanted.speaker);
      return true;
    } catch (error) {
      return false;
    }
  }

  return Object.assign(media, {
    track,
    hasMedia,
    acquire,
    setTrack,
    refreshDevices,
    remember,
    switchDevice,
    applySpeaker,
  });
}
