// Viva's room page (templates/rooms/room.html): the device check, the countdown to the room's
// window, and the call, speaking the room protocol of docs/rooms.md. Native ES modules, no
// framework, no build step, nothing from elsewhere. Every sentence comes from the page
// (#room-strings), in its language; the page's data from #room-data.

import { $ } from "./ui.js";
import { translator } from "./i18n.js";
import { serverClock } from "./clock.js";
import { timeFormatter, unitFormatter } from "./format.js";
import { store } from "./storage.js";
import { createMedia } from "./media.js";
import { createAudio } from "./audio.js";
import { createConnectionTest } from "./echo.js";
import { initDevcheck } from "./devcheck.js";
import { createWindow, movedKey } from "./window.js";
import { createCall } from "./call.js";
import { createAssessment } from "./assessment.js";

function start() {
  const dataNode = $("room-data");
  const stringsNode = $("room-strings");
  if (!dataNode || !stringsNode) {
    return;
  }
  const data = JSON.parse(dataNode.textContent);
  const strings = JSON.parse(stringsNode.textContent);
  const t = translator(strings);
  const clock = serverClock(data.now);
  const formatTime = timeFormatter(data.locale, data.timezone);
  const media = createMedia(t);
  const audio = createAudio(t, media);
  // The window and the call need each other (a call arrives with the window; a call that
  // learns of a cancellation tells the window): the window reaches the call, made after it,
  // through this holder.
  const late = { call: null };
  // The evaluator's assessment form, in the call's panel: wired when the call section is in
  // the page, now or when the window opens.
  const assessment = createAssessment({ data, t, formatTime, clock });
  const roomWindow = createWindow({
    data,
    t,
    clock,
    unit: unitFormatter(data.locale),
    onCallArrived: () => {
      late.call.init();
      assessment.init();
    },
    join: () => late.call.join(),
  });
  const showCancelled = () => roomWindow.showCancelled();
  late.call = createCall({
    data,
    t,
    clock,
    formatTime,
    media,
    audio,
    steps: strings.steps,
    showCancelled,
    markMoved: () => store(window.sessionStorage, movedKey(data), "1"),
  });
  initDevcheck({ t, media, audio, connectionTest: createConnectionTest({ data, t, media, showCancelled }) });
  roomWindow.init();
  roomWindow.showMoved();
  late.call.init();
  assessment.init();
  // A choice made in the last moments before the tab closes: sent while it still can be.
  window.addEventListener("pagehide", () => assessment.flush());
}

start();
