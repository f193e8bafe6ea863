/*
 * The staff side of the chat, on every admin page (templates/admin/base_site.html).
 *
 * One websocket per tab at /ws/staff/ (protocol: agent/staff/consumer.py). Everywhere: the count
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

  function renderQueue(items) {
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
    if (!rows.length) {
      const row = document.createElement("tr");
      cell(row, "No one is waiting.").colSpan = 6;
      rows.push(row);
    }
    body.replaceChildren(...rows);
  }

  function onQueue(frame) {
    count.textContent = String(frame.waiting);
    count.classList.toggle("handoff-count--waiting", frame.waiting > 0);
    if (lastWaiting !== null && frame.waiting > lastWaiting && soundBox.checked) beep();
    lastWaiting = frame.waiting;
    if (waitingText) waitingText.textContent = String(frame.waiting);
    if (queueTable) renderQueue(frame.handoffs);
    if (screen) {
      const id = Number(screen.dataset.handoff);
      const item = frame.handoffs.find(function (h) { return h.id === id; });
      // Not listed: resolved, unless the frame left open handoffs out ("more").
      if (item) showState(item);
      else if (!frame.more) showState({ status: "resolved", claimed_by: null, claimed_by_id: null });
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
