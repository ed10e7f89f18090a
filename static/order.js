// Order page: count down to the invoice's expiry and refresh the order in place.
// The page works without this script (it then reloads itself every 15 seconds).
(function () {
  "use strict";
  var live = document.getElementById("order-live");
  if (!live) { return; }
  var finished = ["completed", "failed", "refunded"];

  function tickCountdowns() {
    var nodes = live.querySelectorAll(".countdown");
    for (var i = 0; i < nodes.length; i++) {
      var left = Math.floor((Date.parse(nodes[i].dataset.expires) - Date.now()) / 1000);
      if (left <= 0) { nodes[i].textContent = "now — the invoice has expired"; continue; }
      var minutes = Math.floor(left / 60), seconds = left % 60;
      nodes[i].textContent = minutes + ":" + (seconds < 10 ? "0" : "") + seconds + " from now";
    }
  }

  function refresh() {
    if (finished.indexOf(live.dataset.status) >= 0) { return; }
    fetch(live.dataset.liveUrl, { headers: { "Accept": "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (state) {
        if (!state) { return; }
        if (state.status !== live.dataset.status || String(state.paid_cents) !== live.dataset.paid) {
          live.innerHTML = state.html;
          live.dataset.status = state.status;
          live.dataset.paid = String(state.paid_cents);
          tickCountdowns();
        }
      })
      .catch(function () { /* offline for a moment: try again at the next beat */ });
  }

  tickCountdowns();
  setInterval(tickCountdowns, 1000);
  setInterval(refresh, 3000);
}());
