// Small DOM helpers every part of the page shares: look-ups, announcements for screen readers,
// the device check's result rows, and buttons that stay focusable while they are busy.

export const $ = (id) => document.getElementById(id);

/** Says `text` once through the page's atomic live region (#announcer). */
export function announce(text) {
  const node = $("announcer");
  if (!node || !text) {
    return;
  }
  // Emptied first, so that the same sentence twice is read twice.
  node.textContent = "";
  window.setTimeout(() => {
    node.textContent = text;
  }, 60);
}

/** One row of the device check's results: `result` is pending, running, ok, warn or failed. */
export function setCheck(name, result, text) {
  const item = $("check-" + name);
  if (!item) {
    return;
  }
  item.dataset.result = result;
  $("check-" + name + "-text").textContent = text;
}

export function showProblems(list) {
  const box = $("device-problems");
  if (!box) {
    return;
  }
  box.replaceChildren();
  list.filter(Boolean).forEach((text) => {
    const p = document.createElement("p");
    p.className = "notice notice--warning";
    p.textContent = text;
    box.appendChild(p);
  });
}

// A disabled button loses the keyboard's focus (the browser moves it to the page's start).
// A busy button is aria-disabled instead: it keeps the focus, says it is unavailable, and its
// click handler, wrapped by `whenEnabled`, does nothing meanwhile.

export function setBusy(button, busy) {
  if (!button) {
    return;
  }
  if (busy) {
    button.setAttribute("aria-disabled", "true");
  } else {
    button.removeAttribute("aria-disabled");
  }
}

export function isBusy(button) {
  return Boolean(button) && button.getAttribute("aria-disabled") === "true";
}

/** A click handler that ignores clicks on an aria-disabled button. */
export function whenEnabled(button, handler) {
  return (event) => {
    if (isBusy(button)) {
      event.preventDefault();
      return;
    }
    handler(event);
  };
}

/** Shows `stream` in a video element (once), and plays it. */
export function attach(element, stream) {
  if (!element) {
    return;
  }
  if (element.srcObject !== stream) {
    element.srcObject = stream;
  }
  element.play().catch(() => {});
}
