/* The start page's charts: one line chart per main indicator, drawn with the
   vendored Chart.js from the page's JSON endpoint (the same scope as everything
   else). With many municipalities the server sends the picked ones, or the ten
   highest plus the Kreis total: more lines nobody can read. Each line's look
   (colour of at least 3:1 against white, dash pattern, point style) comes from
   the server, so no line is told apart by colour alone. A switch shows the
   values per 1,000 inhabitants, in the charts and in the tables beside them. */
(function () {
  "use strict";

  var NUMBER = new Intl.NumberFormat("de-DE", {maximumFractionDigits: 2});

  function datasets(indicator, scale) {
    return indicator.series.map(function (series) {
      var style = series.style;
      return {
        label: series.municipality,
        data: scale === "per1000" ? series.per1000 : series.values,
        borderColor: style.colour,
        backgroundColor: style.colour,
        borderDash: style.dash,
        borderWidth: style.width,
        pointStyle: style.point,
        pointRadius: 4,
        spanGaps: true,
        tension: 0
      };
    });
  }

  function showTables(section, scale) {
    section.querySelectorAll("[data-scale-table]").forEach(function (box) {
      box.hidden = box.getAttribute("data-scale-table") !== scale;
    });
    section.setAttribute("data-scale", scale);
  }

  function draw(section, data) {
    var charts = [];
    section.querySelectorAll("canvas.kim-chart").forEach(function (canvas) {
      var indicator = data.indicators.find(function (i) {
        return i.code === canvas.getAttribute("data-code");
      });
      if (!indicator) {
        return;
      }
      var chart = new window.Chart(canvas, {
        type: "line",
        data: {labels: data.periods, datasets: datasets(indicator, section.getAttribute("data-scale"))},
        options: {
          animation: false,
          maintainAspectRatio: false,
          locale: "de-DE",
          interaction: {mode: "nearest", intersect: false},
          plugins: {
            legend: {position: "bottom", labels: {boxWidth: 24, usePointStyle: true}},
            tooltip: {
              callbacks: {
                label: function (item) {
                  return item.dataset.label + ": " +
                    (item.parsed.y === null ? "–" : NUMBER.format(item.parsed.y));
                }
              }
            }
          },
          // Chart.js formats the axis with the German locale and a fitting precision.
          scales: {y: {beginAtZero: true}}
        }
      });
      chart.kimIndicator = indicator;
      charts.push(chart);
      canvas.setAttribute("data-drawn", "1");
    });
    return charts;
  }

  document.addEventListener("DOMContentLoaded", function () {
    var section = document.getElementById("dashboard-charts");
    if (!section) {
      return;
    }
    var charts = [];
    // The switch works on the tables even when the charts cannot be drawn.
    section.querySelectorAll("input[name=chart-scale]").forEach(function (input) {
      input.addEventListener("change", function () {
        showTables(section, input.value);
        charts.forEach(function (chart) {
          chart.data.datasets = datasets(chart.kimIndicator, input.value);
          chart.update();
        });
      });
    });
    if (!window.Chart) {
      return;  // the tables stay: they hold the same figures
    }
    var embedded = document.getElementById("dashboard-data");
    if (embedded) {
      charts = draw(section, JSON.parse(embedded.textContent));
      return;
    }
    if (!window.fetch) {
      return;
    }
    fetch(section.getAttribute("data-source"), {credentials: "same-origin"})
      .then(function (response) {
        if (!response.ok) {
          throw new Error(String(response.status));
        }
        return response.json();
      })
      .then(function (data) {
        charts = draw(section, data);
      })
      .catch(function () {
        var note = document.createElement("p");
        note.className = "text-danger";
        note.textContent = "Die Diagramme konnten nicht geladen werden; die Tabellen enthalten dieselben Werte.";
        section.appendChild(note);
      });
  });
})();
