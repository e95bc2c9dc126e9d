/* The data-entry page (/erfassung/): focus on the error summary, links that
   focus the field they name, and a warning before typed figures are lost.
   A file of its own because the Content-Security-Policy forbids inline script. */
(function () {
  "use strict";

  var LEAVE_QUESTION = "Ihre Eingaben sind noch nicht gespeichert. " +
    "Wenn Sie Kommune oder Quartal wechseln, gehen sie verloren. Trotzdem wechseln?";

  document.addEventListener("DOMContentLoaded", function () {
    // After a failed save the summary says what to fix; start reading there.
    var summary = document.getElementById("error-summary");
    if (summary) {
      summary.focus();
    }
  });

  // Links to a field (error summary, plausibility messages) move the focus into
  // it, not only the view, so typing can start at once.
  document.addEventListener("click", function (event) {
    var link = event.target instanceof Element ? event.target.closest('a[href^="#"]') : null;
    if (!link) {
      return;
    }
    var target = document.getElementById(decodeURIComponent(link.getAttribute("href").slice(1)));
    if (!target || !(target.matches("input, select, textarea, [tabindex]"))) {
      return;
    }
    event.preventDefault();
    target.scrollIntoView({block: "center", inline: "center"});
    target.focus({preventScroll: true});
  });

  var form = document.getElementById("entry-form");
  if (!form) {
    return;
  }

  function snapshot() {
    return new URLSearchParams(new FormData(form)).toString();
  }

  var saved = snapshot();
  var leaving = false;

  function unsaved() {
    return !leaving && snapshot() !== saved;
  }

  // Saving or submitting is the way out that keeps the input.
  form.addEventListener("submit", function () {
    leaving = true;
  });

  window.addEventListener("beforeunload", function (event) {
    if (unsaved()) {
      event.preventDefault();
      event.returnValue = "";
    }
  });

  // Switching municipality or quarter asks in German; one question, not two.
  var switcher = document.getElementById("entry-switch");
  if (switcher) {
    switcher.addEventListener("submit", function (event) {
      if (!unsaved()) {
        return;
      }
      if (window.confirm(LEAVE_QUESTION)) {
        leaving = true;
      } else {
        event.preventDefault();
      }
    });
  }

  // The value an equality rule expects (the continued stock beside "Aktive Fälle"),
  // recomputed while typing: a plain sum of the previous quarter and typed inputs.
  function number(text) {
    var value = (text || "").trim();
    if (/^\d{1,3}(\.\d{3})+(,\d+)?$/.test(value)) {
      value = value.replace(/\./g, "");  // 1.234,5
    }
    if (!/^\d+([.,]\d+)?$/.test(value)) {
      return NaN;
    }
    return parseFloat(value.replace(",", "."));
  }

  function expectations() {
    form.querySelectorAll("[data-expect-terms]").forEach(function (note) {
      var sum = parseFloat(note.getAttribute("data-expect-base"));
      note.getAttribute("data-expect-terms").trim().split(/\s+/).forEach(function (term) {
        var input = document.getElementById(term.slice(1));
        var value = input ? number(input.value) : NaN;
        sum += term.charAt(0) === "-" ? -value : value;
      });
      var places = parseInt(note.getAttribute("data-places"), 10) || 0;
      if (isNaN(sum)) {
        note.hidden = true;
        note.textContent = "";
      } else {
        note.hidden = false;
        note.textContent = "Erwartet: " + sum.toLocaleString("de-DE", {
          minimumFractionDigits: places, maximumFractionDigits: places
        });
      }
    });
  }

  form.addEventListener("input", expectations);
  expectations();

  // Coming back through the browser's history shows the page as it was left.
  window.addEventListener("pageshow", function (event) {
    if (event.persisted) {
      leaving = false;
    }
  });
})();
