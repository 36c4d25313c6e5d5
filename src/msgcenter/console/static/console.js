// The console's only script (the Content-Security-Policy allows no inline one): it draws the
// charts whose data a page holds in <script type="application/json"> elements, and asks before
// a form marked data-confirm (or a button so marked) does something that cannot be undone.
"use strict";

function drawCharts(root) {
  root.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
    if (window.Chart === undefined || Chart.getChart(canvas)) {
      return;
    }
    var source = document.getElementById(canvas.dataset.chart);
    if (!source) {
      return;
    }
    new Chart(canvas, JSON.parse(source.textContent));
  });
}

document.addEventListener("DOMContentLoaded", function () {
  drawCharts(document);
});
document.addEventListener("htmx:afterSettle", function (event) {
  drawCharts(event.target);
});

document.addEventListener("submit", function (event) {
  var button = event.submitter;
  var question = (button && button.dataset.confirm) || event.target.dataset.confirm;
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
