/*
 * Chat panel for the agency page. No framework, no build step.
 *
 * Protocol (one websocket at ws(s)://<host>/ws/chat/; the session cookie names the conversation):
 *   server -> client
 *     {"type": "history", "conversation": uuid, "messages": [message, ...]}  replace the transcript
 *     {"type": "message", "role": "user"|"assistant"|"staff", "text", "seq", "route"?}
 *         every stored message, the visitor's own included (echoed once stored);
 *         rendered in seq order, a seq already shown is ignored
 *     {"type": "typing", "active": bool}                 show or hide "Agent is typing…"
 *     {"type": "error", "code", "message"}               shown as a small system note
 *   client -> server
 *     {"type": "message", "text"}                        1-2000 characters after trimming
 * When the socket closes we reconnect with exponential backoff and jitter (0.5 s doubling to 10 s);
 * the history frame sent on connect re-syncs the transcript. Every text is set with textContent.
 */
(function () {
  "use strict";

  const MAX_LENGTH = 2000;
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 10000;
  const LABELS = { user: "You", assistant: "Agent", staff: "Staff" };

  const transcript = document.getElementById("chat-transcript");
  const typing = document.getElementById("chat-typing");
  const status = document.getElementById("chat-status");
  const form = document.getElementById("chat-form");
  const input = document.getElementById("chat-input");
  const send = document.getElementById("chat-send");

  const shown = new Set(); // seqs already in the transcript
  let socket = null;
  let attempt = 0; // consecutive failed connections, for the backoff
  let retryTimer = null;
  let pending = ""; // the last text sent, restored to the box if the server rejects it

  function setStatus(state, text) {
    status.dataset.state = state;
    status.textContent = text;
    updateSend();
  }

  function isOnline() {
    return socket !== null && socket.readyState === WebSocket.OPEN;
  }

  function updateSend() {
    send.disabled = !isOnline() || input.value.trim() === "";
  }

  function nearBottom() {
    return transcript.scrollHeight - transcript.scrollTop - transcript.clientHeight < 48;
  }

  function scrollToEnd(wasNearBottom) {
    if (wasNearBottom) transcript.scrollTop = transcript.scrollHeight;
  }

  function renderMessage(msg) {
    if (!Number.isInteger(msg.seq) || shown.has(msg.seq) || typeof msg.text !== "string") return;
    shown.add(msg.seq);
    const role = Object.hasOwn(LABELS, msg.role) ? msg.role : "assistant";

    const item = document.createElement("li");
    item.className = "msg msg--" + role;
    item.dataset.seq = String(msg.seq);
    item.dataset.role = role;
    if (role === "assistant" && typeof msg.route === "string") item.dataset.route = msg.route;

    const who = document.createElement("span");
    who.className = "msg-who";
    who.textContent = LABELS[role] + ": ";
    const body = document.createElement("p");
    body.className = "msg-text";
    body.textContent = msg.text;
    item.append(who, body);

    // Keep seq order: insert before the first message with a larger seq.
    const later = Array.from(transcript.querySelectorAll("li[data-seq]")).find(
      (el) => Number(el.dataset.seq) > msg.seq,
    );
    transcript.insertBefore(item, later || null);
    if (role === "user" && msg.text === pending) pending = "";
  }

  function addNote(text) {
    const item = document.createElement("li");
    item.className = "note";
    item.textContent = text;
    transcript.append(item);
  }

  function handleFrame(frame) {
    const wasNearBottom = nearBottom();
    switch (frame.type) {
      case "history":
        transcript.setAttribute("aria-busy", "true");
        transcript.replaceChildren();
        shown.clear();
        if (typeof frame.conversation === "string") {
          transcript.dataset.conversation = frame.conversation;
        }
        (Array.isArray(frame.messages) ? frame.messages : []).forEach(renderMessage);
        transcript.setAttribute("aria-busy", "false");
        scrollToEnd(true);
        return;
      case "message":
        renderMessage(frame);
        break;
      case "typing":
        typing.hidden = !frame.active;
        break;
      case "error":
        addNote(String(frame.message || "Something went wrong."));
        if (pending && input.value === "") {
          input.value = pending; // the message was not stored: give it back
          updateSend();
        }
        pending = "";
        break;
      default:
        return; // unknown frames are ignored
    }
    scrollToEnd(wasNearBottom);
  }

  function connect() {
    retryTimer = null;
    const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    setStatus("connecting", "Connecting…");
    socket = new WebSocket(scheme + window.location.host + "/ws/chat/");

    socket.addEventListener("open", () => {
      attempt = 0;
      setStatus("online", "Online");
    });
    socket.addEventListener("message", (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch (err) {
        return; // not JSON: ignore
      }
      if (frame && typeof frame === "object") handleFrame(frame);
    });
    socket.addEventListener("close", () => {
      socket = null;
      typing.hidden = true;
      const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** attempt);
      const delay = ceiling / 2 + Math.random() * (ceiling / 2); // "equal jitter"
      attempt += 1;
      setStatus("offline", "Offline, reconnecting in " + Math.ceil(delay / 1000) + " s…");
      retryTimer = window.setTimeout(connect, delay);
    });
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!isOnline() || text === "" || text.length > MAX_LENGTH) return;
    socket.send(JSON.stringify({ type: "message", text: text }));
    pending = text;
    input.value = ""; // the server echoes the message back once it is stored
    updateSend();
    input.focus();
  });

  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  input.addEventListener("input", updateSend);

  // Back online after a network drop: skip the rest of the backoff wait.
  window.addEventListener("online", () => {
    if (retryTimer !== null) {
      window.clearTimeout(retryTimer);
      connect();
    }
  });

  connect();
})();
