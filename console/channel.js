// The channel view: a live tail over Server-Sent Events, a publish form with a JSON editor, and
// the history browser. The room field at the top chooses what the tail and history show.

import { ApiError, enc, get, instancePath, post, session } from "./api.js";
import { announce, clear, field, form, h, pretty, setFieldError, when } from "./ui.js";

const TAIL_LIMIT = 500;

export async function channelPage(root, ctx) {
  const [instance, name] = ctx.params;
  const channelPath = instancePath(instance, `channels/${enc(name)}/`);
  const channel = await get(channelPath);
  if (!ctx.current()) return;
  const rooms = channel.type === "separate_rooms";
  let room = null;
  let tail = null;
  ctx.onLeave(() => tail && tail.stop());

  const tailSection = h("section", { class: "card panel", id: "tail", "aria-labelledby": "tail-title" });
  const historySection = h("section", { class: "card panel", id: "history", "aria-labelledby": "history-title" });
  const publishSection = h("section", { class: "card panel", id: "publish-card", "aria-labelledby": "publish-title" });

  const history = historyBrowser(historySection, channelPath);
  const watch = async (newRoom) => {
    room = newRoom;
    if (tail) tail.stop();
    tail = null;
    if (rooms && !room) {
      tailPlaceholder(tailSection, "Choose a room above to follow it live.");
      history.show(null, false);
      return;
    }
    const started = await startTail(tailSection, { channelPath, room });
    if (!ctx.current() || room !== newRoom) {
      // The page or the room changed while the tail was starting.
      started.stop();
      return;
    }
    tail = started;
    history.show(room, true);
  };

  const roomBar = rooms
    ? form("room", {
        inline: true,
        fields: [
          field("room", {
            name: "room",
            label: "Room",
            hint: "This channel is split into rooms: the live tail and the history show one room.",
            attrs: { autocomplete: "off", required: true },
          }),
        ],
        submit: "Watch room",
        onSubmit: async ({ room: value }, el) => {
          const chosen = value.trim().toLowerCase();
          if (!chosen) throw { fields: { room: ["Enter a room name."] } };
          const publishRoom = document.getElementById("publish-room");
          if (publishRoom && (publishRoom.value === "" || publishRoom.value === (room ?? ""))) publishRoom.value = chosen;
          el.querySelector("#room-room").value = chosen;
          await watch(chosen);
          announce(`Watching room ${chosen}.`);
        },
      })
    : null;

  publishForm(publishSection, {
    channel,
    channelPath,
    rooms,
    published: (message) => {
      if (!rooms || message.room === room) history.refreshIfFirstPage();
    },
  });

  clear(
    root,
    h(
      "p",
      { class: "crumbs" },
      h("a", { href: "#/instances" }, "Instances"),
      " / ",
      h("a", { href: `#/i/${enc(instance)}/channels` }, instance),
      " / ",
    ),
    h("h1", { tabindex: "-1" }, channel.name),
    h(
      "p",
      { class: "meta" },
      h("span", { class: "badge" }, channel.type),
      h("span", { class: "badge" }, `other: ${channel.other_permissions}`),
      channel.group && h("span", { class: "badge" }, `group ${channel.group}: ${channel.group_permissions}`),
      h("span", { class: "badge" }, channel.custom_publish ? "custom_publish" : "no custom_publish"),
      channel.description,
    ),
    roomBar && h("div", { class: "card room-bar" }, roomBar),
    h("div", { class: "channel-grid" }, h("div", { class: "column" }, publishSection), h("div", { class: "column" }, tailSection, historySection)),
  );
  await watch(null);
}

function tailPlaceholder(section, text) {
  clear(section, h("h2", { id: "tail-title" }, "Live tail"), h("p", { class: "muted", id: "tail-status", dataset: { state: "idle" } }, text));
}

// ---- Publish -----------------------------------------------------------------------------------

function publishForm(section, { channel, channelPath, rooms, published }) {
  const result = h("p", { class: "ok", id: "publish-result", role: "status", hidden: true });
  const payloadField = field("publish", {
    name: "payload",
    label: "Payload (JSON object)",
    type: "textarea",
    value: '{\n  "message": "Hello!"\n}',
    hint: "Checked before sending. Ctrl+Enter publishes.",
    attrs: { rows: 5, class: "mono" },
  });
  const publish = form("publish", {
    fields: [
      rooms && field("publish", { name: "room", label: "Room", attrs: { autocomplete: "off" } }),
      payloadField,
    ],
    submit: "Publish",
    extra: [],
    onSubmit: async (values, el) => {
      result.hidden = true;
      const editor = el.querySelector("#publish-payload");
      const payload = checkPayload(editor);
      if (payload === undefined) {
        editor.focus();
        return;
      }
      const body = { payload };
      if (rooms) body.room = values.room;
      const message = await post(`${channelPath}publish/`, body);
      result.textContent = `Published message ${message.id}${message.room ? ` to room ${message.room}` : ""}.`;
      result.hidden = false;
      announce(result.textContent);
      published(message);
    },
  });
  const editor = publish.querySelector("#publish-payload");
  let timer = null;
  editor.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => checkPayload(editor, { quietWhenEmpty: true }), 400);
  });
  editor.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      publish.requestSubmit();
    }
  });
  clear(
    section,
    h("h2", { id: "publish-title" }, "Publish"),
    channel.custom_publish
      ? null
      : h("p", { class: "muted" }, "This channel has custom_publish off: the server will refuse publishing until it is turned on."),
    publish,
    result,
  );
}

// The editor's value as a JSON object, or undefined after showing why it is not one.
function checkPayload(editor, { quietWhenEmpty = false } = {}) {
  const text = editor.value.trim();
  if (text === "") {
    if (quietWhenEmpty) {
      setFieldError(editor, null);
      return undefined;
    }
    setFieldError(editor, "Enter a JSON object, e.g. {\"message\": \"Hello\"}.");
    return undefined;
  }
  let value;
  try {
    value = JSON.parse(text);
  } catch (err) {
    setFieldError(editor, `Invalid JSON: ${err.message}`);
    return undefined;
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    setFieldError(editor, "The payload must be a JSON object ({ … }), not " + (Array.isArray(value) ? "a list." : `${value === null ? "null" : typeof value}.`));
    return undefined;
  }
  setFieldError(editor, null);
  return value;
}

// ---- Live tail ---------------------------------------------------------------------------------

// Follows the room over SSE from its newest message on. The browser resumes a dropped stream by
// itself with Last-Event-ID; when it gives up (the server answered an error while coming back),
// the tail asks why and reconnects with last_id, or stops and says why. Messages are shown once:
// anything at or below the last id shown is dropped.
async function startTail(section, { channelPath, room }) {
  const status = h("p", { id: "tail-status", class: "tail-status", role: "status", dataset: { state: "connecting", reconnects: "0", duplicates: "0" } }, "Connecting…");
  const list = h("ol", { id: "tail-list", class: "messages", reversed: true });
  const toggle = h("button", { type: "button", class: "secondary small", id: "tail-toggle" }, "Pause");
  const clearButton = h("button", { type: "button", class: "secondary small", id: "tail-clear" }, "Clear");
  clear(
    section,
    h("div", { class: "panel-head" }, h("h2", { id: "tail-title" }, "Live tail", room ? h("span", { class: "muted" }, ` · room ${room}`) : null), h("div", { class: "buttons" }, toggle, clearButton)),
    status,
    h("div", { class: "scroll" }, list),
  );

  const roomQuery = room ? `&room=${enc(room)}` : "";
  const newest = await get(`${channelPath}history/?page_size=1${roomQuery}`);
  let lastId = newest.objects.length ? newest.objects[0].id : 0;
  const seen = new Set();
  let source = null;
  let stopped = false;
  let paused = false;
  let retry = null;
  let failures = 0;
  let reconnects = 0;
  let duplicates = 0;

  let stateText = "";
  const setState = (state, text) => {
    stateText = text;
    status.dataset.state = state;
    status.dataset.reconnects = String(reconnects);
    status.dataset.duplicates = String(duplicates);
    const parts = [text];
    if (reconnects) parts.push(`resumed ${reconnects}×`);
    if (duplicates) parts.push(`${duplicates} duplicate${duplicates === 1 ? "" : "s"} dropped`);
    status.textContent = parts.join(" · ");
  };
  const marker = (cls, text) => {
    list.prepend(h("li", { class: `marker ${cls}` }, text));
    trim();
  };
  const trim = () => {
    while (list.children.length > TAIL_LIMIT) list.lastElementChild.remove();
  };
  const url = () => {
    const params = new URLSearchParams({ transport: "sse", last_id: String(lastId), api_key: session.key() || "" });
    if (room) params.set("room", room);
    return `${channelPath}poll/?${params}`;
  };

  const connect = () => {
    retry = null;
    const es = new EventSource(url());
    source = es;
    setState(reconnects ? "reconnecting" : "connecting", reconnects ? "Reconnecting…" : "Connecting…");
    es.addEventListener("open", () => {
      failures = 0;
      setState("live", `Live, following from message ${lastId}`);
    });
    es.addEventListener("message", (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (seen.has(message.id) || message.id <= lastId) {
        duplicates += 1;
        setState(status.dataset.state, stateText);
        return;
      }
      seen.add(message.id);
      lastId = message.id;
      list.prepend(messageItem(message, "tail"));
      trim();
      setState("live", `Live, last message ${lastId}`);
    });
    es.addEventListener("gap", (event) => {
      const gap = JSON.parse(event.data);
      const what = gap.from === gap.to ? `message ${gap.from} was` : `messages ${gap.from}–${gap.to} were`;
      marker("gap", `Gap: ${what} removed by retention before the tail could read it.`);
    });
    es.addEventListener("error", (event) => {
      if (es !== source || stopped) return;
      if (typeof event.data === "string") {
        // The server's own `event: error` (e.g. a lost permission): it ends the stream next.
        let detail = event.data;
        try {
          detail = JSON.parse(event.data).detail || detail;
        } catch {
          /* shown as sent */
        }
        marker("error", `The server closed the stream: ${detail}`);
        return;
      }
      if (es.readyState === EventSource.CONNECTING) {
        if (status.dataset.state === "live") reconnects += 1;
        setState("reconnecting", "Connection lost, reconnecting…");
        return;
      }
      // CLOSED: the browser stopped retrying because the server answered with an error.
      es.close();
      recover();
    });
  };

  // Asks the stream URL why it failed: a refusal (4xx) stops the tail and says why; anything
  // else (no answer, 5xx, 429) is retried with backoff.
  const recover = async () => {
    if (stopped || paused) return;
    failures += 1;
    if (status.dataset.state === "live") reconnects += 1;
    const error = await probe(url());
    if (stopped || paused) return;
    if (error && error.status >= 400 && error.status < 500 && error.status !== 429) {
      setState("error", `Stopped: ${error.message}`);
      return;
    }
    const delay = Math.min(1000 * 2 ** Math.min(failures - 1, 4), 15000);
    setState("reconnecting", `Connection lost, retrying in ${Math.round(delay / 1000)} s…`);
    retry = setTimeout(connect, delay);
  };

  const halt = () => {
    if (source) source.close();
    source = null;
    clearTimeout(retry);
    retry = null;
  };
  toggle.addEventListener("click", () => {
    paused = !paused;
    if (paused) {
      halt();
      toggle.textContent = "Resume";
      setState("paused", `Paused after message ${lastId}`);
    } else {
      toggle.textContent = "Pause";
      connect();
    }
  });
  clearButton.addEventListener("click", () => list.replaceChildren());

  marker("start", lastId ? `Following new messages after ${lastId}.` : "Following new messages.");
  connect();
  return {
    stop() {
      stopped = true;
      halt();
    },
  };
}

async function probe(url) {
  const controller = new AbortController();
  try {
    const response = await fetch(url, { signal: controller.signal, cache: "no-store", credentials: "omit" });
    if (response.ok) {
      controller.abort();
      return null;
    }
    const body = await response.json().catch(() => null);
    return new ApiError(response.status, body);
  } catch {
    return new ApiError(0, null);
  }
}

// ---- History -----------------------------------------------------------------------------------

function historyBrowser(section, channelPath) {
  let room = null;
  let pageSize = 10;
  let current = null; // the URL of the page shown
  let firstPage = true;
  const list = h("ol", { id: "history-list", class: "messages" });
  const info = h("p", { class: "muted", id: "history-info" });
  const newer = h("button", { type: "button", class: "secondary small", id: "history-newer", disabled: true }, "← Newer");
  const older = h("button", { type: "button", class: "secondary small", id: "history-older", disabled: true }, "Older →");
  const refresh = h("button", { type: "button", class: "secondary small", id: "history-refresh" }, "Refresh");
  const sizeSelect = h(
    "select",
    { id: "history-size" },
    [10, 25, 50, 100].map((n) => h("option", { value: String(n), selected: n === pageSize }, String(n))),
  );
  const error = h("p", { class: "form-error", role: "alert", hidden: true });
  let links = { next: null, prev: null };

  const firstUrl = () => {
    const params = new URLSearchParams({ page_size: String(pageSize) });
    if (room) params.set("room", room);
    return `${channelPath}history/?${params}`;
  };
  const load = async (url, isFirst) => {
    error.hidden = true;
    try {
      const page = await get(url);
      current = url;
      firstPage = isFirst;
      links = { next: page.next, prev: page.prev };
      clear(list, page.objects.map((message) => messageItem(message, "history")));
      info.textContent = page.objects.length
        ? `Messages ${page.objects[0].id} to ${page.objects[page.objects.length - 1].id}, newest first.`
        : isFirst
          ? "No messages yet."
          : "No more messages.";
      newer.disabled = isFirst || !page.prev;
      older.disabled = !page.next;
    } catch (err) {
      error.textContent = err.message;
      error.hidden = false;
    }
  };
  newer.addEventListener("click", () => links.prev && load(links.prev, false));
  older.addEventListener("click", () => links.next && load(links.next, false));
  refresh.addEventListener("click", () => load(firstUrl(), true));
  sizeSelect.addEventListener("change", () => {
    pageSize = Number(sizeSelect.value);
    load(firstUrl(), true);
  });

  return {
    show(newRoom, ready) {
      room = newRoom;
      clear(
        section,
        h("div", { class: "panel-head" }, h("h2", { id: "history-title" }, "History", room ? h("span", { class: "muted" }, ` · room ${room}`) : null), h("div", { class: "buttons" }, refresh)),
        ready
          ? [
              h(
                "div",
                { class: "pager" },
                newer,
                older,
                h("label", { for: "history-size" }, "Per page"),
                sizeSelect,
              ),
              info,
              error,
              list,
            ]
          : h("p", { class: "muted" }, "Choose a room above to browse its history."),
      );
      if (ready) load(firstUrl(), true);
    },
    refreshIfFirstPage() {
      if (current && firstPage) load(firstUrl(), true);
    },
  };
}

function messageItem(message, where) {
  const { links, ...shown } = message;
  const author = Object.entries(message.author || {})
    .map(([kind, id]) => `${kind} ${id}`)
    .join(", ");
  return h(
    "li",
    { class: "message", dataset: { id: String(message.id) }, id: `${where}-message-${message.id}` },
    h(
      "div",
      { class: "message-head" },
      h("strong", {}, `#${message.id}`),
      h("span", {}, message.action),
      message.room && h("span", {}, `room ${message.room}`),
      author && h("span", {}, author),
      h("time", { datetime: message.created_at }, when(message.created_at)),
    ),
    h("pre", { class: "payload", "aria-label": `Payload of message ${message.id}` }, pretty(message.payload)),
    h("details", {}, h("summary", {}, "Message JSON"), h("pre", {}, pretty(shown))),
  );
}
