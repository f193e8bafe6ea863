/*
 * The staff side of the chat, on every admin page (templates/admin/base_site.html).
 *
 * One websocket per tab at /ws/staff/ (protocol: README.md, "Staff socket"). Everywhere: the count
 * of waiting handoffs in the header, with an optional sound when it goes up. On the handoff
 * queue: the list, live, with how long each visitor has waited. On a handoff: its live
 * transcript, claim / release / resolve, and the reply box.
 *
 * Visitors and models wrote the texts shown here: they are set with textContent only.
 */
(function () {
  "use strict";

  const count = document.getElementById("handoff-count");
  if (!count) return;
  const soundBox = document.getElementById("handoff-sound");
  const queueTable = document.getElementById("handoff-queue");
  const waitingText = document.getElementById("queue-waiting");
  const screen = document.getElementById("handoff-screen");

  let socket = null;
  let retryMs = 1000;
  let lastWaiting = null;
  let audio = null;

  // --- the sound -----------------------------------------------------------------------------
  soundBox.checked = localStorage.getItem("handoffSound") === "on";
  soundBox.addEventListener("change", function () {
    localStorage.setItem("handoffSound", soundBox.checked ? "on" : "off");
    if (soundBox.checked) beep(); // a click lets the page play sound from now on
  });

  function beep() {
    try {
      audio = audio || new AudioContext();
      const tone = audio.createOscillator();
      const gain = audio.createGain();
      tone.frequency.value = 880;
      gain.gain.setValueAtTime(0.15, audio.currentTime);
      gain.gain.exponentialRampToValueAtTime(0.001, audio.currentTime + 0.4);
      tone.connect(gain).connect(audio.destination);
      tone.start();
      tone.stop(audio.currentTime + 0.4);
    } catch (error) {
      console.warn("no sound:", error);
    }
  }

  // --- waited times ----------------------------------------------------------------------------
  // The same words as agent/staff/views.py waited().
  function waited(since) {
    const minutes = Math.max(0, Math.floor((Date.now() - Date.parse(since)) / 60000));
    if (minutes < 1) return "under a minute";
    if (minutes < 60) return minutes + " min";
    return Math.floor(minutes / 60) + " h " + (minutes % 60) + " min";
  }

  function refreshWaited() {
    document.querySelectorAll("[data-since]").forEach(function (cell) {
      cell.textContent = waited(cell.dataset.since);
    });
  }
  setInterval(refreshWaited, 20000);

  // --- the queue -------------------------------------------------------------------------------
  function cell(row, text) {
    const td = document.createElement("td");
    td.textContent = text;
    row.appendChild(td);
    return td;
  }

  function renderQueue(items, more) {
    const body = queueTable.tBodies[0];
    const rows = items.map(function (item) {
      const row = document.createElement("tr");
      cell(row, waited(item.queued_at)).dataset.since = item.queued_at;
      cell(row, item.status + (item.claimed_by ? " by " + item.claimed_by : ""));
      cell(row, item.reason);
      cell(row, item.text);
      cell(row, item.visitor || "—");
      const link = document.createElement("a");
      link.href = item.url;
      link.textContent = "Open";
      cell(row, "").appendChild(link);
      return row;
    });
    if (!rows.length && !more) {
      const row = document.createElement("tr");
      cell(row, "No one is waiting.").colSpan = 6;
      rows.push(row);
    }
    if (more) {
      const row = document.createElement("tr");
      row.className = "queue-more";
      cell(row, "+ " + more + " more").colSpan = 6;
      rows.push(row);
    }
    body.replaceChildren(...rows);
  }

  // The queue as this tab knows it (README.md, "Staff socket", on ordering): the oldest open
  // handoffs, the newest version seen of each, and the counts of the highest "counted".
  const queue = {
    synced: false, // a "queue" frame came since the socket opened
    early: [], // queue_change frames that came before it
    items: [], // open handoffs shown, oldest first, at most limit
    versions: new Map(), // handoff id -> highest version seen
    resolved: new Set(), // ids seen resolved: they never come back
    limit: 50,
    counted: -1,
    waiting: 0,
    open: 0,
    askedAt: 0,
  };

  function newer(item) {
    if (queue.resolved.has(item.id)) return false;
    return item.version > (queue.versions.get(item.id) || 0);
  }

  function remember(item) {
    queue.versions.set(item.id, Math.max(item.version, queue.versions.get(item.id) || 0));
    if (item.status === "resolved") queue.resolved.add(item.id);
  }

  function takeCounts(frame) {
    if (frame.counted <= queue.counted) return;
    queue.counted = frame.counted;
    queue.waiting = frame.waiting;
    queue.open = frame.open;
  }

  function byAge(a, b) {
    return a.queued_at < b.queued_at ? -1 : a.queued_at > b.queued_at ? 1 : a.id - b.id;
  }

  // One handoff's change; returns whether it changed what this tab shows.
  function applyChange(frame) {
    takeCounts(frame);
    const item = frame.handoff;
    if (!newer(item)) return;
    const complete = queue.items.length >= queue.open - 1; // held every open one before
    remember(item);
    const at = queue.items.findIndex(function (h) { return h.id === item.id; });
    if (item.status === "resolved") {
      if (at >= 0) queue.items.splice(at, 1);
    } else if (at >= 0) {
      queue.items[at] = item;
    } else if (complete && queue.items.length < queue.limit) {
      queue.items.push(item);
      queue.items.sort(byAge);
    }
    if (screen && item.id === Number(screen.dataset.handoff)) showState(item);
  }

  function onQueue(frame) {
    queue.synced = true;
    // As many as the server's bound let it list (its limit, or fewer when its bytes ran out).
    queue.limit = frame.more ? frame.handoffs.length : frame.limit;
    takeCounts(frame);
    queue.items = frame.handoffs.filter(function (item) {
      return !queue.resolved.has(item.id);
    });
    queue.items.forEach(remember);
    if (screen) {
      const id = Number(screen.dataset.handoff);
      const item = frame.handoffs.find(function (h) { return h.id === id; });
      // Not listed: resolved, unless the frame left open handoffs out ("more").
      if (item) showState(item);
      else if (!frame.more) showState({ status: "resolved", claimed_by: null, claimed_by_id: null });
    }
    const early = queue.early;
    queue.early = [];
    early.forEach(applyChange);
    showQueue();
  }

  function onQueueChange(frame) {
    if (!queue.synced) {
      queue.early.push(frame);
      return;
    }
    applyChange(frame);
    showQueue();
  }

  function showQueue() {
    const waiting = queue.waiting;
    count.textContent = String(waiting);
    count.classList.toggle("handoff-count--waiting", waiting > 0);
    if (lastWaiting !== null && waiting > lastWaiting && soundBox.checked) beep();
    lastWaiting = waiting;
    if (waitingText) waitingText.textContent = String(waiting);
    if (!queueTable) return;
    const more = Math.max(0, queue.open - queue.items.length);
    renderQueue(queue.items, more);
    // Resolved ones left a gap that handoffs this tab never got should fill: ask again.
    if (more && queue.items.length < queue.limit && Date.now() - queue.askedAt > 2000) {
      queue.askedAt = Date.now();
      // As on connect: changes that come before the answer are applied after it.
      if (send({ type: "queue" })) queue.synced = false;
    }
  }

  // --- one handoff -----------------------------------------------------------------------------
  let lastSeq = 0;
  const transcript = screen && document.getElementById("transcript");
  const replyForm = screen && document.getElementById("reply-form");
  const replyText = screen && document.getElementById("reply-text");
  const errorLine = screen && document.getElementById("handoff-error");
  const typing = screen && document.getElementById("typing");

  function showState(state) {
    const mine = state.claimed_by_id !== null && state.claimed_by_id === Number(screen.dataset.me);
    let text = state.status;
    if (state.claimed_by) text += " by " + state.claimed_by + (mine ? " (you)" : "");
    document.getElementById("handoff-state").textContent = text;
    const allowed = {
      claim: state.status === "queued",
      release: state.status === "claimed" && mine,
      resolve: state.status === "queued" || (state.status === "claimed" && mine),
    };
    screen.querySelectorAll("[data-action]").forEach(function (button) {
      button.disabled = !allowed[button.dataset.action];
    });
    replyText.disabled = !(state.status === "claimed" && mine);
    replyForm.querySelector("button").disabled = replyText.disabled;
  }

  function addLine(className, who, text) {
    const item = document.createElement("li");
    item.className = className;
    if (who) {
      const name = document.createElement("strong");
      name.textContent = who + ": ";
      item.appendChild(name);
    }
    const body = document.createElement("span");
    body.textContent = text;
    item.appendChild(body);
    transcript.appendChild(item);
    item.scrollIntoView({ block: "nearest" });
  }

  const WHO = { user: "Visitor", assistant: "Bot" };

  function addMessage(message) {
    if (message.seq <= lastSeq) return; // already shown
    lastSeq = message.seq;
    const who = WHO[message.role] || message.name || "Staff";
    addLine("msg msg-" + message.role, who, message.text);
  }

  function showError(text) {
    errorLine.textContent = text;
    errorLine.hidden = !text;
  }

  if (screen) {
    lastSeq = Number(screen.dataset.lastSeq) || 0;
    showState({
      status: screen.dataset.status,
      claimed_by: screen.dataset.claimedBy || null,
      claimed_by_id: screen.dataset.claimedById ? Number(screen.dataset.claimedById) : null,
    });
    screen.querySelectorAll("[data-action]").forEach(function (button) {
      button.addEventListener("click", function () {
        showError("");
        send({ type: button.dataset.action, handoff: Number(screen.dataset.handoff) });
      });
    });
    replyForm.addEventListener("submit", function (event) {
      event.preventDefault();
      const text = replyText.value.trim();
      if (!text) return;
      showError("");
      if (send({ type: "message", handoff: Number(screen.dataset.handoff), text: text })) {
        replyText.value = "";
      }
    });
  }

  // --- the socket ------------------------------------------------------------------------------
  function send(frame) {
    if (!socket || socket.readyState !== WebSocket.OPEN) {
      if (screen) showError("Not connected; trying again. Nothing was sent.");
      return false;
    }
    socket.send(JSON.stringify(frame));
    return true;
  }

  function handle(frame) {
    if (frame.type === "queue") onQueue(frame);
    else if (frame.type === "queue_change") onQueueChange(frame);
    if (!screen) return;
    if (frame.type === "history") frame.messages.forEach(addMessage);
    else if (frame.type === "message") addMessage(frame);
    else if (frame.type === "notice") addLine("msg msg-notice", "", frame.text);
    else if (frame.type === "typing") typing.hidden = !frame.active;
    else if (frame.type === "error") showError(frame.message);
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + "/ws/staff/");
    socket.addEventListener("open", function () {
      retryMs = 1000;
      queue.synced = false; // hold changes until this socket's "queue" frame
      queue.early = [];
      if (screen) showError("");
      if (screen) send({ type: "watch", conversation: screen.dataset.conversation, after: lastSeq });
    });
    socket.addEventListener("message", function (event) {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch (error) {
        console.warn("not JSON from /ws/staff/:", event.data);
        return;
      }
      handle(frame);
    });
    socket.addEventListener("close", function () {
      count.textContent = "?"; // unknown until the socket is back
      setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 30000);
    });
  }

  connect();
})();
