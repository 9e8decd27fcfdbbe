// Live refresh of an open preview: the server says "changed" when the
// brief or the issue state changes; reloading re-renders through the send path.
(function () {
  var el = document.getElementById("live");
  if (!el || !window.EventSource) return;
  var es = new EventSource(el.getAttribute("data-events"));
  es.addEventListener("changed", function () {
    es.close();
    window.location.reload();
  });
})();
