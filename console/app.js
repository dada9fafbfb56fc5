// The console's shell: hash routes, sign-in, the instance list. Pages live in their own modules.

import { ApiError, all, api, del, enc, post, session } from "./api.js";
import { announce, clear, confirmDialog, failure, field, form, h, loading, table, when } from "./ui.js";
import { instancePage } from "./instance.js";
import { channelPage } from "./channel.js";
import { serverPage } from "./server.js";

const main = document.getElementById("main");
let leave = null; // cleanup of the current page (open streams, timers)
let generation = 0;

const routes = [
  [/^#\/signin$/, signInPage, { public: true }],
  [/^#\/instances$/, instancesPage],
  [/^#\/server$/, serverPage, { public: true }],
  [/^#\/i\/([^/]+)\/channels\/([^/]+)$/, channelPage],
  [/^#\/i\/([^/]+)(?:\/(keys|channels|users|groups|classes))?$/, instancePage],
];

async function route() {
  if (leave) {
    leave();
    leave = null;
  }
  const mine = ++generation;
  const hash = location.hash || "#/instances";
  let match = null;
  let page = null;
  let options = {};
  for (const [pattern, render, opts = {}] of routes) {
    match = hash.match(pattern);
    if (match) {
      page = render;
      options = opts;
      break;
    }
  }
  if (!page) {
    location.replace("#/instances");
    return;
  }
  if (!session.key() && !options.public) {
    location.replace("#/signin");
    return;
  }
  updateNav(hash);
  clear(main, loading());
  const params = match.slice(1).map((part) => (part === undefined ? undefined : decodeURIComponent(part)));
  const context = {
    params,
    // Whether this render is still the current page (a slower one may finish after navigation).
    current: () => mine === generation,
    onLeave: (fn) => (leave = fn),
  };
  try {
    await page(main, context);
  } catch (err) {
    if (err instanceof ApiError && err.status === 403 && err.detail === "No such API Key.") {
      session.signOut();
      location.replace("#/signin");
      return;
    }
    if (context.current()) clear(main, h("h1", { tabindex: "-1" }, "Something went wrong"), failure(err));
  }
  if (context.current()) {
    const heading = main.querySelector("h1");
    if (heading && document.activeElement === document.body) heading.focus({ preventScroll: true });
  }
}

function updateNav(hash) {
  const signedIn = !!session.key();
  document.getElementById("nav").hidden = !signedIn && !hash.startsWith("#/server");
  document.getElementById("sign-out").hidden = !signedIn;
  document.getElementById("who").textContent = signedIn ? session.email() || "account key" : "";
  for (const link of document.querySelectorAll("[data-nav]")) {
    const active = hash.startsWith(`#/${link.dataset.nav}`) || (link.dataset.nav === "instances" && hash.startsWith("#/i/"));
    if (active) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

// Sign in with e-mail and password (the API answers the account key) or with a pasted key.
async function signInPage(root) {
  if (session.key()) {
    location.replace("#/instances");
    return;
  }
  const withPassword = form("signin", {
    fields: [
      field("signin", { name: "email", label: "E-mail", type: "email", attrs: { autocomplete: "username", required: true } }),
      field("signin", { name: "password", label: "Password", type: "password", attrs: { autocomplete: "current-password", required: true } }),
    ],
    submit: "Sign in",
    onSubmit: async ({ email, password }) => {
      const account = await api("POST", "/v1.1/account/auth/", { email, password }, { key: null });
      session.signIn(account.account_key, account.email);
      announce("Signed in.");
      location.hash = "#/instances";
    },
  });
  const withKey = form("keyin", {
    fields: [
      field("keyin", {
        name: "account_key",
        label: "Account key",
        type: "password",
        hint: "40 hex characters, as printed on the server's first start.",
        attrs: { autocomplete: "off", spellcheck: "false" },
      }),
    ],
    submit: "Use key",
    onSubmit: async ({ account_key }) => {
      const key = account_key.trim().toLowerCase();
      if (!/^[0-9a-f]{39}[02468ace]$/.test(key)) {
        throw new ApiError(400, {
          account_key: [/^[0-9a-f]{39}[13579bdf]$/.test(key)
            ? "This is an instance API key; the console needs an account key (its last digit is even)."
            : "An account key is 40 hex characters ending in an even digit."],
        });
      }
      const account = await api("GET", "/v1.1/account/", undefined, { key }).catch((err) => {
        throw new ApiError(err.status, { account_key: [err.detail || err.message] });
      });
      session.signIn(key, account.email);
      announce("Signed in.");
      location.hash = "#/instances";
    },
  });
  clear(
    root,
    h(
      "section",
      { class: "signin" },
      h("h1", { tabindex: "-1" }, "Sign in"),
      h("p", { class: "muted" }, "The console talks to this server's public API with your account key. The key stays in this tab (sessionStorage) until you sign out or close it."),
      h("div", { class: "card" }, h("h2", {}, "With your account"), withPassword),
      h("div", { class: "card" }, h("h2", {}, "With an account key"), withKey),
    ),
  );
}

async function instancesPage(root, ctx) {
  const instances = await all("/v1.1/instances/");
  if (!ctx.current()) return;
  const list = h("div", { id: "instances" });
  const render = (items) => {
    if (items.length === 0) {
      clear(list, h("p", { class: "muted" }, "No instances yet. Create one below."));
      return;
    }
    clear(
      list,
      table(
        ["Name", "Description", "Created", "Actions"],
        items.map((instance) => instanceRow(instance, reload)),
        { id: "instances-table" },
      ),
    );
  };
  const reload = async () => render(await all("/v1.1/instances/"));
  render(instances);
  const create = form("instance-create", {
    inline: true,
    fields: [
      field("instance-create", { name: "name", label: "Name", hint: "5–64 characters: a-z, 0-9 and -, starting with a letter.", attrs: { autocomplete: "off", required: true } }),
      field("instance-create", { name: "description", label: "Description" }),
    ],
    submit: "Create instance",
    onSubmit: async (values, el) => {
      const created = await post("/v1.1/instances/", values);
      el.reset();
      announce(`Instance ${created.name} created.`);
      await reload();
    },
  });
  clear(
    root,
    h("h1", { tabindex: "-1" }, "Instances"),
    list,
    h("section", { class: "card" }, h("h2", {}, "New instance"), create),
  );
}

function instanceRow(instance, reload) {
  const name = instance.name;
  const actions = h("td", { class: "row-actions" });
  const row = h(
    "tr",
    { dataset: { instance: name } },
    h("th", { scope: "row" }, h("a", { href: `#/i/${enc(name)}/channels` }, name)),
    h("td", {}, instance.description),
    h("td", {}, when(instance.created_at)),
    actions,
  );
  const renameButton = h("button", { type: "button", class: "secondary small" }, "Rename");
  const deleteButton = h("button", { type: "button", class: "danger small" }, "Delete");
  const deleteError = h("p", { class: "form-error", role: "alert", hidden: true });
  renameButton.addEventListener("click", () => {
    const rename = form(`rename-${name}`, {
      inline: true,
      fields: [field(`rename-${name}`, { name: "new_name", label: `New name for ${name}`, value: name, attrs: { required: true } })],
      submit: "Rename",
      extra: [h("button", { type: "button", class: "secondary", onclick: () => reload() }, "Cancel")],
      onSubmit: async ({ new_name }) => {
        const renamed = await post(`/v1.1/instances/${enc(name)}/rename/`, { new_name });
        announce(`Instance ${name} renamed to ${renamed.name}.`);
        await reload();
      },
    });
    clear(actions, rename);
    rename.querySelector("input").select();
  });
  deleteButton.addEventListener("click", async () => {
    const confirmed = await confirmDialog({
      title: `Delete instance “${name}”?`,
      message: `This deletes the instance ${name} with all its API keys, users, groups, channels, messages, classes and objects. It cannot be undone.`,
      confirm: `Delete ${name}`,
    });
    if (!confirmed) return;
    try {
      await del(`/v1.1/instances/${enc(name)}/`);
      announce(`Instance ${name} deleted.`);
      await reload();
    } catch (err) {
      deleteError.textContent = err.message;
      deleteError.hidden = false;
    }
  });
  actions.append(renameButton, " ", deleteButton, deleteError);
  return row;
}

document.getElementById("sign-out").addEventListener("click", () => {
  session.signOut();
  announce("Signed out.");
  location.hash = "#/signin";
});
window.addEventListener("hashchange", route);
route();
