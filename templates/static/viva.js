// Viva candidate pages: enhancements only. Every page works, and books, without this file.
(function () {
  "use strict";

  // Offer the browser's time zone when the URL did not choose one and it differs from the
  // zone the page is shown in. An offer, not a redirect: the candidate stays in control.
  function offerBrowserZone() {
    var offer = document.querySelector("[data-tz-offer]");
    if (!offer || !window.Intl || !window.URL) {
      return;
    }
    var zone;
    try {
      zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    } catch (error) {
      return;
    }
    var current = offer.getAttribute("data-tz-current");
    if (!zone || zone === current || (zone === "Etc/UTC" && current === "UTC")) {
      return;
    }
    var url = new URL(window.location.href);
    url.searchParams.set("tz", zone);
    ["booked", "changed", "cancelled"].forEach(function (flag) {
      url.searchParams.delete(flag);
    });
    offer.querySelector("[data-tz-name]").textContent = zone;
    offer.querySelector("[data-tz-link]").setAttribute("href", url.pathname + url.search);
    offer.hidden = false;
  }

  // A second click on "Confirm" while the first request travels would only earn a
  // "you already have an interview" page; ignore it.
  function submitOnce() {
    var forms = document.querySelectorAll("form[data-submit-once]");
    Array.prototype.forEach.call(forms, function (form) {
      form.addEventListener("submit", function (event) {
        if (form.getAttribute("data-submitted")) {
          event.preventDefault();
          return;
        }
        form.setAttribute("data-submitted", "true");
        var button = form.querySelector("button[type=submit]");
        if (button) {
          button.setAttribute("aria-disabled", "true");
        }
      });
    });
  }

  offerBrowserZone();
  submitOnce();
})();
