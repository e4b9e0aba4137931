// Live progress of a running sync over server-sent events; the page works without it.
document.querySelectorAll(".progress[data-events-url]").forEach(function (box) {
  var bar = box.querySelector("progress");
  var text = box.querySelector(".progress-text");
  var source = new EventSource(box.dataset.eventsUrl);
  function show(event) {
    var data = JSON.parse(event.data);
    if (data.total > 0) { bar.max = data.total; bar.value = data.done; }
    text.textContent = data.phase + (data.message ? ": " + data.message : "");
    return data;
  }
  source.addEventListener("progress", show);
  source.addEventListener("final", function (event) {
    var data = show(event);
    source.close();
    text.textContent = "finished: " + data.outcome + (data.message ? " (" + data.message + ")" : "");
    setTimeout(function () { window.location.reload(); }, 1500);
  });
});
