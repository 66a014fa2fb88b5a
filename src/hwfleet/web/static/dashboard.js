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
// Image upload: the chosen file itself is the request body (the server streams it to the
// registry as it arrives), with the CSRF token in its header; the answer is the page's
// result fragment, and the list reloads.
(function () {
  "use strict";
  document.addEventListener("submit", function (evt) {
    var form = evt.target;
    if (!form.matches || !form.matches("form[data-upload]")) { return; }
    evt.preventDefault();
    var result = document.getElementById("action-result");
    var file = form.querySelector("input[type=file]").files[0];
    if (!file) { result.textContent = "choose a file to upload"; return; }
    var name = form.querySelector("input[name=name]").value.trim() || file.name;
    var button = form.querySelector("button");
    button.disabled = true;
    result.textContent = "uploading " + file.name + " (" + file.size + " bytes)…";
    fetch(form.getAttribute("data-upload") + "?name=" + encodeURIComponent(name), {
      method: "POST",
      body: file,
      credentials: "same-origin",
      headers: {
        "Content-Type": "application/octet-stream",
        "X-CSRF-Token": form.querySelector("input[name=csrf]").value,
        "HX-Request": "true"
      }
    }).then(function (reply) {
      if (reply.status === 401) { window.location.assign("/login"); return null; }
      return reply.text().then(function (body) {
        if (reply.ok) { result.innerHTML = body; } else { result.textContent = body; }
        htmx.trigger(document.body, "refresh");
      });
    }).catch(function (err) {
      result.textContent = "upload failed: " + err;
    }).finally(function () { button.disabled = false; });
  });
})();
