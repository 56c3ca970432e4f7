// Live refresh without a framework: every few seconds, fetch this same page and swap the
// element marked id="live" (and any flash) for its new version. Paused while the tab is hidden.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live) { return; }
  var seconds = parseInt(live.getAttribute("data-refresh") || "0", 10);
  if (!seconds) { return; }
  function refresh() {
    if (document.hidden) { return; }
    fetch(window.location.href, { credentials: "same-origin", headers: { "X-Live-Refresh": "1" } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (!html) { return; }
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("live");
        var current = document.getElementById("live");
        if (fresh && current) { current.replaceWith(fresh); }
      })
      .catch(function () { /* offline for a moment: try again next tick */ });
  }
  window.setInterval(refresh, seconds * 1000);
})();
