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

  // The evaluation report (forms marked data-report-job) is made by a background
  // job. The form is sent with fetch; the server answers at once with the job's
  // addresses, and the page asks for its state every second: a progress bar
  // (role=progressbar, aria-valuenow), the step in words in a live region, and
  // at the end the download, started automatically and offered as a link. A
  // form with errors comes back from the server and replaces the old one, with
  // everything typed kept.
  var POLL_MS = 1000;

  function jobParts(root) {
    return {
      box: root.querySelector("[data-job-progress]"),
      bar: root.querySelector("[data-job-bar]"),
      status: root.querySelector("[data-job-status]")
    };
  }

  function setText(element, text, kind) {
    element.textContent = "";
    var box = element;
    if (kind) {
      box = document.createElement("div");
      box.className = "alert alert-" + kind + " mb-0";
      element.appendChild(box);
    }
    box.appendChild(document.createTextNode(text));
    return box;
  }

  function showProgress(parts, percent) {
    if (parts.box) {
      parts.box.hidden = false;
    }
    if (parts.bar) {
      parts.bar.style.width = percent + "%";
      parts.bar.setAttribute("aria-valuenow", String(percent));
      parts.bar.textContent = percent + " %";
    }
  }

  function download(url) {
    var link = document.createElement("a");
    link.href = url;
    link.setAttribute("download", "");
    link.hidden = true;
    document.body.appendChild(link);
    link.click();
    link.remove();
  }

  // Follow a job until it has ended; done(ok) is called at the end.
  function followJob(root, statusUrl, autoDownload, done) {
    var parts = jobParts(root);
    var lastStep = null;
    var failures = 0;
    function ask() {
      fetch(statusUrl, {credentials: "same-origin", headers: {"Accept": "application/json"}})
        .then(function (response) {
          if (!response.ok) {
            throw new Error(String(response.status));
          }
          return response.json();
        })
        .then(function (job) {
          failures = 0;
          showProgress(parts, job.progress);
          if (job.status === "done") {
            var box = setText(parts.status, job.subject + " ist fertig: ", "success");
            var link = document.createElement("a");
            link.href = job.file;
            link.setAttribute("download", "");
            link.textContent = job.filename + " herunterladen";
            box.appendChild(link);
            box.appendChild(document.createTextNode(autoDownload ? " (der Download beginnt automatisch)." : "."));
            if (autoDownload) {
              download(job.file);
            }
            done(true);
            return;
          }
          if (job.status === "failed") {
            setText(parts.status, job.subject + " konnte nicht erstellt werden: " + job.error, "danger");
            done(false);
            return;
          }
          // Announce a new step only: the live region must not chatter every second.
          var text = job.label.charAt(0).toUpperCase() + job.label.slice(1) + ": " + job.step;
          if (text !== lastStep) {
            setText(parts.status, text);
            lastStep = text;
          }
          window.setTimeout(ask, POLL_MS);
        })
        .catch(function () {
          failures += 1;
          if (failures >= 5) {
            setText(parts.status, "Keine Verbindung zum Server. Die Datei wird eventuell " +
                    "weiter erstellt; bitte laden Sie die Seite später neu.", "danger");
            done(false);
            return;
          }
          window.setTimeout(ask, POLL_MS * 2);
        });
    }
    ask();
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-report-job") || !window.fetch) {
      return;
    }
    event.preventDefault();
    var parts = jobParts(form);
    var button = form.querySelector("[type=submit]");
    form.setAttribute("aria-busy", "true");
    if (button) {
      button.disabled = true;
    }
    showProgress(parts, 0);
    setText(parts.status, "Der Bericht wird gestartet …");
    function finish() {
      form.removeAttribute("aria-busy");
      if (button) {
        button.disabled = false;
      }
    }
    fetch(form.action || window.location.href, {
      method: "POST",
      body: new FormData(form),
      credentials: "same-origin",
      headers: {"X-Requested-With": "fetch", "Accept": "application/json"}
    }).then(function (response) {
      var type = response.headers.get("Content-Type") || "";
      if (response.status === 202 && type.indexOf("application/json") !== -1) {
        return response.json().then(function (job) {
          followJob(form, job.status, true, finish);
        });
      }
      return response.text().then(function (html) {
        finish();
        var page = new DOMParser().parseFromString(html, "text/html");
        var fresh = page.getElementById(form.parentElement.id);
        if (form.parentElement.id && fresh) {
          form.parentElement.replaceWith(document.importNode(fresh, true));
        } else {
          setText(parts.status, "Der Bericht konnte nicht gestartet werden (Fehler " +
                  response.status + "). Bitte laden Sie die Seite neu.", "danger");
        }
      });
    }).catch(function () {
      finish();
      setText(parts.status, "Keine Verbindung zum Server. Bitte versuchen Sie es erneut.", "danger");
    });
  });

  // "für Veröffentlichung" covers one whole calendar year of every KIM municipality's
  // approved figures: ticking it chooses the last complete year, those municipalities
  // and that basis (the server says which); unticking brings back the choice before.
  document.addEventListener("change", function (event) {
    var box = event.target;
    if (!(box instanceof HTMLInputElement) || !box.hasAttribute("data-published-first")) {
      return;
    }
    var form = box.form;
    var first = form && form.elements.namedItem("first");
    var last = form && form.elements.namedItem("last");
    if (!first || !last || !box.getAttribute("data-published-first")) {
      return;
    }
    var towns = Array.prototype.slice.call(form.querySelectorAll('input[name="municipalities"]'));
    var basis = Array.prototype.slice.call(form.querySelectorAll('input[name="basis"]'));
    if (box.checked) {
      box.setAttribute("data-before", first.value + " " + last.value);
      box.setAttribute(
        "data-before-choice",
        JSON.stringify({
          towns: towns.filter(function (t) { return t.checked; }).map(function (t) { return t.value; }),
          basis: (basis.filter(function (b) { return b.checked; })[0] || {}).value
        })
      );
      first.value = box.getAttribute("data-published-first");
      last.value = box.getAttribute("data-published-last");
      // A publication covers every KIM municipality, with approved figures only.
      var published = (box.getAttribute("data-published-towns") || "").split(",");
      towns.forEach(function (t) { t.checked = published.indexOf(t.value) >= 0; });
      basis.forEach(function (b) { b.checked = b.value === "approved"; });
    } else if (box.hasAttribute("data-before")) {
      var before = box.getAttribute("data-before").split(" ");
      first.value = before[0];
      last.value = before[1];
      var choice = JSON.parse(box.getAttribute("data-before-choice") || "{}");
      if (choice.towns) {
        towns.forEach(function (t) { t.checked = choice.towns.indexOf(t.value) >= 0; });
      }
      if (choice.basis) {
        basis.forEach(function (b) { b.checked = b.value === choice.basis; });
      }
    }
  });

  // The server validates every field and answers in German beside it; the
  // browser's own (often English) bubbles would only get in the way.
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form.admin-form").forEach(function (form) {
      form.noValidate = true;
    });
    // The page of one job (reached by reload or without the form's script) follows it too.
    document.querySelectorAll("[data-job-page]").forEach(function (root) {
      var status = root.querySelector("[data-job-status]");
      if (status && !status.querySelector(".alert")) {
        followJob(root, root.getAttribute("data-status-url"), false, function () {});
      }
    });
  });
})();
