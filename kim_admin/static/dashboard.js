/* The start page's charts: one line chart per main indicator, one line per
   municipality, drawn with the vendored Chart.js from the page's JSON endpoint
   (the same scope as everything else). A switch shows the values per 1,000
   inhabitants. Each chart has a data table beside it for screen readers. */
(function () {
  "use strict";

  // Okabe-Ito and Tableau colours: distinguishable, also with colour vision deficiency.
  var COLOURS = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9",
                 "#F0E442", "#000000", "#8C564B", "#7F7F7F", "#BCBD22", "#17BECF"];
  var NUMBER = new Intl.NumberFormat("de-DE", {maximumFractionDigits: 2});

  function perThousand(values, population) {
    return values.map(function (v) {
      return v === null || !population ? null : Math.round(v / population * 10000) / 10;
    });
  }

  function datasets(indicator, scale) {
    return indicator.series.map(function (series, n) {
      var colour = COLOURS[n % COLOURS.length];
      return {
        label: series.municipality,
        data: scale === "per1000" ? perThousand(series.values, series.population) : series.values,
        borderColor: colour,
        backgroundColor: colour,
        borderWidth: 2,
        pointRadius: 3,
        spanGaps: true,
        tension: 0
      };
    });
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
        data: {labels: data.periods, datasets: datasets(indicator, "absolute")},
        options: {
          animation: false,
          maintainAspectRatio: false,
          locale: "de-DE",
          interaction: {mode: "nearest", intersect: false},
          plugins: {
            legend: {position: "bottom", labels: {boxWidth: 12}},
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
    section.querySelectorAll("input[name=chart-scale]").forEach(function (input) {
      input.addEventListener("change", function () {
        charts.forEach(function (chart) {
          chart.data.datasets = datasets(chart.kimIndicator, input.value);
          chart.update();
        });
        section.setAttribute("data-scale", input.value);
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var section = document.getElementById("dashboard-charts");
    if (!section || !window.Chart || !window.fetch) {
      return;  // the tables stay: they hold the same figures
    }
    fetch(section.getAttribute("data-source"), {credentials: "same-origin"})
      .then(function (response) {
        if (!response.ok) {
          throw new Error(String(response.status));
        }
        return response.json();
      })
      .then(function (data) {
        draw(section, data);
      })
      .catch(function () {
        var note = document.createElement("p");
        note.className = "text-danger";
        note.textContent = "Die Diagramme konnten nicht geladen werden; die Tabellen enthalten dieselben Werte.";
        section.appendChild(note);
      });
  });
})();
