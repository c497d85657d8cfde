// Web Audio for the device check: the microphone's level meter and the speakers' test tone
// (generated: no sound file). Nothing measured is ever played back, so there is no echo.

import { $, setCheck } from "./ui.js";

/** -60 dBFS (silence) .. 0 dBFS (loudest) onto 0..100, falling back slowly like a VU meter. */
export function meterLevel(samples, previous) {
  let sum = 0;
  for (let i = 0; i < samples.length; i += 1) {
    sum += samples[i] * samples[i];
  }
  const rms = Math.sqrt(sum / samples.length);
  const db = 20 * Math.log10(rms || 1e-9);
  const level = Math.max(0, Math.min(100, ((db + 60) * 100) / 60));
  return { level, shown: Math.max(level, previous * 0.85) };
}

export function createAudio(t, media) {
  const meter = { ctx: null, analyser: null, source: null, samples: null, timer: 0, level: 0 };
  let heard = false;
  let toneElement = null;

  // Created (or resumed) inside a click: browsers start audio only after a gesture.
  function context() {
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
    heard = false;
    const ctx = context();
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
    const { level, shown } = meterLevel(meter.samples, meter.level);
    meter.level = shown;
    element.value = Math.round(meter.level);
    element.textContent = String(Math.round(meter.level));
    const audio = media.track("audio");
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

  async function playTone() {
    const status = $("speaker-status");
    const ctx = context();
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
    if (media.speakerSelectable && media.wanted.speaker) {
      // Through an <audio> element, whose output device can be chosen.
      const destination = ctx.createMediaStreamDestination();
      gain.connect(destination);
      toneElement = toneElement || new Audio();
      toneElement.srcObject = destination.stream;
      chosenSpeaker = await media.applySpeaker(toneElement);
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

  return { context, listen, playTone };
}
