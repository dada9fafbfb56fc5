// One instance: its API keys, channels, users, groups and classes, one tab each.

import { all, del, enc, get, instancePath, patch, post } from "./api.js";
import { announce, clear, confirmDialog, copyButton, field, form, h, pretty, table, when } from "./ui.js";

const TABS = [
  ["channels", "Channels"],
  ["keys", "API keys"],
  ["users", "Users"],
  ["groups", "Groups"],
  ["classes", "Classes"],
];

export async function instancePage(root, ctx) {
  const [name, tab = "channels"] = ctx.params;
  const instance = await get(instancePath(name));
  if (!ctx.current()) return;
  const body = h("div", { id: "tab-body" });
  clear(
    root,
    h("p", { class: "crumbs" }, h("a", { href: "#/instances" }, "Instances"), " / "),
    h("h1", { tabindex: "-1" }, instance.name),
    instance.description && h("p", { class: "muted" }, instance.description),
    h(
      "nav",
      { class: "tabs", "aria-label": "Instance sections" },
      TABS.map(([id, label]) =>
        h("a", { href: `#/i/${enc(name)}/${id}`, "aria-current": id === tab ? "page" : null, id: `tab-${id}` }, label),
      ),
    ),
    body,
  );
  const render = { keys: keysTab, channels: channelsTab, users: usersTab, groups: groupsTab, classes: classesTab }[tab];
  await render(body, instance.name, ctx);
}

function deleteButton({ what, label, message, path, after, errorEl }) {
  return h(
    "button",
    {
      type: "button",
      class: "danger small",
      "aria-label": `Delete ${label}`,
      onclick: async () => {
        const confirmed = await confirmDialog({ title: `Delete ${what} “${label}”?`, message, confirm: `Delete ${label}` });
        if (!confirmed) return;
        try {
          await del(path);
          announce(`${what} ${label} deleted.`);
          await after();
        } catch (err) {
          errorEl.textContent = err.message;
          errorEl.hidden = false;
        }
      },
    },
    "Delete",
  );
}

function smallButton(text, label, onclick) {
  return h("button", { type: "button", class: "secondary small", "aria-label": label, onclick }, text);
}

// A row's last cell: one action, then Delete with its confirmation (`remove` is false for what
// cannot be deleted), and the place where a refusal is shown.
function rowActions(action, remove) {
  const error = rowError();
  return h("td", { class: "row-actions" }, action, remove && " ", remove && deleteButton({ ...remove, errorEl: error }), error);
}

function rowError() {
  return h("p", { class: "form-error", role: "alert", hidden: true });
}

// ---- API keys ----------------------------------------------------------------------------------

const KEY_FLAGS = [
  ["ignore_acl", "ignore_acl", "Trusted (backend) key: bypasses channel, user, group and object permissions."],
  ["allow_user_create", "allow_user_create", "May sign users up without a user key."],
  ["allow_group_create", "allow_group_create", "May create groups."],
  ["allow_anonymous_read", "allow_anonymous_read", "Without a user key, may read what everyone may read."],
];

async function keysTab(root, instance, ctx) {
  const shown = h("div", { id: "key-shown", "aria-live": "polite" });
  const list = h("div", { id: "keys" });
  const showKey = (title, key) => {
    const input = h("input", { id: "new-key-value", readonly: true, value: key.api_key, "aria-label": "API key value", class: "mono" });
    clear(
      shown,
      h(
        "div",
        { class: "notice", role: "region", "aria-label": "New API key" },
        h("p", {}, h("strong", {}, title), " Copy it now: the console shows it only this once."),
        h("div", { class: "copy-row" }, input, copyButton(key.api_key, input)),
      ),
    );
    input.focus();
    input.select();
  };
  const reload = async () => {
    const keys = await all(instancePath(instance, "api_keys/"));
    if (!ctx.current()) return;
    clear(
      list,
      keys.length === 0
        ? h("p", { class: "muted" }, "No API keys yet.")
        : table(
            ["Id", "Description", "Key", "Flags", "Created", "Actions"],
            keys.map((key) => {
              const error = rowError();
              return h(
                "tr",
                { dataset: { key: key.id } },
                h("td", {}, key.id),
                h("td", {}, key.description),
                h("td", { class: "mono" }, `${key.api_key.slice(0, 6)}…`),
                h("td", {}, KEY_FLAGS.filter(([flag]) => key[flag]).map(([flag]) => h("span", { class: "badge" }, flag))),
                h("td", {}, when(key.created_at)),
                h(
                  "td",
                  { class: "row-actions" },
                  h(
                    "button",
                    {
                      type: "button",
                      class: "secondary small",
                      "aria-label": `Reset key ${key.id}`,
                      onclick: async () => {
                        const ok = await confirmDialog({
                          title: `Reset API key ${key.id}?`,
                          message: "The key gets a new value; the old one stops working at once and its streams are closed.",
                          confirm: "Reset",
                        });
                        if (!ok) return;
                        try {
                          const reset = await post(instancePath(instance, `api_keys/${key.id}/reset_key/`));
                          showKey(`API key ${reset.id} has a new value.`, reset);
                          await reload();
                        } catch (err) {
                          error.textContent = err.message;
                          error.hidden = false;
                        }
                      },
                    },
                    "Reset",
                  ),
                  " ",
                  deleteButton({
                    what: "API key",
                    label: String(key.id),
                    message: `Apps using API key ${key.id}${key.description ? ` (${key.description})` : ""} lose access at once.`,
                    path: instancePath(instance, `api_keys/${key.id}/`),
                    after: reload,
                    errorEl: error,
                  }),
                  error,
                ),
              );
            }),
            { id: "keys-table" },
          ),
    );
  };
  await reload();
  const create = form("key-create", {
    grid: true,
    fields: [
      field("key-create", { name: "description", label: "Description" }),
      h(
        "fieldset",
        {},
        h("legend", {}, "Flags"),
        KEY_FLAGS.map(([flag, label, hint]) => field("key-create", { name: flag, label, type: "checkbox", hint })),
      ),
    ],
    submit: "Create API key",
    onSubmit: async (values, el) => {
      const key = await post(instancePath(instance, "api_keys/"), values);
      el.reset();
      showKey(`API key ${key.id} created.`, key);
      await reload();
    },
  });
  clear(root, h("h2", {}, "API keys"), shown, list, h("section", { class: "card" }, h("h3", {}, "New API key"), create));
}

// ---- Channels ----------------------------------------------------------------------------------

const PERMISSIONS = [
  ["none", "none"],
  ["subscribe", "subscribe"],
  ["publish", "publish"],
];

function channelFields(prefix, channel, groups) {
  const editing = !!channel;
  return [
    field(prefix, {
      name: "name",
      label: "Name",
      value: channel?.name,
      hint: editing ? "Names cannot change." : "a-z, 0-9, _ and -, starting with a letter.",
      attrs: { disabled: editing, autocomplete: "off", required: true },
    }),
    field(prefix, {
      name: "type",
      label: "Type",
      type: "select",
      value: channel?.type ?? "default",
      options: [
        ["default", "default (one stream)"],
        ["separate_rooms", "separate_rooms (split into rooms)"],
      ],
      hint: editing ? "Types cannot change." : null,
      attrs: { disabled: editing },
    }),
    field(prefix, { name: "description", label: "Description", value: channel?.description }),
    field(prefix, {
      name: "group",
      label: "Group",
      type: "select",
      value: channel?.group ?? "",
      options: [["", "(none)"], ...groups.map((g) => [g.id, groupName(g)])],
    }),
    field(prefix, { name: "group_permissions", label: "Group permissions", type: "select", value: channel?.group_permissions ?? "none", options: PERMISSIONS }),
    field(prefix, { name: "other_permissions", label: "Other permissions", type: "select", value: channel?.other_permissions ?? "none", options: PERMISSIONS }),
    field(prefix, {
      name: "custom_publish",
      label: "custom_publish",
      type: "checkbox",
      value: channel?.custom_publish ?? false,
      hint: "Allow publishing through /publish/.",
    }),
  ];
}

function channelBody(values) {
  return { ...values, group: values.group === "" ? null : Number(values.group) };
}

async function channelsTab(root, instance, ctx) {
  const list = h("div", { id: "channels" });
  const editor = h("div", { id: "channel-editor" });
  let groups = [];
  const reload = async () => {
    const [channels, loadedGroups] = await Promise.all([
      all(instancePath(instance, "channels/")),
      all(instancePath(instance, "groups/")),
    ]);
    groups = loadedGroups;
    if (!ctx.current()) return;
    clear(
      list,
      table(
        ["Name", "Type", "Permissions", "custom_publish", "Actions"],
        channels.map((channel) => {
          const builtIn = channel.name === "default" || channel.name === "eventlog";
          return h(
            "tr",
            { dataset: { channel: channel.name } },
            h("th", { scope: "row" }, h("a", { href: `#/i/${enc(instance)}/channels/${enc(channel.name)}` }, channel.name)),
            h("td", {}, channel.type),
            h("td", {}, `other: ${channel.other_permissions}`, channel.group ? `, group ${channel.group}: ${channel.group_permissions}` : ""),
            h("td", {}, channel.custom_publish ? "yes" : "no"),
            rowActions(
              smallButton("Edit", `Edit ${channel.name}`, () => edit(channel)),
              !builtIn && {
                what: "channel",
                label: channel.name,
                message: `This deletes the channel ${channel.name} and its whole history, and closes its streams.`,
                path: instancePath(instance, `channels/${enc(channel.name)}/`),
                after: reload,
              },
            ),
          );
        }),
        { id: "channels-table" },
      ),
    );
  };
  const edit = (channel) => {
    const editForm = form("channel-edit", {
    grid: true,
      fields: channelFields("channel-edit", channel, groups),
      submit: "Save",
      extra: [h("button", { type: "button", class: "secondary", onclick: () => clear(editor) }, "Cancel")],
      onSubmit: async (values) => {
        await patch(instancePath(instance, `channels/${enc(channel.name)}/`), channelBody(values));
        announce(`Channel ${channel.name} saved.`);
        clear(editor);
        await reload();
      },
    });
    clear(editor, h("section", { class: "card" }, h("h3", {}, `Edit channel ${channel.name}`), editForm));
    editForm.querySelector("[name=description]").focus();
  };
  await reload();
  const createCard = h("section", { class: "card" });
  const renderCreate = () =>
    clear(
      createCard,
      h("h3", {}, "New channel"),
      form("channel-create", {
      grid: true,
        fields: channelFields("channel-create", null, groups),
        submit: "Create channel",
        onSubmit: async (values) => {
          const channel = await post(instancePath(instance, "channels/"), channelBody(values));
          announce(`Channel ${channel.name} created.`);
          await reload();
          renderCreate();
        },
      }),
    );
  renderCreate();
  clear(root, h("h2", {}, "Channels"), list, editor, createCard);
}

// ---- Users and groups --------------------------------------------------------------------------

async function usersTab(root, instance, ctx) {
  const list = h("div", { id: "users" });
  const memberships = h("div", { id: "memberships" });
  const reload = async () => {
    const users = await all(instancePath(instance, "users/"));
    if (!ctx.current()) return;
    clear(
      list,
      users.length === 0
        ? h("p", { class: "muted" }, "No users yet.")
        : table(
            ["Id", "Username", "Groups", "Actions"],
            users.map((user) =>
              h(
                "tr",
                { dataset: { user: user.id } },
                h("td", {}, user.id),
                h("th", { scope: "row" }, user.username),
                h("td", {}, user.groups.length ? user.groups.map((g) => h("span", { class: "badge" }, groupName(g))) : h("span", { class: "muted" }, "none")),
                rowActions(smallButton("Groups", `Groups of ${user.username}`, () => showMemberships(user)), {
                  what: "user",
                  label: user.username,
                  message: `This deletes the user ${user.username}, their memberships, profile and data objects.`,
                  path: instancePath(instance, `users/${user.id}/`),
                  after: reload,
                }),
              ),
            ),
            { id: "users-table" },
          ),
    );
  };
  const showMemberships = async (user) => {
    const [mine, groups] = await Promise.all([
      all(instancePath(instance, `users/${user.id}/groups/`)),
      all(instancePath(instance, "groups/")),
    ]);
    membershipCard(memberships, {
      id: "membership-add",
      field: "group",
      title: `Groups of ${user.username}`,
      members: mine.map((m) => ({ id: m.group.id, name: groupName(m.group) })),
      candidates: groups.map((g) => ({ id: g.id, name: groupName(g) })),
      empty: "Not in any group.",
      addLabel: "Add to group",
      noCandidates: "Create groups in the Groups tab to add memberships.",
      add: (id) => post(instancePath(instance, `users/${user.id}/groups/`), { group: id }),
      remove: (id) => del(instancePath(instance, `users/${user.id}/groups/${id}/`)),
      changed: async () => {
        await reload();
        await showMemberships(user);
      },
    });
  };
  await reload();
  const create = form("user-create", {
    inline: true,
    fields: [
      field("user-create", { name: "username", label: "Username", attrs: { autocomplete: "off", required: true } }),
      field("user-create", { name: "password", label: "Password", type: "password", attrs: { autocomplete: "new-password", required: true } }),
    ],
    submit: "Create user",
    onSubmit: async (values, el) => {
      const user = await post(instancePath(instance, "users/"), values);
      el.reset();
      announce(`User ${user.username} created.`);
      await reload();
    },
  });
  clear(root, h("h2", {}, "Users"), list, memberships, h("section", { class: "card" }, h("h3", {}, "New user"), create));
}

async function groupsTab(root, instance, ctx) {
  const list = h("div", { id: "groups" });
  const members = h("div", { id: "members" });
  const reload = async () => {
    const groups = await all(instancePath(instance, "groups/"));
    if (!ctx.current()) return;
    clear(
      list,
      groups.length === 0
        ? h("p", { class: "muted" }, "No groups yet.")
        : table(
            ["Id", "Name", "Label", "Description", "Actions"],
            groups.map((group) => {
              const label = groupName(group);
              return h(
                "tr",
                { dataset: { group: group.id } },
                h("td", {}, group.id),
                h("th", { scope: "row" }, group.name ?? ""),
                h("td", {}, group.label),
                h("td", {}, group.description),
                rowActions(smallButton("Members", `Members of ${label}`, () => showMembers(group)), {
                  what: "group",
                  label,
                  message: `This deletes the group ${label} and its memberships; channels and classes that named it keep existing without a group.`,
                  path: instancePath(instance, `groups/${group.id}/`),
                  after: reload,
                }),
              );
            }),
            { id: "groups-table" },
          ),
    );
  };
  const showMembers = async (group) => {
    const [inGroup, users] = await Promise.all([
      all(instancePath(instance, `groups/${group.id}/users/`)),
      all(instancePath(instance, "users/")),
    ]);
    membershipCard(members, {
      id: "member-add",
      field: "user",
      title: `Members of ${groupName(group)}`,
      members: inGroup.map((m) => ({ id: m.user.id, name: m.user.username })),
      candidates: users.map((u) => ({ id: u.id, name: u.username })),
      empty: "No members.",
      addLabel: "Add user",
      noCandidates: "Every user is a member.",
      add: (id) => post(instancePath(instance, `groups/${group.id}/users/`), { user: id }),
      remove: (id) => del(instancePath(instance, `groups/${group.id}/users/${id}/`)),
      changed: () => showMembers(group),
    });
  };
  await reload();
  const create = form("group-create", {
    inline: true,
    fields: [
      field("group-create", { name: "name", label: "Name", hint: "Optional; a-z, 0-9, _ and -.", attrs: { autocomplete: "off" } }),
      field("group-create", { name: "label", label: "Label" }),
      field("group-create", { name: "description", label: "Description" }),
    ],
    submit: "Create group",
    onSubmit: async (values, el) => {
      const body = { ...values };
      if (body.name.trim() === "") delete body.name;
      await post(instancePath(instance, "groups/"), body);
      el.reset();
      await reload();
    },
  });
  clear(root, h("h2", {}, "Groups"), list, members, h("section", { class: "card" }, h("h3", {}, "New group"), create));
}

function groupName(group) {
  return group.name || group.label || `group ${group.id}`;
}

// One side of the user–group memberships: who is in, a Remove button each, and a form that adds
// one of the rest. The API names the field of the added side (`group` or `user`) in its errors.
function membershipCard(container, { id, field: name, title, members, candidates, empty, addLabel, noCandidates, add, remove, changed }) {
  const inside = new Set(members.map((m) => m.id));
  const rest = candidates.filter((c) => !inside.has(c.id));
  const addForm = form(id, {
    inline: true,
    fields: [field(id, { name, label: addLabel, type: "select", options: rest.map((c) => [c.id, c.name]) })],
    submit: "Add",
    onSubmit: async (values) => {
      await add(Number(values[name]));
      await changed();
    },
  });
  clear(
    container,
    h(
      "section",
      { class: "card" },
      h("h3", {}, title),
      members.length === 0
        ? h("p", { class: "muted" }, empty)
        : h(
            "ul",
            { class: "plain" },
            members.map((member) => {
              const error = rowError();
              const removeMember = async () => {
                try {
                  await remove(member.id);
                  await changed();
                } catch (err) {
                  error.textContent = err.message;
                  error.hidden = false;
                }
              };
              return h("li", {}, member.name, " ", smallButton("Remove", `Remove ${member.name}`, removeMember), error);
            }),
          ),
      rest.length ? addForm : h("p", { class: "muted" }, noCandidates),
    ),
  );
}

// ---- Classes and data objects ------------------------------------------------------------------

async function classesTab(root, instance, ctx) {
  const list = h("div", { id: "classes" });
  const browser = h("div", { id: "objects" });
  const reload = async () => {
    const classes = await all(instancePath(instance, "classes/"));
    if (!ctx.current()) return;
    clear(
      list,
      table(
        ["Name", "Fields", "Objects", "Actions"],
        classes.map((cls) =>
          h(
            "tr",
            { dataset: { class: cls.name } },
            h("th", { scope: "row" }, cls.name),
            h("td", {}, cls.schema.map((f) => `${f.name}: ${f.type}`).join(", ")),
            h("td", {}, cls.objects_count),
            rowActions(
              smallButton("Objects", `Objects of ${cls.name}`, () => showObjects(cls)),
              cls.name !== "user_profile" && {
                what: "class",
                label: cls.name,
                message: `This deletes the class ${cls.name} and all its objects.`,
                path: instancePath(instance, `classes/${enc(cls.name)}/`),
                after: reload,
              },
            ),
          ),
        ),
        { id: "classes-table" },
      ),
    );
  };
  const showObjects = (cls) => {
    const results = h("div", { id: "objects-results" });
    const query = form("objects-query", {
      fields: [
        field("objects-query", {
          name: "query",
          label: "Query filter (JSON, optional)",
          type: "textarea",
          hint: 'e.g. {"reward": {"_gte": 100}} — indexed fields only.',
          attrs: { rows: 2, class: "mono" },
        }),
        field("objects-query", { name: "order_by", label: "Order by (optional)", hint: "An order_index field, - for descending." }),
      ],
      submit: "Search",
      onSubmit: async ({ query: filter, order_by }) => {
        const params = new URLSearchParams({ page_size: "20" });
        if (filter.trim()) {
          try {
            JSON.parse(filter);
          } catch (err) {
            throw { fields: { query: [`Not valid JSON: ${err.message}`] } };
          }
          params.set("query", filter.trim());
        }
        if (order_by.trim()) params.set("order_by", order_by.trim());
        const page = await get(instancePath(instance, `classes/${enc(cls.name)}/objects/?${params}`));
        clear(
          results,
          page.objects.length === 0
            ? h("p", { class: "muted" }, "No objects match.")
            : h("ol", { class: "messages" }, page.objects.map((obj) => h("li", {}, h("pre", {}, pretty(obj))))),
        );
      },
    });
    clear(browser, h("section", { class: "card" }, h("h3", {}, `Objects of ${cls.name}`), query, results));
    query.requestSubmit();
  };
  await reload();
  const create = form("class-create", {
    fields: [
      field("class-create", { name: "name", label: "Name", attrs: { autocomplete: "off", required: true } }),
      field("class-create", {
        name: "schema",
        label: "Schema (JSON list)",
        type: "textarea",
        value: '[{"name": "title", "type": "string", "filter_index": true}]',
        attrs: { rows: 3, class: "mono" },
      }),
    ],
    submit: "Create class",
    onSubmit: async ({ name, schema }, el) => {
      let parsed;
      try {
        parsed = JSON.parse(schema);
      } catch (err) {
        throw { fields: { schema: [`Not valid JSON: ${err.message}`] } };
      }
      await post(instancePath(instance, "classes/"), { name, schema: parsed });
      el.reset();
      await reload();
    },
  });
  clear(root, h("h2", {}, "Classes"), list, browser, h("section", { class: "card" }, h("h3", {}, "New class"), create));
}
