// Times and durations as the page shows them, in the page's locale and the participant's time
// zone. Pure: Node's Intl runs them in the unit tests.

/** "4:05" or "1:04:05": the interview's timer and the last minutes of a countdown. */
export function clockText(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, "0");
  return h > 0 ? h + ":" + String(m).padStart(2, "0") + ":" + rest : m + ":" + rest;
}

/** "3 days 4 hours", "2 hours 5 minutes", then the clock: precise only when it matters. */
export function countdownText(ms, unit) {
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

/** `unit(2, "hour")` → "2 hours" in the locale; an old browser without units gets "2 hour". */
export function unitFormatter(locale) {
  return function unit(value, name) {
    try {
      return new Intl.NumberFormat(locale, {
        style: "unit",
        unit: name,
        unitDisplay: "long",
      }).format(value);
    } catch (error) {
      return value + " " + name;
    }
  };
}

/** `formatTime(ms)` → "14:30" in the participant's zone (the browser's, if it is unknown). */
export function timeFormatter(locale, timeZone) {
  let format = null;
  return function formatTime(ms) {
    if (!format) {
      try {
        format = new Intl.DateTimeFormat(locale, { hour: "numeric", minute: "2-digit", timeZone });
      } catch (error) {
        format = new Intl.DateTimeFormat(locale, { hour: "numeric", minute: "2-digit" });
      }
    }
    return format.format(new Date(ms));
  };
}
