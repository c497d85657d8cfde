// The device check's wiring: the preview, the results, the pickers, the tone and the
// connection test. It runs whatever the room's window, before and during the call.

import { $, attach, setBusy, setCheck, whenEnabled } from "./ui.js";

export function initDevcheck({ t, media, audio, connectionTest }) {
  const preview = $("preview");
  const start = $("devcheck-start");
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
      audio.listen(next);
    }
  });
  // After each attempt the button offers to try again, or goes once both devices run. A
  // focused button stays (aria-disabled) until the keyboard leaves it, so focus is not lost.
  media.acquired.push((problems) => {
    start.textContent = t("try_again");
    const failed = Boolean(problems.camera || problems.mic);
    setBusy(start, !failed);
    start.hidden = !failed && document.activeElement !== start;
  });
  start.addEventListener("blur", () => {
    if (start.getAttribute("aria-disabled") === "true") {
      start.hidden = true;
    }
  });
  const cameraWorks = () => {
    if (preview.videoWidth > 0 && media.track("video")) {
      setCheck("camera", "ok", t("camera_ok"));
    }
  };
  preview.addEventListener("resize", cameraWorks);
  preview.addEventListener("loadeddata", cameraWorks);
  start.addEventListener(
    "click",
    whenEnabled(start, () => {
      audio.context();
      setBusy(start, true);
      media.acquire();
    })
  );
  $("speaker-test").addEventListener("click", () => audio.playTone());
  const connTest = $("conn-test");
  connTest.addEventListener(
    "click",
    whenEnabled(connTest, () => {
      audio.context();
      connectionTest.run();
    })
  );
  $("pick-camera").addEventListener("change", (event) => {
    media.wanted.camera = event.target.value;
    media.remember();
    media.switchDevice("video");
  });
  $("pick-mic").addEventListener("change", (event) => {
    media.wanted.mic = event.target.value;
    media.remember();
    media.switchDevice("audio");
  });
  if (media.speakerSelectable) {
    $("pick-speaker").addEventListener("change", async (event) => {
      media.wanted.speaker = event.target.value;
      media.remember();
      const ok = await media.applySpeaker($("remote-video"));
      if (!ok) {
        $("speaker-status").textContent = t("speaker_failed");
      }
    });
  } else {
    $("speaker-field").hidden = true;
    $("speaker-hint").hidden = false;
  }
  if (navigator.mediaDevices && navigator.mediaDevices.addEventListener) {
    navigator.mediaDevices.addEventListener("devicechange", () => media.refreshDevices());
  }
}

/** After the call released the devices, the check can start them again. */
export function offerStart() {
  const start = $("devcheck-start");
  if (start) {
    setBusy(start, false);
    start.hidden = false;
  }
}
