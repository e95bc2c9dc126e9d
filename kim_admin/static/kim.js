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

  // The server validates every field and answers in German beside it; the
  // browser's own (often English) bubbles would only get in the way.
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form.admin-form").forEach(function (form) {
      form.noValidate = true;
    });
  });
})();
