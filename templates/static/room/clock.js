// The server's clock. Times come from the server ("now" in the page and in every message) plus
// the time the browser saw pass since, never from the browser's own clock, which may be wrong.

/** A clock set from the server's ISO time; `monotonic` is performance.now (a fake in tests). */
export function serverClock(iso, monotonic = () => performance.now()) {
  return {
    base: Date.parse(iso),
    at: monotonic(),
    sync(value) {
      const parsed = Date.parse(value);
      if (!Number.isNaN(parsed)) {
        this.base = parsed;
        this.at = monotonic();
      }
    },
    now() {
      return this.base + (monotonic() - this.at);
    },
  };
}
