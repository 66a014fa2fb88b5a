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
    var source = new EventSource(url, { withCredentials: false });
    // Progress is applied to the one row it names: the rest of the page (and the buttons
    // in it) stays as it is.
    source.addEventListener("taskprogress", function (evt) { keep(taskProgress, evt.data); });
    source.addEventListener("graphprogress", function (evt) { keep(graphProgress, evt.data); });
    return source;
  };

  // A region reload in flight may have been rendered before a progress message arrived:
  // the messages received since the reload was asked for are applied again after it lands
  // (the apply functions never move a row backwards, so an older one changes nothing).
  var recent = [];
  var reloadAskedAt = 0;
  function keep(apply, data) {
    var message = parse(data);
    var now = Date.now();
    recent.push([now, apply, message]);
    while (recent.length > 500 || (recent.length && recent[0][0] < now - 60000)) {
      recent.shift();
    }
    apply(message);
  }
  document.addEventListener("htmx:beforeRequest", function (evt) {
    if (evt.target.id === "live") { reloadAskedAt = Date.now(); }
  });
  document.addEventListener("htmx:afterSwap", function (evt) {
    if (evt.target.id !== "live") { return; }
    recent.forEach(function (entry) {
      if (entry[0] >= reloadAskedAt) { entry[1](entry[2]); }
    });
  });

  var ENDED = ["complete", "error", "lost"];

  function parse(data) {
    try { return JSON.parse(data) || {}; } catch (err) { return {}; }
  }

  function refresh() { htmx.trigger(document.body, "refresh"); }

  // Task ids this page reloaded for already: a task it does not list is asked for once.
  var asked = {};

  // The device's status words follow its task (st_id changes record no event of their own).
  function deviceStatus(task) {
    if (typeof task.st_id !== "number" || !task.uuid) { return; }
    var uuid = CSS.escape(task.uuid);
    document.querySelectorAll('[data-st-of="' + uuid + '"]').forEach(function (el) {
      el.textContent = task.st_words || "";
    });
    document.querySelectorAll('[data-st-id-of="' + uuid + '"]').forEach(function (el) {
      el.textContent = String(task.st_id);
    });
  }

  function taskProgress(task) {
    if (!task.task_id) { return; }
    deviceStatus(task);
    var rows = document.querySelectorAll('tr[data-task="' + CSS.escape(task.task_id) + '"]');
    if (rows.length === 0) {
      var region = document.querySelector("[data-task-scope]");
      var scope = region && region.getAttribute("data-task-scope");
      if (scope && (scope === "all" || scope === task.uuid) && !asked[task.task_id]) {
        asked[task.task_id] = true;
        refresh();  // a task this page lists but has not shown yet
      }
      return;
    }
    rows.forEach(function (row) {
      if (ENDED.indexOf(row.getAttribute("data-state")) >= 0) { return; }  // never backwards
      row.setAttribute("data-state", task.state || "");
      var state = row.querySelector('[data-col="state"]');
      if (state) { state.textContent = task.state || ""; }
      var msg = row.querySelector('[data-col="msg"]');
      if (msg) { msg.textContent = task.msg || ""; }
      var cell = row.querySelector('[data-col="progress"]');
      if (!cell) { return; }
      if (typeof task.percent === "number") {
        var percent = Math.round(task.percent);
        var bar = cell.querySelector("progress");
        var label = cell.querySelector("span");
        if (!bar || !label) {
          cell.textContent = "";
          bar = document.createElement("progress");
          bar.max = 100;
          bar.setAttribute("aria-label", "task " + task.task_id.slice(0, 12) + " progress");
          label = document.createElement("span");
          cell.appendChild(bar);
          cell.appendChild(document.createTextNode(" "));
          cell.appendChild(label);
        }
        bar.setAttribute("value", String(task.percent));
        bar.textContent = percent + " %";
        label.textContent = percent + " %";
      } else if (task.state === "complete") {
        cell.textContent = "done";
      }
    });
  }

  function graphProgress(graph) {
    if (!graph.graphId) { return; }
    var rows = document.querySelectorAll('tr[data-graph="' + CSS.escape(graph.graphId) + '"]');
    if (rows.length === 0) { return; }  // a new graph arrives as graph.started (a reload)
    if (graph.status) { refresh(); return; }  // paused or resumed: its buttons change
    rows.forEach(function (row) {
      var item = row.querySelector('li[data-label="' + CSS.escape(graph.label || "") + '"]');
      var was = item && item.getAttribute("data-state");
      if (was !== "pending" && was !== "running") { return; }  // ended: never backwards
      item.setAttribute("data-state", graph.state);
      var state = item.querySelector(".task-state");
      if (state) {
        state.textContent = graph.state;
        state.className = "task-state " + graph.state;
      }
      var attempt = item.querySelector(".attempt");
      if (attempt) {
        attempt.textContent = graph.attempts > 1 ? " (attempt " + graph.attempts + ")" : "";
      }
    });
  }
  // What this page showed as still moving when it was rendered. Steps that record no event
  // (an MES delivery, a task's progress) are only sent to open streams, and the server's
  // catchup looks at what is moving when the stream starts: a step that ended in between
  // (render done, stream not yet open) would be missed. So the first open reloads once
  // when the page showed anything unfinished.
  var MOVING = 'tr[data-delivery="pending"], tr[data-task][data-state="pending"], ' +
    'tr[data-task][data-state="running"], li[data-label][data-state="pending"], ' +
    'li[data-label][data-state="running"], [data-scan-state="running"]';
  var opened = false;
  document.addEventListener("htmx:sseOpen", function () {
    document.body.setAttribute("data-live", "open");
    if (!opened) {
      opened = true;
      if (document.querySelector("#live") && document.querySelector(MOVING)) { refresh(); }
    }
  });
  document.addEventListener("htmx:sseError", function () {
    document.body.setAttribute("data-live", "reconnecting");
  });
})();
// A live region reload waits while the operator is pressing something inside the region
// (a pointer button or a key down, not yet up) or an action started from inside it (one
// of its forms) is in flight, and is fetched again right after. Replacing the region under
// a press loses the click: the browser sends it to the element under both the press and
// the release, and the button pressed was removed in between (found by an operator trial:
// accepting keys in quick succession lost one click in five).
(function () {
  "use strict";
  var pressed = false;   // a pointer button or key went down inside #live, not yet up
  var sending = [];      // [request, started] from inside #live (its forms), in flight
  var deferred = false;  // a reload arrived while held: it is fetched again once free
  function region() { return document.getElementById("live"); }
  function inside(node) {
    var live = region();
    return !!(live && node instanceof Node && live.contains(node));
  }
  var pressedAt = 0;
  // A press not seen to end (a release lost to a menu or a dialog), or a request that does
  // not end, holds the region for 10 s at most.
  var HOLD_MS = 10000;
  function held() {
    var since = Date.now() - HOLD_MS;
    return (pressed && pressedAt > since) ||
      sending.some(function (entry) { return entry[1] > since; });
  }
  function resume() {
    if (held() || !deferred) { return; }
    deferred = false;
    var live = region();
    if (live) { live.removeAttribute("aria-busy"); }
    htmx.trigger(document.body, "refresh");
  }
  function down(evt) {
    if (evt.button > 0 || !inside(evt.target)) { return; }  // (keydown has no button)
    pressed = true;
    pressedAt = Date.now();
  }
  function up() {
    if (!pressed) { return; }
    pressed = false;
    // The release's click (and the form request it starts) is dispatched after this
    // handler in the same task: resume once it has registered as in flight.
    setTimeout(resume, 0);
  }
  document.addEventListener("pointerdown", down, true);
  document.addEventListener("keydown", down, true);
  ["pointerup", "pointercancel", "keyup", "contextmenu", "dragstart"].forEach(function (name) {
    document.addEventListener(name, up, true);
  });
  window.addEventListener("blur", up);  // a release outside the window is never seen
  document.addEventListener("htmx:beforeSend", function (evt) {
    var elt = evt.detail.elt;
    if (!elt || elt.id === "live" || !inside(elt)) { return; }
    var xhr = evt.detail.xhr;
    sending.push([xhr, Date.now()]);
    // loadend follows load, error, abort and timeout, after htmx has handled the answer,
    // and is sent to the request whether or not its form is still in the page.
    xhr.addEventListener("loadend", function () {
      sending = sending.filter(function (entry) { return entry[0] !== xhr; });
      resume();
    });
  });
  document.addEventListener("htmx:beforeSwap", function (evt) {
    var target = evt.detail.target;
    if (!target || target.id !== "live" || !evt.detail.shouldSwap) { return; }
    if (!held()) {
      deferred = false;  // this newer answer is the reload a deferred one waited for
      target.removeAttribute("aria-busy");
      return;
    }
    evt.detail.shouldSwap = false;  // stale by the time it could land: fetched again
    deferred = true;
    target.setAttribute("aria-busy", "true");
  });
})();
// Keyboard focus survives a live region reload: the element that had it is found again in
// the new region by what tells it apart to the operator (its id, else its tag with its
// name, value, aria-label or href) and focused again without scrolling. An element that is
// gone (the key just accepted left the pending list) leaves focus where the browser puts it.
(function () {
  "use strict";
  var ATTRS = ["name", "value", "aria-label", "href", "data-key"];
  var wanted = null;  // a selector for the focused element of the region being replaced
  function describe(el) {
    if (el.id) { return "#" + CSS.escape(el.id); }
    var selector = el.tagName.toLowerCase();
    ATTRS.forEach(function (name) {
      var value = el.getAttribute(name);
      if (value !== null) { selector += "[" + name + "=\"" + CSS.escape(value) + "\"]"; }
    });
    return selector;
  }
  document.addEventListener("htmx:beforeSwap", function (evt) {
    var target = evt.detail.target;
    if (!target || target.id !== "live" || !evt.detail.shouldSwap) { return; }
    var active = document.activeElement;
    wanted = active && active !== target && target.contains(active) ? describe(active) : null;
  });
  document.addEventListener("htmx:afterSwap", function (evt) {
    var target = evt.detail.target;
    if (!target || target.id !== "live" || wanted === null) { return; }
    var again = target.querySelector(wanted);
    wanted = null;
    if (again) { again.focus({ preventScroll: true }); }
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
