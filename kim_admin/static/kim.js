/* KIM-Admin page behaviour, bound here instead of inline handlers so that the
   Content-Security-Policy can forbid inline script. */
(function () {
  "use strict";

  document.addEventListener("click", function (event) {
    var target = event.target instanceof Element ? event.target : null;
    if (!target) {
      return;
    }
    // Delete buttons and other destructive controls ask first.
    var confirmable = target.closest("[data-confirm]");
    if (confirmable && !window.confirm(confirmable.getAttribute("data-confirm"))) {
      event.preventDefault();
      event.stopImmediatePropagation();
      return;
    }
    // Bulk actions ("Mit Auswahl") run through Flask-Admin's modelActions.
    var action = target.closest("[data-action]");
    if (action && window.modelActions) {
      event.preventDefault();
      window.modelActions.execute(action.getAttribute("data-action"));
      return;
    }
    // Menu entries that only open something must not follow their href.
    var placeholder = target.closest('a[href="javascript:void(0)"]');
    if (placeholder) {
      event.preventDefault();
    }
  }, true);

  // Forms marked data-download (the report) fetch their file in the background:
  // the page stays, shows that it is working, and the download starts when the
  // file is ready. A form with errors comes back from the server and replaces
  // the old one, with everything typed kept.
  function filenameOf(response) {
    var header = response.headers.get("Content-Disposition") || "";
    var match = /filename="?([^";]+)"?/.exec(header);
    return match ? match[1] : "download.xlsx";
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-download") || !window.fetch) {
      return;
    }
    event.preventDefault();
    var status = form.querySelector("[data-download-status]");
    var button = form.querySelector("[type=submit]");
    var started = Date.now();
    var timer = null;
    function show(html) {
      if (status) {
        status.innerHTML = html;
      }
    }
    function busy() {
      var seconds = Math.round((Date.now() - started) / 1000);
      show('<div class="d-flex align-items-center"><div class="spinner-border spinner-border-sm mr-2" ' +
           'aria-hidden="true"></div><span>' + form.getAttribute("data-busy") +
           (seconds > 0 ? " (" + seconds + " s)" : "") + "</span></div>" +
           '<div class="progress mt-2" style="height: 4px"><div class="progress-bar progress-bar-striped ' +
           'progress-bar-animated w-100"></div></div>');
    }
    busy();
    timer = window.setInterval(busy, 1000);
    form.setAttribute("aria-busy", "true");
    if (button) {
      button.disabled = true;
    }
    function finish() {
      window.clearInterval(timer);
      form.removeAttribute("aria-busy");
      if (button) {
        button.disabled = false;
      }
    }
    fetch(form.action || window.location.href, {
      method: "POST",
      body: new FormData(form),
      credentials: "same-origin",
      headers: {"X-Requested-With": "fetch"}
    }).then(function (response) {
      var type = response.headers.get("Content-Type") || "";
      if (response.ok && type.indexOf("text/html") === -1) {
        return response.blob().then(function (blob) {
          var link = document.createElement("a");
          link.href = URL.createObjectURL(blob);
          link.download = filenameOf(response);
          document.body.appendChild(link);
          link.click();
          window.setTimeout(function () {
            URL.revokeObjectURL(link.href);
            link.remove();
          }, 1000);
          finish();
          show('<div class="alert alert-success mb-0">' + form.getAttribute("data-done") + "</div>");
        });
      }
      return response.text().then(function (html) {
        finish();
        var page = new DOMParser().parseFromString(html, "text/html");
        var fresh = page.getElementById(form.parentElement.id);
        if (form.parentElement.id && fresh) {
          form.parentElement.replaceWith(document.importNode(fresh, true));
        } else {
          show('<div class="alert alert-danger mb-0">Der Bericht konnte nicht erstellt werden ' +
               "(Fehler " + response.status + "). Bitte laden Sie die Seite neu.</div>");
        }
      });
    }).catch(function () {
      finish();
      show('<div class="alert alert-danger mb-0">Keine Verbindung zum Server. ' +
           "Bitte versuchen Sie es erneut.</div>");
    });
  });

  // The server validates every field and answers in German beside it; the
  // browser's own (often English) bubbles would only get in the way.
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form.admin-form").forEach(function (form) {
      form.noValidate = true;
    });
  });
})();
