/*
 * The chat widget: one script tag on any page shows a chat button and a panel.
 *
 *   <script src="https://APP/static/chat/widget.js" data-title="Chat with us"
 *           data-colour="#1f4e79" data-position="right" defer></script>
 *
 * No framework, no build step. It lives in a shadow root, so the page's CSS and its own don't
 * mix, and every text is set with textContent. Links to "#chat" on the page open it.
 *
 * Start: POST APP/chat/session {"token": stored or null} -> {"token", "conversation"}. The
 * token, signed by the server for one conversation, is kept in localStorage: no cookie is
 * needed, so it works where third-party cookies are blocked.
 * Socket: ws(s)://APP/ws/chat/?token=...&after=N, N the last seq held without a gap; the
 * history frame brings only what was missed, and a seq already shown is never shown twice.
 * Sending: a message gets a client id and waits in a queue (kept in localStorage) until the
 * server echoes it with that id; the queue is sent in order after every history frame, and the
 * server acknowledges an id it already stored without a second turn.
 * Reconnect: exponential backoff with equal jitter, 0.5 s doubling to 10 s; at once "online".
 * Typing: shown on {"type":"typing","active":true}, hidden on false, on a disconnect, or after
 * TYPING_TIMEOUT_MS. Protocol: agent/chat/consumer.py.
 * Limits: a "rate_limited" error means that message was not stored; the queue waits
 * "retry_after" seconds (the visitor is told, the message marked not sent), then is sent
 * again. Close code 4429 (too many chats from this network) waits BUSY_RETRY_MS to reconnect.
 */
(function () {
  "use strict";

  const script = document.currentScript || document.querySelector("script[src*='widget.js']");
  if (!script || document.querySelector("[data-chat-widget]")) return;
  const APP = new URL(script.src, location.href).origin;
  const conf = script.dataset;
  // The page's language (data-lang, else <html lang>, else the browser's): the labels
  // (GET APP/chat/labels?lang=, {"English": "translated"}) and the conversation's first language.
  const LANG = (conf.lang || document.documentElement.lang || navigator.language || "").slice(0, 35);
  let LABELS = {};
  const tr = (text, n) => (LABELS[text] || text).replace("{n}", n);
  const TITLE = (conf.title || "Chat with us").slice(0, 80);
  const wanted = conf.colour || conf.color || "";
  const COLOUR = wanted && CSS.supports("color", wanted) ? wanted : "#1f4e79";
  const SIDE = conf.position === "left" ? "left" : "right";
  const LISTING = /^\d{6}$/.test(conf.listing || "") ? conf.listing : null; // on screen

  const MAX_LENGTH = 2000;
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 10000;
  const TYPING_TIMEOUT_MS = 30000;
  const BUSY_RETRY_MS = 30000; // after close code 4429, at most this long before reconnecting
  const KEY = "chat-widget:" + APP + ":"; // storage key prefix: one widget state per app

  const CSS_TEXT = `
:host{all:initial;font:16px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
 color:#1d2630}
*{box-sizing:border-box}
:focus-visible{outline:3px solid #ffbf47;outline-offset:2px}
.vh{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
.launcher{display:flex;align-items:center;gap:8px;min-height:48px;padding:0 18px;border:0;
 border-radius:24px;background:var(--c);color:#fff;font:inherit;font-weight:600;cursor:pointer;
 box-shadow:0 4px 14px rgb(0 0 0/25%)}
.badge{min-width:22px;padding:0 6px;border-radius:11px;background:#b3261e;color:#fff;
 font-size:.8rem;line-height:22px;text-align:center}
.panel{position:absolute;bottom:60px;${SIDE}:0;display:flex;flex-direction:column;
 width:min(380px,calc(100vw - 32px));height:min(560px,calc(100vh - 96px));background:#fff;
 border:1px solid #dcd7cc;border-radius:12px;box-shadow:0 8px 30px rgb(0 0 0/20%);overflow:hidden}
.panel[hidden],[hidden]{display:none}
header{display:flex;align-items:center;gap:8px;padding:10px 12px;background:var(--c);color:#fff}
.heading{flex:1}
h2{margin:0;font-size:1rem}
.status{margin:0;font-size:.8rem;opacity:.9}
.close{width:40px;height:40px;border:0;border-radius:8px;background:transparent;color:#fff;
 font:inherit;font-size:1.4rem;line-height:1;cursor:pointer}
ol{flex:1;display:flex;flex-direction:column;gap:8px;margin:0;padding:12px;overflow-y:auto;
 list-style:none}
.msg{max-width:85%;padding:8px 12px;border-radius:12px;overflow-wrap:anywhere}
.who{display:block;font-size:.75rem;font-weight:600;opacity:.8}
.text{margin:0;white-space:pre-wrap}
.user{align-self:flex-end;background:var(--c);color:#fff;border-bottom-right-radius:4px}
.pending{opacity:.7}
.assistant{align-self:flex-start;background:#eef1f4;border-bottom-left-radius:4px}
.staff{align-self:flex-start;background:#fbf0dc;border-left:4px solid #b7791f;
 border-bottom-left-radius:4px}
.note{align-self:center;font-size:.8rem;color:#5b6673;text-align:center}
.note.error{color:#b3261e}
.typing{margin:0;padding:0 14px 6px;font-size:.85rem;font-style:italic;color:#5b6673}
form{display:grid;grid-template-columns:minmax(0,1fr) auto;gap:6px 8px;padding:10px;
 border-top:1px solid #dcd7cc}
textarea{width:100%;min-height:44px;max-height:140px;padding:8px 10px;font:inherit;color:inherit;
 border:1px solid #8a939c;border-radius:8px;resize:vertical}
.send{min-width:64px;min-height:44px;padding:0 14px;border:0;border-radius:8px;
 background:var(--c);color:#fff;font:inherit;font-weight:600;cursor:pointer}
.send:disabled{background:#9aa6b2;cursor:not-allowed}
.hint{grid-column:1/-1;margin:0;font-size:.75rem;color:#5b6673}
.homes{display:grid;gap:6px;margin:6px 0 0;padding:0;list-style:none}
.home{display:flex;gap:8px;padding:6px;border-radius:8px;background:#fff;color:inherit;
 text-decoration:none}
.home img{width:72px;height:48px;object-fit:cover;border-radius:6px}
.home b{display:block}
@media (max-width:480px){.panel{position:fixed;inset:0;width:auto;height:auto;border-radius:0}
 :host([data-open]) .launcher{display:none}}`;

  // ---- storage (it may be unavailable: then the widget still works, for this page only)
  function load(store, name) {
    try {
      return store.getItem(KEY + name);
    } catch (err) {
      return null;
    }
  }
  function save(store, name, value) {
    try {
      if (value === null) store.removeItem(KEY + name);
      else store.setItem(KEY + name, value);
    } catch (err) {
      /* private mode or full: keep it in memory only */
    }
  }

  // ---- the DOM
  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const name in attrs || {}) node.setAttribute(name, attrs[name]);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  const host = el("div", { "data-chat-widget": "" });
  const root = host.attachShadow({ mode: "open" });
  // Inline, so the page's own rules for div cannot move it; CSSOM, so a CSP allows it.
  Object.assign(host.style, { position: "fixed", bottom: "16px", [SIDE]: "16px",
    zIndex: "2147483000" });
  host.style.setProperty("--c", COLOUR);
  const launcher = el("button", {
    class: "launcher", type: "button", "aria-expanded": "false", "aria-controls": "panel",
  });
  const badge = el("span", { class: "badge", "aria-hidden": "true", hidden: "" });
  launcher.append(el("span", {}, TITLE), badge);
  const panel = el("section", { id: "panel", class: "panel", role: "dialog",
    "aria-labelledby": "title", hidden: "" });
  const head = el("header");
  const status = el("p", { class: "status", role: "status" }, "Connecting…");
  const close = el("button", { class: "close", type: "button", "aria-label": "Minimise chat" },
    "–");
  const titleBox = el("div", { class: "heading" });
  titleBox.append(el("h2", { id: "title" }, TITLE), status);
  head.append(titleBox, close);
  const transcript = el("ol", { "aria-live": "polite", "aria-relevant": "additions",
    "aria-label": "Conversation", tabindex: "0" });
  const typing = el("p", { class: "typing", hidden: "" }, "Typing…");
  const form = el("form", { autocomplete: "off" });
  const input = el("textarea", { id: "input", rows: "2", maxlength: String(MAX_LENGTH),
    placeholder: "Ask about a listing…", "aria-describedby": "hint" });
  const send = el("button", { class: "send", type: "submit", disabled: "" }, "Send");
  form.append(el("label", { for: "input", class: "vh" }, "Your message"), input, send,
    el("p", { id: "hint", class: "hint" }, "Enter to send, Shift+Enter for a new line."));
  panel.append(head, transcript, typing, form);
  if ("adoptedStyleSheets" in root) { // not subject to a page's CSP, unlike a <style>
    const sheet = new CSSStyleSheet();
    sheet.replaceSync(CSS_TEXT);
    root.adoptedStyleSheets = [sheet];
  } else {
    root.append(el("style", {}, CSS_TEXT));
  }
  root.append(panel, launcher);

  // ---- state
  const shown = new Set(); // seqs in the transcript
  let held = 0; // the highest seq held with every seq before it: "after" on reconnect
  let conversation = null;
  let token = load(localStorage, "token");
  let queue = readQueue(); // [{id, text}] waiting for the server's echo, in order
  let socket = null;
  let ready = false; // the current socket has sent its history frame
  let attempt = 0; // consecutive failures, for the backoff
  let retryTimer = null;
  let typingTimer = null;
  let firstHistory = true; // the page's first history is not "unread"
  let unread = 0;
  let refused = false; // this site is not allowed: stop trying
  let pausedUntil = 0; // Date.now() until which the server refuses messages (rate_limited)
  let pauseTimer = null;
  let pauseNote = null; // the transcript line that says when the messages go out again

  function readQueue() {
    try {
      const items = JSON.parse(load(localStorage, "queue") || "[]");
      return Array.isArray(items) ? items.filter((m) => m && typeof m.id === "string" &&
        typeof m.text === "string") : [];
    } catch (err) {
      return [];
    }
  }
  function saveQueue() {
    save(localStorage, "queue", queue.length ? JSON.stringify(queue) : null);
  }

  function newId() {
    const bytes = crypto.getRandomValues(new Uint8Array(12));
    return Date.now().toString(36) + "-" + Array.from(bytes, (b) => b.toString(16)
      .padStart(2, "0")).join("");
  }

  function isOpen() {
    return !panel.hidden;
  }
  function online() {
    return socket !== null && socket.readyState === WebSocket.OPEN && ready;
  }

  function setStatus(text) {
    status.textContent = text;
    updateSend();
  }
  function updateSend() {
    const text = input.value.trim();
    send.disabled = refused || text === "" || text.length > MAX_LENGTH;
  }
  function setUnread(count) {
    unread = count;
    badge.textContent = String(count);
    badge.hidden = count === 0;
    launcher.setAttribute("aria-label", count ? TITLE + ", " + count + " unread" : TITLE);
  }
  function showTyping(active) {
    window.clearTimeout(typingTimer);
    typing.hidden = !active;
    if (active) typingTimer = window.setTimeout(() => (typing.hidden = true), TYPING_TIMEOUT_MS);
  }

  function openPanel(focus) {
    panel.hidden = false;
    host.setAttribute("data-open", "");
    launcher.setAttribute("aria-expanded", "true");
    save(sessionStorage, "open", "1");
    setUnread(0);
    transcript.scrollTop = transcript.scrollHeight;
    if (focus) input.focus();
  }
  function closePanel() {
    panel.hidden = true;
    host.removeAttribute("data-open");
    launcher.setAttribute("aria-expanded", "false");
    save(sessionStorage, "open", null);
    launcher.focus();
  }

  // ---- the transcript
  function bubble(role, who, text) {
    const item = el("li", { class: "msg " + role });
    item.append(el("span", { class: "who" }, who), el("p", { class: "text" }, text));
    return item;
  }
  // Listing cards of an assistant message: links to the listing pages, on this app only.
  function cards(list) {
    const ul = el("ul", { class: "homes" });
    list.slice(0, 3).forEach((c) => {
      const url = new URL(String(c.url), APP);
      if (url.origin !== APP) return;
      const a = el("a", { class: "home", href: url.href });
      if (typeof c.photo === "string") a.append(el("img", { src: new URL(c.photo, APP).href,
        alt: "" }));
      const info = el("span", {}, c.bedrooms + tr(" bed · ") + c.bathrooms + tr(" bath · ") + c.town);
      info.prepend(el("b", {}, c.price + " · " + c.listing_id));
      a.append(info);
      const li = el("li", {});
      li.append(a);
      ul.append(li);
    });
    return ul;
  }
  function place(item, seq) {
    const later = Array.from(transcript.children).find(
      (node) => node.dataset.pending !== undefined || Number(node.dataset.seq) > seq);
    transcript.insertBefore(item, later || null);
  }

  function renderMessage(msg, live) {
    if (!Number.isInteger(msg.seq) || shown.has(msg.seq) || typeof msg.text !== "string") return;
    shown.add(msg.seq);
    while (shown.has(held + 1)) held += 1;
    let role = ["user", "assistant", "staff"].includes(msg.role) ? msg.role : "assistant";
    let who = tr(role === "user" ? "You" : "Assistant");
    if (role === "staff") who = typeof msg.name === "string" && msg.name ? msg.name + tr(" (staff)")
      : tr("Staff");
    const item = bubble(role, who, msg.text);
    if (Array.isArray(msg.listings)) item.append(cards(msg.listings));
    item.dataset.seq = String(msg.seq);
    if (typeof msg.route === "string") item.dataset.route = msg.route;
    place(item, msg.seq);
    if (typeof msg.id === "string") acknowledge(msg.id);
    if (live && role !== "user" && !isOpen()) setUnread(unread + 1);
  }

  function addNote(text, error) {
    const item = el("li", { class: error ? "note error" : "note" }, text);
    place(item, Infinity);
    return item;
  }

  function renderPending(item) {
    const node = bubble("user pending", tr("You · sending"), item.text);
    node.dataset.pending = item.id;
    transcript.append(node);
    if (paused()) markPending(item.id, tr("You · not sent yet"));
  }
  function markPending(id, who) { // id null: every pending message
    Array.from(transcript.children).filter((n) => n.dataset.pending !== undefined &&
      (id === null || n.dataset.pending === id))
      .forEach((n) => (n.querySelector(".who").textContent = who));
  }
  function acknowledge(id) {
    const before = queue.length;
    queue = queue.filter((item) => item.id !== id);
    if (queue.length !== before) saveQueue();
    const node = Array.from(transcript.children).find((n) => n.dataset.pending === id);
    if (node) node.remove();
  }

  function scrolled(change) {
    const near = transcript.scrollHeight - transcript.scrollTop - transcript.clientHeight < 48;
    change();
    if (near) transcript.scrollTop = transcript.scrollHeight;
  }

  // ---- rate limits: pause the queue until the server has room for it again
  function paused() {
    return pausedUntil > Date.now();
  }
  function pause(frame) {
    const seconds = Number.isInteger(frame.retry_after) && frame.retry_after > 0
      ? frame.retry_after : 10;
    pausedUntil = Math.max(pausedUntil, Date.now() + seconds * 1000);
    const wait = Math.ceil((pausedUntil - Date.now()) / 1000);
    const text = tr("You are sending messages faster than we can answer. Not sent yet: " +
      "we will send it again in {n} s.", wait);
    if (pauseNote !== null && pauseNote.isConnected) pauseNote.textContent = text;
    else pauseNote = addNote(text, true);
    markPending(typeof frame.id === "string" ? frame.id : null, tr("You · not sent yet"));
    window.clearTimeout(pauseTimer);
    pauseTimer = window.setTimeout(resume, pausedUntil - Date.now());
  }
  function resume() {
    pauseTimer = null;
    pausedUntil = 0;
    pauseNote = null; // the next refusal gets a line of its own
    markPending(null, tr("You · sending"));
    if (online()) queue.forEach(transmit);
  }

  // ---- frames from the server
  function handleFrame(frame) {
    switch (frame.type) {
      case "history":
        if (typeof frame.conversation === "string" && frame.conversation !== conversation) {
          if (conversation !== null) {
            Array.from(transcript.children).filter((n) => n.dataset.pending === undefined)
              .forEach((n) => n.remove());
            shown.clear();
            held = 0;
          }
          conversation = frame.conversation;
        }
        (Array.isArray(frame.messages) ? frame.messages : []).forEach(
          (msg) => renderMessage(msg, !firstHistory));
        firstHistory = false;
        ready = true;
        setStatus(tr("Online"));
        if (!paused()) queue.forEach(transmit); // what the history did not acknowledge, in order
        break;
      case "message":
        renderMessage(frame, true);
        break;
      case "typing":
        showTyping(frame.active === true);
        break;
      case "notice":
        if (typeof frame.text === "string") {
          addNote(frame.text, false);
          if (!isOpen()) setUnread(unread + 1);
        }
        break;
      case "error":
        if (frame.code === "bad_token") {
          token = null; // expired or revoked: start a new conversation
          save(localStorage, "token", null);
          return;
        }
        if (frame.code === "rate_limited") {
          pause(frame); // kept in the queue, sent again when the wait is over
          return;
        }
        if (frame.code === "too_many_connections") return; // the close (4429) tells the visitor
        addNote(typeof frame.message === "string" ? frame.message : tr("Something went wrong."),
          true);
        if (["empty_text", "text_too_long", "missing_text", "bad_id"].includes(frame.code)
            && queue.length) {
          const [rejected] = queue; // never accepted: give its text back
          acknowledge(rejected.id);
          if (input.value === "") input.value = rejected.text;
          updateSend();
        }
        break;
      default:
        return; // unknown frames are ignored
    }
  }

  function transmit(item) {
    const frame = { type: "message", text: item.text, id: item.id };
    if (item.listing) frame.listing = item.listing;
    socket.send(JSON.stringify(frame));
  }

  // ---- connecting
  function retry() {
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** attempt);
    const delay = ceiling / 2 + Math.random() * (ceiling / 2); // "equal jitter"
    attempt += 1;
    setStatus(tr("Offline, reconnecting in {n} s…", Math.ceil(delay / 1000)) +
      (queue.length ? tr(" Your messages will be sent then.") : ""));
    retryTimer = window.setTimeout(start, delay);
  }

  async function start() {
    retryTimer = null;
    if (refused) return;
    setStatus(tr("Connecting…"));
    if (token === null) {
      try {
        const response = await fetch(APP + "/chat/session", {
          method: "POST",
          headers: { "Content-Type": "text/plain" }, // a "simple" request: no preflight
          body: JSON.stringify({ token: null, lang: LANG }),
        });
        if (response.status === 403) {
          refused = true;
          setStatus(tr("The chat is not available on this site."));
          return;
        }
        if (!response.ok) throw new Error("HTTP " + response.status);
        token = (await response.json()).token;
        save(localStorage, "token", token);
      } catch (err) {
        retry();
        return;
      }
    }
    connect();
  }

  function connect() {
    const url = APP.replace(/^http/, "ws") + "/ws/chat/?token=" + encodeURIComponent(token) +
      "&after=" + held;
    socket = new WebSocket(url);
    socket.addEventListener("open", () => (attempt = 0));
    socket.addEventListener("message", (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch (err) {
        return; // not JSON: ignore
      }
      if (frame && typeof frame === "object") scrolled(() => handleFrame(frame));
    });
    socket.addEventListener("close", (event) => {
      socket = null;
      ready = false;
      showTyping(false);
      if (event.code === 4429) { // too many chats open from this network: wait longer
        const delay = BUSY_RETRY_MS / 2 + Math.random() * (BUSY_RETRY_MS / 2);
        setStatus(tr("Too many chats are open from your network. Trying again in {n} s…",
          Math.ceil(delay / 1000)));
        retryTimer = window.setTimeout(start, delay);
        return;
      }
      retry();
    });
  }

  // ---- the visitor
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (refused || text === "" || text.length > MAX_LENGTH) return;
    const item = { id: newId(), text: text };
    if (LISTING) item.listing = LISTING;
    queue.push(item);
    saveQueue();
    scrolled(() => renderPending(item));
    if (online() && !paused()) transmit(item);
    input.value = "";
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
  launcher.addEventListener("click", () => (isOpen() ? closePanel() : openPanel(true)));
  close.addEventListener("click", closePanel);
  panel.addEventListener("keydown", (event) => {
    if (event.key === "Escape") closePanel();
  });
  document.addEventListener("click", (event) => {
    const link = event.target.closest && event.target.closest('a[href="#chat"]');
    if (link) {
      event.preventDefault();
      openPanel(true);
    }
  });
  // Back online after a network drop: skip the rest of the backoff wait.
  window.addEventListener("online", () => {
    if (retryTimer !== null) {
      window.clearTimeout(retryTimer);
      start();
    }
  });

  document.body.append(host);
  queue.forEach(renderPending);
  if (load(sessionStorage, "open") === "1" || location.hash === "#chat") openPanel(false);
  setUnread(0);
  start();
  // The labels in the page's language: the built elements are relabelled (not the transcript's
  // messages), later texts read LABELS.
  fetch(APP + "/chat/labels?lang=" + encodeURIComponent(LANG)).then((r) => r.json()).then((l) => {
    LABELS = l && typeof l === "object" ? l : {};
    root.querySelectorAll("*").forEach((node) => {
      if (transcript.contains(node) && node !== transcript) return;
      for (const name of ["aria-label", "placeholder"]) {
        const value = node.getAttribute(name);
        if (value && LABELS[value]) node.setAttribute(name, LABELS[value]);
      }
      const text = node.childNodes.length === 1 && node.firstChild.nodeType === 3 &&
        node.textContent;
      if (text && LABELS[text]) node.textContent = LABELS[text];
    });
    updateSend();
  }).catch(() => {});
})();
