// hwfleet dashboard: keep the live stream's place across reconnects.
// The browser's EventSource resends Last-Event-ID when it reconnects by itself; when the
// htmx SSE extension has to build a new EventSource (after an error), the newest id seen
// is passed as ?after= so the server replays what the page missed.
(function () {
  "use strict";
  var lastId = null;
  document.addEventListener("htmx:sseMessage", function (evt) {
    var id = evt.detail && evt.detail.lastEventId;
    if (id) { lastId = id; }
  });
  htmx.createEventSource = function (url) {
    if (lastId) {
      url = url.replace(/([?&])after=\d*/, "$1after=" + encodeURIComponent(lastId));
    }
    return new EventSource(url, { withCredentials: false });
  };
  document.addEventListener("htmx:sseOpen", function () {
    document.body.setAttribute("data-live", "open");
  });
  document.addEventListener("htmx:sseError", function () {
    document.body.setAttribute("data-live", "reconnecting");
  });
})();
