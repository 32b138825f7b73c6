// debugmon review --serve: keeps the live part of the page current. The
// server sends that part whole, rendered, escaped and verified, as an
// `update` Server-Sent Event after each batch of new records; this script
// only puts it in place and says whether the connection is up.
(function () {
  "use strict";
  var main = document.getElementById("live");
  var conn = document.getElementById("conn");
  if (!main || !window.EventSource) {
    return;
  }
  var say = function (text) {
    if (conn) {
      conn.textContent = "live updates: " + text;
    }
  };
  var events = new EventSource(main.getAttribute("data-events"));
  events.addEventListener("update", function (ev) {
    main.innerHTML = ev.data;
    say("on");
  });
  events.onopen = function () {
    say("on");
  };
  events.onerror = function () {
    say("reconnecting");
  };
})();
