/* KIM-Admin: accessible names and German texts for Flask-Admin's widgets, without
   patching the library. Loaded on every page after Select2 and before Flask-Admin's
   form.js and filters, so its settings apply to every picker and filter.

   - Select2 3.5 speaks German and its pickers are named after their field, not their
     current value; its option list states whether it is open (aria-expanded).
   - Date and time filters are the browser's own date/datetime-local inputs instead of
     the daterangepicker (English, US week, not keyboard-usable).
   - Filter rows: the condition and the value are labelled with the filter's name.
   - List-header help icons are named by their help text.
   - After a failed save the focus moves to the error summary; its links focus the field.
   tests/test_a11y.py checks every page with axe-core. */
(function ($) {
  "use strict";
  if (!$) {
    return;
  }

  // --- Select2 in German -------------------------------------------------------------
  if ($.fn.select2) {
    $.extend($.fn.select2.defaults, {
      formatNoMatches: function () { return "Keine Treffer"; },
      formatInputTooShort: function (input, min) {
        var n = min - input.length;
        return "Bitte " + n + " Zeichen mehr eingeben";
      },
      formatInputTooLong: function (input, max) {
        var n = input.length - max;
        return "Bitte " + n + " Zeichen weniger eingeben";
      },
      formatSelectionTooBig: function (limit) {
        return "Höchstens " + limit + (limit === 1 ? " Eintrag" : " Einträge") + " auswählbar";
      },
      formatLoadMore: function () { return "Weitere Einträge werden geladen …"; },
      formatSearching: function () { return "Suche …"; },
      formatAjaxError: function () { return "Die Einträge konnten nicht geladen werden."; },
      formatMatches: function (matches) {
        return matches === 1
          ? "Ein Treffer, Eingabetaste wählt ihn aus."
          : matches + " Treffer, mit den Pfeiltasten auswählen.";
      },
      formatResult: function (result, container, query, escapeMarkup) {
        // An empty choice gets a word, so that its option has a name.
        var text = $.trim(result.text || "") === "" ? "(keine Auswahl)" : result.text;
        var markup = [];
        window.Select2.util.markMatch(text, query.term, markup, escapeMarkup);
        return markup.join("");
      }
    });
  }

  // --- helpers -------------------------------------------------------------------------
  var uid = 0;
  function idOf(el, prefix) {
    if (!el.id) {
      uid += 1;
      el.id = prefix + "-" + uid;
    }
    return el.id;
  }

  function setIfMissing(el, name, value) {
    if (el && !el.hasAttribute(name)) {
      el.setAttribute(name, value);
    }
  }

  // The visible label of a form control (before Select2 moved its "for").
  function labelTextOf(el) {
    var label = el.id ? document.querySelector('label[for="' + el.id + '"]') : null;
    if (!label) {
      label = $(el).closest(".form-group").find("label").get(0);
    }
    return label ? label.textContent.replace(/\*/g, "").replace(/\(Pflichtfeld\)/, "").trim() : "";
  }

  // Name a Select2 picker by its field: the focusser (the button a user tabs to) and the
  // search box get the label; the link that only mirrors the value is hidden.
  function nameSelect2(original, name) {
    var container = document.getElementById("s2id_" + original.id) ||
      $(original).prev(".select2-container").get(0);
    if (!container || !name) {
      return;
    }
    original.setAttribute("aria-label", name);
    var chosen = container.querySelector(".select2-chosen");
    var focusser = container.querySelector(".select2-focusser");
    if (focusser) {
      var labelId = idOf(focusser, "kim-s2") + "-name";
      var labelEl = document.getElementById(labelId);
      if (!labelEl) {
        labelEl = document.createElement("span");
        labelEl.id = labelId;
        labelEl.className = "sr-only";
        labelEl.textContent = name;
        container.appendChild(labelEl);
      }
      focusser.setAttribute("aria-labelledby", labelId + (chosen ? " " + idOf(chosen, "kim-s2c") : ""));
      focusser.setAttribute("aria-expanded", "false");
    }
    var choice = container.querySelector("a.select2-choice");
    if (choice) {
      choice.setAttribute("aria-hidden", "true");
      choice.setAttribute("tabindex", "-1");
    }
    var s2 = $(original).data("select2");
    // The search boxes: the multiple picker's inline one and the single picker's in its
    // drop-down (a combobox, which must say whether its list is open and which it is).
    $(container).find(".select2-search-field input").add(s2 && s2.search ? s2.search : [])
      .each(function () {
        this.setAttribute("aria-label", name);
        if (this.getAttribute("role") === "combobox") {
          this.setAttribute("aria-expanded", "false");
          if (s2 && s2.results && s2.results.length) {
            this.setAttribute("aria-controls", idOf(s2.results.get(0), "kim-s2r"));
          }
        }
      });
    $(original).off(".kima11y")
      .on("select2-open.kima11y", function () { expanded(s2, true); })
      .on("select2-close.kima11y", function () { expanded(s2, false); })
      .on("change.kima11y", function () { nameChoices(container); });
    nameChoices(container);
  }

  function expanded(s2, open) {
    var value = open ? "true" : "false";
    if (s2 && s2.focusser) {
      s2.focusser.attr("aria-expanded", value);
    }
    if (s2 && s2.search && s2.search.attr("role") === "combobox") {
      s2.search.attr("aria-expanded", value);
    }
  }

  // The "x" of each chosen entry of a multiple picker says what it removes.
  function nameChoices(container) {
    $(container).find(".select2-search-choice").each(function () {
      var text = $(this).children("div").text().trim();
      $(this).find(".select2-search-choice-close")
        .attr("aria-label", text + " entfernen").attr("role", "button");
    });
  }

  // --- native date inputs instead of the daterangepicker -----------------------------
  var DATE_ROLES = {
    datepicker: "date", daterangepicker: "date",
    datetimepicker: "datetime-local", datetimerangepicker: "datetime-local",
    timepicker: "time", timerangepicker: "time"
  };

  // Flask-Admin's format: "2026-11-25", "2026-11-25 14:05:00", "14:05:00"; ranges " to ".
  function toServer(type, value) {
    if (!value) {
      return "";
    }
    if (type === "datetime-local") {
      value = value.replace("T", " ");
      return value.length === 16 ? value + ":00" : value;
    }
    if (type === "time" && value.length === 5) {
      return value + ":00";
    }
    return value;
  }

  function toNative(type, value) {
    if (!value) {
      return "";
    }
    return type === "datetime-local" ? value.replace(" ", "T").slice(0, 16) : value.slice(0, type === "time" ? 5 : 10);
  }

  // Replace Flask-Admin's text input by one or two native inputs; the original stays as
  // a hidden field with the name, so the filter URL is the one Flask-Admin expects.
  function nativeDate($el, role) {
    var el = $el.get(0);
    var type = DATE_ROLES[role];
    var range = /range/.test(role);
    var name = el.getAttribute("aria-label") || "Datum";
    var parts = (el.value || "").split(" to ");
    el.type = "hidden";
    el.setAttribute("data-kim-native", "1");
    el.removeAttribute("aria-label");
    var inputs = (range ? ["von", "bis"] : [""]).map(function (part, i) {
      var input = document.createElement("input");
      input.type = type;
      input.className = "form-control kim-date";
      if (type !== "date") {
        input.step = type === "time" ? "60" : "60";
      }
      input.value = toNative(type, parts[i] || "");
      input.setAttribute("aria-label", part ? name + " " + part : name);
      return input;
    });
    function sync() {
      var values = inputs.map(function (input) { return toServer(type, input.value); });
      el.value = range ? values.join(" to ") : values[0];
      $el.trigger("change");
    }
    inputs.forEach(function (input) {
      input.addEventListener("change", sync);
      input.addEventListener("input", sync);
    });
    var wrapper = document.createElement("span");
    wrapper.className = "d-inline-flex kim-date-group";
    inputs.forEach(function (input) { wrapper.appendChild(input); });
    el.parentNode.insertBefore(wrapper, el.nextSibling);
  }

  // Flask-Admin's form.js styles each field through faForm.applyStyle: wrap it.
  $(document).on("adminFormReady", function () {
    var faForm = window.faForm;
    if (!faForm || faForm.kimWrapped) {
      return;
    }
    var original = faForm.applyStyle;
    faForm.applyStyle = function ($el, role) {
      if (DATE_ROLES[role]) {
        labelFilterRows();
        nativeDate($el, role);
        return true;
      }
      var name = $el.attr("aria-label") || labelTextOf($el.get(0));
      var result = original.apply(this, arguments);
      if (/^select2/.test(role)) {
        nameSelect2($el.get(0), name);
      }
      return result;
    };
    faForm.kimWrapped = true;
  });

  // --- filters -------------------------------------------------------------------------
  function labelFilterRows() {
    $("#filter_form .filters tr").each(function () {
      var row = this;
      var remove = row.querySelector("a.remove-filter");
      if (!remove) {
        return;
      }
      var name = remove.textContent.replace("×", "").trim();
      setIfMissing(remove, "aria-label", "Filter " + name + " entfernen");
      $(remove).find(".close-icon").attr("aria-hidden", "true");
      var op = row.querySelector("select.filter-op");
      if (op) {
        op.setAttribute("aria-label", "Bedingung für " + name);
        if (op.id === "") {
          idOf(op, "kim-filter-op");
        }
        nameSelect2(op, "Bedingung für " + name);
      }
      $(row).find(".filter-val").not(".select2-container, [data-kim-native]").each(function () {
        this.setAttribute("aria-label", "Wert für " + name);
        if (this.tagName === "SELECT" || this.type === "hidden") {
          idOf(this, "kim-filter-val");
          nameSelect2(this, "Wert für " + name);
        }
      });
      $(row).find(".kim-date").each(function () {
        var part = this.getAttribute("aria-label").split(" ").pop();
        this.setAttribute("aria-label", "Wert für " + name + (part === "von" || part === "bis" ? " " + part : ""));
      });
    });
  }

  // --- on every change of the page: filters added, pickers opened ---------------------
  var pending = false;
  function fixPage() {
    pending = false;
    labelFilterRows();
    // List-header help icons: Bootstrap's tooltip empties their title.
    $("a[data-role=tooltip]").each(function () {
      var help = this.getAttribute("data-original-title") || this.getAttribute("title") || "";
      var column = $(this).closest("th").text().trim();
      if (help) {
        this.setAttribute("aria-label", "Hilfe" + (column ? " zu " + column : "") + ": " + help);
      }
    });
    // The open drop-down's list of choices is a listbox (a multiple picker's list has
    // no role of its own): its options need it as parent, and a long list that scrolls
    // must be reachable with the keyboard.
    $(".select2-drop .select2-results").each(function () {
      setIfMissing(this, "role", "listbox");
      setIfMissing(this, "aria-label", "Auswahlliste");
      setIfMissing(this, "tabindex", "0");
    });
    // Select2's own search box in the open drop-down: named, with its state.
    $(".select2-drop .select2-search input").each(function () {
      var owner = this.id ? document.querySelector('label[for="' + this.id + '"]') : null;
      if (!this.getAttribute("aria-label") && (!owner || !owner.textContent.trim())) {
        this.setAttribute("aria-label", "Suche in der Auswahlliste");
      }
      if (this.getAttribute("role") === "combobox") {
        setIfMissing(this, "aria-expanded", $(this).closest(".select2-drop-active").length ? "true" : "false");
      }
    });
  }

  function schedule() {
    if (!pending) {
      pending = true;
      window.requestAnimationFrame(fixPage);
    }
  }

  $(function () {
    fixPage();
    if (window.MutationObserver) {
      new MutationObserver(schedule).observe(document.body, { childList: true, subtree: true });
    }
    // After a failed save: focus the error summary (or the first error message).
    var summary = document.getElementById("error-summary");
    if (summary) {
      var target = summary.hidden ? document.querySelector(".alert[role=alert]") : summary;
      if (target) {
        target.setAttribute("tabindex", "-1");
        target.focus();
      }
    }
  });

  // Links of the error summary focus their field (or the picker that replaces it).
  document.addEventListener("click", function (event) {
    var link = event.target instanceof Element ? event.target.closest("#error-summary a[data-field]") : null;
    if (!link) {
      return;
    }
    var field = document.getElementById(link.getAttribute("data-field"));
    var picker = document.getElementById("s2id_" + link.getAttribute("data-field"));
    var focusable = picker ? picker.querySelector(".select2-focusser, .select2-input") : field;
    if (focusable) {
      event.preventDefault();
      focusable.focus();
      (picker || field).scrollIntoView({ block: "center" });
    }
  });

  // --- wide tables in narrow windows (1.4.10 Reflow, 2.1.1 Keyboard) -----------------
  // A table wider than the window scrolls inside its wrapper. While (and only while) it
  // does, the wrapper is a named region in the tab order, so the keyboard can scroll it;
  // wrappers the page made regions itself are left alone.
  function regionName(box) {
    var table = box.querySelector("table");
    var caption = table && table.querySelector("caption");
    var text = caption ? caption.textContent : "";
    if (!text) {
      var heading = document.querySelector("h1, main h2");
      text = heading ? heading.textContent : document.title;
    }
    return $.trim(text).replace(/\s+/g, " ") + " (Tabelle, waagerecht verschiebbar)";
  }

  function markScrollingTables() {
    document.querySelectorAll(".table-responsive").forEach(function (box) {
      if (!box.hasAttribute("data-kim-region") && box.hasAttribute("tabindex")) {
        return;
      }
      var scrolls = box.scrollWidth > box.clientWidth + 1;
      if (scrolls && !box.hasAttribute("data-kim-region")) {
        box.setAttribute("data-kim-region", "");
        box.setAttribute("tabindex", "0");
        box.setAttribute("role", "region");
        box.setAttribute("aria-label", regionName(box));
      } else if (!scrolls && box.hasAttribute("data-kim-region")) {
        ["data-kim-region", "tabindex", "role", "aria-label"].forEach(function (name) {
          box.removeAttribute(name);
        });
      }
    });
  }

  var pendingTables = false;
  function scheduleTables() {
    if (!pendingTables) {
      pendingTables = true;
      window.requestAnimationFrame(function () {
        pendingTables = false;
        markScrollingTables();
      });
    }
  }
  $(function () {
    scheduleTables();
    // A table shown later (the start page's "je 1.000 Einwohner") changes size too.
    if (window.ResizeObserver) {
      var watcher = new ResizeObserver(scheduleTables);
      document.querySelectorAll(".table-responsive").forEach(function (box) {
        watcher.observe(box);
      });
    }
  });
  window.addEventListener("resize", scheduleTables);
})(window.jQuery);
