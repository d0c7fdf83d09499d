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

  function heard(name) {
    if (name === "ready" || topics.indexOf(name) >= 0) {
      refresh();
    }
  }

  // One event stream per browser, not per tab. Over HTTP/1.1 a browser opens at most six
  // connections to a server, and a stream holds one for as long as it is open: with a
  // stream per tab, the seventh tab's requests would wait. So the tabs elect one of
  // themselves (a Web Lock), which holds the stream and passes what it hears to the
  // others (a BroadcastChannel); when it goes, the next tab takes over. Pages of a browser
  // without these APIs keep a stream each. Over HTTPS the server speaks HTTP/2, where
  // streams share one connection anyway.
  var NAMES = ["ready", "sessions", "signoffs", "fleet"];
  var shared = !!(window.BroadcastChannel && navigator.locks && navigator.locks.request);
  var channel = shared ? new BroadcastChannel("signoff-events") : null;
  var source = null;
  var release = null;
  var waiting = null;
  var retry = null;

  function open() {
    source = new EventSource("/events");
    NAMES.forEach(function (name) {
      source.addEventListener(name, function () {
        if (channel) {
          channel.postMessage(name);
        }
        heard(name);
      });
    });
    source.addEventListener("error", function () {
      // A network error retries by itself; a refusal (logged out, session expired) does
      // not: give the stream up, let the page find out (a refresh that is sent to the
      // login page reloads it), and try again in a while.
      if (source && source.readyState === EventSource.CLOSED) {
        stop();
        refresh();
        retry = setTimeout(start, 5000);
      }
    });
  }

  function stop() {
    if (waiting) {
      waiting.abort();
      waiting = null;
    }
    if (source) {
      source.close();
      source = null;
    }
    if (release) {
      release();
      release = null;
    }
    if (retry) {
      clearTimeout(retry);
      retry = null;
    }
  }

  function lead() {
    // Granted when no other tab of this browser holds the stream; held until stop().
    var options = {};
    if (window.AbortController) {
      waiting = new AbortController();
      options.signal = waiting.signal;
    }
    navigator.locks
      .request("signoff-events", options, function () {
        waiting = null;
        return new Promise(function (resolve) {
          release = resolve;
          open();
        });
      })
      .catch(function () {});
  }

  function start() {
    retry = null;
    if (shared) {
      // Until this tab leads, it hears the leader; catch up on what changed since this
      // page was rendered.
      refresh();
      lead();
    } else {
      // "ready" comes first on every (re)connection: catch up on what was missed.
      open();
    }
  }

  if (channel) {
    channel.onmessage = function (e) {
      heard(String(e.data));
    };
  }
  // A page left for another closes its stream and gives up the lead (kept in the
  // back/forward cache, it would hold the connection); shown again, it starts over.
  window.addEventListener("pagehide", stop);
  window.addEventListener("pageshow", function (e) {
    if (e.persisted) {
      start();
    }
  });
  start();
})();
