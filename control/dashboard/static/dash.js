// The dashboard's own script: filter, live states, reveal. No framework, no build step.
// Pages work without it (forms post, links navigate); it only makes them live.
"use strict";
(function () {
  var meta = document.querySelector('meta[name="csrf-token"]');
  var csrf = meta ? meta.getAttribute("content") : "";
  // For live-*.js modules: fetch with the session's CSRF token on state-changing requests.
  window.slipway = {
    csrf: csrf,
    fetch: function (url, options) {
      options = options || {};
      options.headers = Object.assign({ "X-CSRF-Token": csrf }, options.headers || {});
      options.credentials = "same-origin";
      return fetch(url, options);
    },
  };

  function filterRows(input) {
    var rows = document.querySelectorAll(input.getAttribute("data-filter"));
    var needle = input.value.trim().toLowerCase();
    var shown = 0;
    rows.forEach(function (row) {
      var match = !needle || row.textContent.toLowerCase().indexOf(needle) !== -1;
      row.hidden = !match;
      if (match) shown += 1;
    });
    var count = document.getElementById("app-count");
    if (count) count.textContent = String(shown);
  }

  function setState(el, info) {
    el.setAttribute("data-state", info.state);
    var label = el.querySelector(".label");
    if (label && label.textContent !== info.label) label.textContent = info.label;
  }

  // Every few seconds, whether the tab is visible or not (a background tab's timers are
  // slowed by the browser, never stopped): the states of every app the user may see.
  var POLL_MS = 2000;
  function poll(url) {
    fetch(url, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (states) {
        if (!states) return;
        document.querySelectorAll("#apps tbody tr[data-app]").forEach(function (row) {
          var info = states[row.getAttribute("data-app")];
          if (!info) return;
          setState(row.querySelector("td.state"), info);
          var last = row.querySelector("td.last-request");
          if (last && last.innerHTML !== info.last_request_html) last.innerHTML = info.last_request_html;
        });
        var one = document.getElementById("app-state");
        if (one && states[one.getAttribute("data-app")]) setState(one, states[one.getAttribute("data-app")]);
      })
      .catch(function () {})
      .then(function () { setTimeout(function () { poll(url); }, POLL_MS); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var filter = document.querySelector("input[data-filter]");
    if (filter) {
      filter.addEventListener("input", function () { filterRows(filter); });
      filterRows(filter);
    }
    var live = document.querySelector("[data-live]");
    if (live) poll(live.getAttribute("data-live"));
    document.querySelectorAll("button.reveal").forEach(function (button) {
      button.addEventListener("click", function () {
        var input = document.getElementById(button.getAttribute("aria-controls"));
        var hidden = input.type === "password";
        input.type = hidden ? "text" : "password";
        button.textContent = hidden ? "Hide" : "Reveal";
        button.setAttribute("aria-pressed", String(hidden));
      });
    });
    document.querySelectorAll("button.reveal-all").forEach(function (button) {
      button.addEventListener("click", function () {
        var show = button.textContent.indexOf("Reveal") === 0;
        document.querySelectorAll(".masked").forEach(function (span) {
          span.textContent = show ? span.getAttribute("data-value") : "••••••";
        });
        button.textContent = show ? "Hide values" : "Reveal values";
      });
    });
  });
})();
