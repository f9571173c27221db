// warmspace dashboard: the live parts, over Server-Sent Events, and a few
// conveniences. Pages work without it; this keeps the unread badge, the
// pool counts and build logs current, asks before an action in a dialog
// rather than on a page of its own, and fixes a preset's values on the
// create form as the preset is chosen.
"use strict";

(function () {
  // Actions ask first. Their links lead to a confirmation page; with this
  // script the page's one dialog asks instead, its form pointed at the link.
  const dialog = document.getElementById("confirm");
  if (dialog && dialog.showModal) {
    document.addEventListener("click", function (event) {
      const link = event.target.closest(".acts a");
      const workspace = link && link.closest("[data-ws]");
      if (!workspace) {
        return;
      }
      event.preventDefault();
      const action = link.pathname.split("/").pop();
      document.getElementById("confirm-form").action = link.href;
      document.getElementById("confirm-question").textContent =
        link.textContent + " workspace " + workspace.dataset.ws + "?";
      for (const consequence of dialog.querySelectorAll("[data-action]")) {
        consequence.hidden = consequence.dataset.action !== action;
      }
      document.getElementById("confirm-yes").textContent = link.textContent;
      dialog.showModal();
    });
  }

  // The create form: choosing a preset fixes the values it sets (disabled
  // fields are not sent: the preset's own values apply) and frees the others.
  for (const radio of document.querySelectorAll("#presets input[type=radio]")) {
    radio.addEventListener("change", function () {
      const values = JSON.parse(radio.dataset.values || "{}");
      for (const field of document.querySelectorAll("[data-param]")) {
        const fixed = values[field.dataset.param];
        if (fixed !== undefined) {
          field.value = fixed;
          field.disabled = true;
        } else if (field.disabled) {
          field.value = field.dataset.default;
          field.disabled = false;
        }
      }
    });
  }

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

  // Build logs: the latest build's is followed at once, an older one's
  // when it is opened. Each line is appended as it is stored; the end says
  // how the build went (and, for the latest, how the workspace now is).
  function follow(log) {
    if (log.dataset.following) {
      return;
    }
    log.dataset.following = "true";
    const stream = open(log.dataset.log);
    const build = log.closest("details");
    stream.addEventListener("log", function (event) {
      log.append(JSON.parse(event.data).output + "\n");
    });
    stream.addEventListener("end", function (event) {
      // Closed here, or the browser would reconnect and follow it again.
      stream.close();
      const end = JSON.parse(event.data);
      if (end.build_status) {
        build.querySelector(".build-status").textContent = end.build_status;
      }
      if (end.error) {
        const error = build.querySelector(".job-error");
        error.textContent = end.error;
        error.hidden = false;
      }
      if (log.dataset.latest !== undefined && end.latest && end.build_status) {
        document.getElementById("status").textContent = end.build_status;
        const made = document.getElementById("made");
        made.textContent = end.made;
        made.classList.toggle("claimed", end.claimed);
        for (const link of document.querySelectorAll("#actions a")) {
          link.hidden = !end.actions.includes(link.pathname.split("/").pop());
        }
      }
      log.dataset.ended = "true";
    });
  }
  for (const log of document.querySelectorAll("pre.log[data-log]")) {
    const build = log.closest("details");
    if (build.open) {
      follow(log);
    } else {
      build.addEventListener("toggle", function () {
        follow(log);
      }, { once: true });
    }
  }
})();
