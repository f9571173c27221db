// warmspace dashboard: the live parts, over Server-Sent Events. Pages work
// without it; this keeps the unread badge and the pool counts current.
"use strict";

(function () {
  if (!window.EventSource) {
    return;
  }
  // Streams are closed as the page is left: a browser allows few
  // connections to one server, and a stream kept open by a page in its
  // back-forward cache would hold one of them.
  const streams = [];
  function open(url) {
    const stream = new EventSource(url);
    streams.push(stream);
    return stream;
  }
  window.addEventListener("pagehide", function () {
    for (const stream of streams) {
      stream.close();
    }
  });

  const badge = document.getElementById("unread");
  if (badge) {
    const inbox = open("/notifications/events");
    inbox.addEventListener("unread", function (event) {
      const unread = Number(JSON.parse(event.data).unread) || 0;
      badge.textContent = String(unread);
      badge.hidden = unread === 0;
    });
  }

  // A pool's status in words, as the server writes it (web/prebuilds.rs).
  function poolStatus(pool) {
    switch (pool.status) {
      case "backoff":
        return pool.backoff_until
          ? "backoff until " + new Date(pool.backoff_until).toISOString().slice(11, 19) + " UTC"
          : "backoff";
      case "hard_limited":
        return "hard-limited";
      case "validation_failed":
        return "validation failed";
      default:
        return String(pool.status);
    }
  }

  // The pools of the Prebuilds page, and of a template's page.
  const pools = document.getElementById("pools");
  if (pools && pools.dataset.live) {
    const stream = open(pools.dataset.live);
    stream.addEventListener("pools", function (event) {
      const status = JSON.parse(event.data);
      for (const pool of status.presets) {
        const row = document.getElementById("pool-" + pool.preset_id);
        if (!row) {
          continue; // A pool that appeared since the page loaded shows on the next load.
        }
        for (const cell of row.querySelectorAll("[data-field]")) {
          const field = cell.dataset.field;
          const value = field === "status" ? poolStatus(pool) : pool[field];
          if (value !== undefined) {
            cell.textContent = String(value);
          }
        }
      }
      pools.dataset.updated = String(Date.now());
    });
  }
})();
