// Live updates for the signoff dashboard. A page marks its live part with id="live" and
// data-live="TOPIC …"; when the server's event stream (/events) names one of those
// topics, the page fetches itself again and swaps in the fresh live part. The server
// renders everything (escaped); this file only moves its HTML. Without JavaScript, or if
// the stream fails, a reload shows current data.
(function () {
  "use strict";
  var region = document.getElementById("live");
  if (!region || !window.EventSource || !window.fetch || !window.DOMParser) {
    return;
  }
  var topics = (region.getAttribute("data-live") || "").split(/\s+/);
  var busy = false;
  var again = false;

  function swap(html) {
    var doc = new DOMParser().parseFromString(html, "text/html");
    var fresh = doc.getElementById("live");
    if (!fresh) {
      return;
    }
    var nodes = Array.prototype.map.call(fresh.childNodes, function (n) {
      return document.importNode(n, true);
    });
    region.replaceChildren.apply(region, nodes);
    document.documentElement.setAttribute("data-live-updated", String(Date.now()));
  }

  function refresh() {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    fetch(window.location.href, { credentials: "same-origin", redirect: "manual" })
      .then(function (res) {
        if (res.type === "opaqueredirect" || res.status === 401) {
          // Logged out or expired: the reload lands on the login page.
          window.location.reload();
          return null;
        }
        return res.ok ? res.text() : null;
      })
      .then(function (html) {
        if (html) {
          swap(html);
        }
      })
      .catch(function () {})
      .then(function () {
        busy = false;
        if (again) {
          again = false;
          refresh();
        }
      });
  }

  var source = null;

  function connect() {
    source = new EventSource("/events");
    // "ready" comes first on every (re)connection: catch up on what was missed.
    source.addEventListener("ready", refresh);
    topics.forEach(function (topic) {
      if (topic) {
        source.addEventListener(topic, refresh);
      }
    });
  }

  // A page left for another is kept in the back/forward cache with its stream open, and
  // a browser allows only six connections to one server over HTTP/1.1: a few pages
  // later, every request would wait for one of those streams. So the stream closes when
  // the page is left, and opens again if the page is shown from the cache.
  window.addEventListener("pagehide", function () {
    if (source) {
      source.close();
      source = null;
    }
  });
  window.addEventListener("pageshow", function () {
    if (!source) {
      connect();
    }
  });
  connect();
})();
