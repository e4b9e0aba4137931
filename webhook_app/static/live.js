// Live pages: one server-sent-event stream per page (data-events-url on #live) carries
// every change the page shows. Progress moves bars and badges in place; a new sync, an
// ended one or a tracked/untracked branch re-reads the page and swaps its
// [data-live-region] parts, so rows appear without a reload. Without script (or
// EventSource) the page is the same on reload. No inline script: the CSP forbids it.
(function () {
  "use strict";
  var root = document.getElementById("live");
  if (!root || !window.EventSource) { return; }
  var state = document.getElementById("live-state");
  var refreshing = false;
  var again = false;

  function setState(name, text) {
    if (!state) { return; }
    state.dataset.state = name;
    state.textContent = text;
  }

  function each(selector, fn) {
    Array.prototype.forEach.call(document.querySelectorAll(selector), fn);
  }

  function setBadge(badge, status) {
    badge.dataset.status = status;
    badge.className = "status status-" + status;
    badge.textContent = status;
  }

  function showProgress(data, status) {
    var id = String(data.sync_id);
    var boxes = document.querySelectorAll('.progress[data-sync-id="' + id + '"]');
    var percent = data.percent === null || data.percent === undefined ? null : Number(data.percent);
    Array.prototype.forEach.call(boxes, function (box) {
      box.dataset.status = status;
      var bar = box.querySelector("progress");
      if (bar && percent !== null) {
        bar.value = percent;
        bar.setAttribute("aria-valuenow", String(percent));
        bar.textContent = Math.floor(percent) + " %";
      }
      var shown = box.querySelector(".progress-percent");
      if (shown && percent !== null) { shown.textContent = Math.floor(percent) + " %"; }
      var text = box.querySelector(".progress-text");
      if (text) { text.textContent = data.message || data.phase || status; }
    });
    each('[data-badge-for="' + id + '"]', function (badge) { setBadge(badge, status); });
    each('tr[data-sync-id="' + id + '"]', function (row) { row.dataset.status = status; });
    each('[data-progress-for="' + id + '"]', function (cell) {
      if (data.message) { cell.textContent = data.message; }
    });
    return boxes.length > 0;
  }

  function refresh() {
    if (refreshing) { again = true; return; }
    refreshing = true;
    fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html", "X-Live-Refresh": "1" } })
      .then(function (answer) { return answer.ok ? answer.text() : null; })
      .then(function (html) {
        if (html === null) { return; }
        var fresh = new DOMParser().parseFromString(html, "text/html");
        each("[data-live-region][id]", function (region) {
          var next = fresh.getElementById(region.id);
          if (next) { region.replaceWith(document.importNode(next, true)); }
        });
        relativeTimes();
      })
      .catch(function () { /* the next change or a reload shows it */ })
      .then(function () {
        refreshing = false;
        if (again) { again = false; refresh(); }
      });
  }

  function parse(event) {
    try { return JSON.parse(event.data); } catch (error) { return null; }
  }

  var source = new EventSource(root.dataset.eventsUrl);
  source.addEventListener("open", function () { setState("live", "Live: changes show as they happen."); });
  source.addEventListener("error", function () {
    setState("reconnecting", "Reconnecting to live updates…");
  });
  source.addEventListener("progress", function (event) {
    var data = parse(event);
    if (data && !showProgress(data, "running")) { refresh(); }
  });
  source.addEventListener("final", function (event) {
    var data = parse(event);
    if (!data) { return; }
    showProgress(data, data.outcome || data.status || "finished");
    refresh();
  });
  source.addEventListener("sync", refresh);
  source.addEventListener("project", refresh);

  // "3 min ago" stays true while the page is open; the exact time is in the title.
  function ago(seconds) {
    if (seconds < 5) { return "just now"; }
    if (seconds < 60) { return Math.floor(seconds) + " s ago"; }
    if (seconds < 3600) { return Math.floor(seconds / 60) + " min ago"; }
    if (seconds < 86400) { return Math.floor(seconds / 3600) + " h ago"; }
    if (seconds < 30 * 86400) { return Math.floor(seconds / 86400) + " d ago"; }
    return null;
  }
  function relativeTimes() {
    each("time[data-relative]", function (node) {
      var moment = Date.parse(node.getAttribute("datetime"));
      if (isNaN(moment)) { return; }
      var text = ago((Date.now() - moment) / 1000);
      if (text) { node.textContent = text; }
    });
  }
  setInterval(relativeTimes, 30000);
})();
