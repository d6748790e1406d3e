// The mpcid ui page: renders the JSON API and drives join/decline/import.
// Relative URLs keep the secret path prefix (/<token>/); POSTs repeat the token in a header
// so that the server can tell them from cross-site requests. Data is only ever inserted
// with textContent, never as HTML.
"use strict";

const TOKEN = location.pathname.split("/")[1] || new URLSearchParams(location.search).get("token") || "";
const FAST = 1000;
const SLOW = 10000;
let identities = [];

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function short(did) {
  return did && did.length > 28 ? did.slice(0, 18) + "…" + did.slice(-6) : (did || "");
}

function when(seconds) {
  return seconds ? new Date(seconds * 1000).toLocaleString() : "";
}

async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST",
    headers: {"Content-Type": "application/json", "X-Mpcid-Token": TOKEN},
    body: JSON.stringify(body),
  };
  const response = await fetch("api/" + path, {...init, cache: "no-store", credentials: "same-origin"});
  let data = {};
  try { data = await response.json(); } catch (e) { data = {error: response.statusText}; }
  if (!response.ok) throw new Error(data.error || ("HTTP " + response.status));
  return data;
}

function status(text, bad) {
  const node = document.getElementById("status");
  node.textContent = text;
  node.classList.toggle("error", !!bad);
}

function fillTable(id, rows) {
  const table = document.getElementById(id);
  const body = table.querySelector("tbody");
  body.replaceChildren(...rows);
  table.hidden = rows.length === 0;
  table.parentElement.querySelector(".empty").hidden = rows.length !== 0;
}

async function loadIdentities() {
  const data = await api("identities");
  identities = data.identities;
  document.getElementById("home").textContent = data.home;
  fillTable("identities", identities.map((i) => el("tr", {"data-name": i.name},
    el("td", {text: i.name}), el("td", {class: "did", text: i.did}),
    el("td", {text: i.encrypted ? "encrypted" : "not encrypted"}))));
}

async function loadCredentials() {
  const data = await api("credentials");
  fillTable("credentials", data.credentials.map((c) => el("tr", {"data-id": c.id},
    el("td", {}, el("code", {text: c.id})),
    el("td", {text: c.types.join(", ") || "VerifiableCredential"}),
    el("td", {class: "did", title: c.issuer, text: short(c.issuer)}),
    el("td", {text: c.holder || short(c.subject)}),
    el("td", {class: c.expired ? "bad" : "", text: (c.expires || "never") + (c.expired ? " (expired)" : "")}))));
}

// -- invitations: cards are kept between refreshes so that open forms keep their input.

function invitationState(inv) {
  if (inv.run === "running") return "running";
  if (inv.run === "completed" || inv.run === "failed") return inv.run;
  if (inv.expired && inv.state === "received") return "expired";
  return inv.state;
}

// When several of my identities are invited, the form asks which one acts.
function chooseIdentity(form, inv, label) {
  if (inv.names.length > 1) {
    const select = el("select", {name: "as"});
    for (const name of inv.names) select.append(el("option", {value: name, text: name}));
    form.append(el("label", {text: label}), select);
  }
}

function buttons(kind, text) {
  return el("div", {class: "form-row"},
    el("button", {type: "submit", class: kind, text: text}),
    el("button", {type: "button", class: "cancel", text: "Cancel"}));
}

function joinForm(inv, card) {
  const form = el("form", {class: "inline-form join-form", hidden: true, autocomplete: "off"});
  form.append(el("label", {text: "Your copy of the program (" + inv.program + "), full path"}),
    el("input", {type: "text", name: "program", class: "wide", required: true,
                 placeholder: "/path/to/" + inv.program}),
    el("label", {text: "Program arguments (separated by spaces, optional)"}),
    el("input", {type: "text", name: "args", class: "wide"}));
  chooseIdentity(form, inv, "Join as");
  form.append(buttons("primary", "Join"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const args = form.elements.args.value.trim();
    const body = {program: form.elements.program.value.trim(),
                  args: args ? args.split(/\s+/) : []};
    if (form.elements.as) body.as = form.elements.as.value;
    await act(card, form, "invitations/" + inv.session + "/join", body, "joined: see Sessions below");
    refreshSoon();
  });
  return form;
}

function declineForm(inv, card) {
  const form = el("form", {class: "inline-form decline-form", hidden: true, autocomplete: "off"});
  form.append(el("label", {text: "Reason (optional, sent to the other parties)"}),
    el("input", {type: "text", name: "reason", class: "wide", maxlength: 500}));
  chooseIdentity(form, inv, "Decline as");
  form.append(buttons("danger", "Decline invitation"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {reason: form.elements.reason.value.trim()};
    if (form.elements.as) body.as = form.elements.as.value;
    await act(card, form, "invitations/" + inv.session + "/decline", body, "declined");
    refreshSoon();
  });
  return form;
}

async function act(card, form, path, body, done) {
  const message = card.querySelector(".message");
  const buttons = form.querySelectorAll("button");
  buttons.forEach((b) => { b.disabled = true; });
  message.className = "message";
  message.textContent = "working…";
  try {
    const result = await api(path, body);
    message.className = result.warning ? "message error" : "message ok";
    message.textContent = result.warning ? done + ", but: " + result.warning : done;
    form.hidden = true;
  } catch (e) {
    message.className = "message error";
    message.textContent = e.message;
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
  }
}

function invitationCard(inv) {
  const card = el("article", {class: "invitation", "data-session": inv.session});
  const mine = Object.entries(inv.my_indexes).map(([did, i]) => "party " + i + " (" + short(did) + ")");
  card.append(
    el("h3", {}, (inv.name ? inv.name + " · " : "") + inv.program + " ",
       el("span", {class: "state"})),
    el("dl", {},
      el("dt", {text: "session"}), el("dd", {}, el("code", {text: inv.session})),
      el("dt", {text: "from"}), el("dd", {class: "did", title: inv.inviter, text: short(inv.inviter)}),
      el("dt", {text: "parties"}), el("dd", {text: inv.parties.length + "; you are " + mine.join(", ")}),
      el("dt", {text: "requires"}), el("dd", {text: inv.requirements.join("; ") || "no credentials"}),
      el("dt", {text: "expires"}), el("dd", {class: "expires"}),
      el("dt", {text: "reason"}), el("dd", {class: "reason"})),
    el("div", {class: "actions"},
      el("button", {type: "button", class: "accept primary", text: "Accept"}),
      el("button", {type: "button", class: "decline danger", text: "Decline"})),
    joinForm(inv, card), declineForm(inv, card),
    el("p", {class: "message", role: "status"}));
  const join = card.querySelector(".join-form");
  const decline = card.querySelector(".decline-form");
  card.querySelector("button.accept").addEventListener("click", () => {
    decline.hidden = true; join.hidden = false; join.elements.program.focus();
  });
  card.querySelector("button.decline").addEventListener("click", () => {
    join.hidden = true; decline.hidden = false; decline.elements.reason.focus();
  });
  for (const cancel of card.querySelectorAll("button.cancel")) {
    cancel.addEventListener("click", () => { cancel.closest("form").hidden = true; });
  }
  return card;
}

function updateCard(card, inv) {
  const state = invitationState(inv);
  const badge = card.querySelector(".state");
  badge.textContent = state;
  badge.className = "state state-" + state;
  card.dataset.state = state;
  card.querySelector(".expires").textContent = when(inv.expires) + (inv.expired ? " (expired)" : "");
  const reason = card.querySelector(".reason");
  reason.textContent = inv.reason || "";
  reason.hidden = reason.previousElementSibling.hidden = !inv.reason;
  const closed = inv.expired || state === "declined" || state === "running" || state === "completed";
  card.querySelector("button.accept").disabled = closed;
  card.querySelector("button.decline").disabled = closed;
}

async function loadInvitations() {
  const data = await api("invitations");
  const box = document.getElementById("invitations");
  const seen = new Set();
  for (const inv of data.invitations) {
    seen.add(inv.session);
    let card = box.querySelector('article[data-session="' + inv.session + '"]');
    if (!card) { card = invitationCard(inv); box.append(card); }
    updateCard(card, inv);
  }
  for (const card of box.querySelectorAll("article.invitation")) {
    if (!seen.has(card.dataset.session)) card.remove();
  }
  box.parentElement.querySelector(".empty").hidden = seen.size !== 0;
}

// -- sessions: one panel per joined session, a row per party.

function mark(ok, text) {
  return el("td", {class: ok ? "yes" : "no", text: ok ? (text || "yes") : "–"});
}

function sessionPanel(run) {
  const rows = run.parties.map((p) => el("tr", {"data-party": p.index},
    el("td", {text: p.index}),
    el("td", {class: "did", title: p.did, text: short(p.did) + (p.me ? " (me)" : "")}),
    p.me ? el("td", {text: "me"}) : mark(p.found),
    p.me ? el("td", {text: ""}) : mark(!!p.connected, p.connected),
    p.me ? el("td", {text: ""}) : mark(p.admitted || p.admitted_me,
      [p.admitted ? "I admitted" : "", p.admitted_me ? "admitted me" : ""].filter(Boolean).join(", ")),
    el("td", {class: p.refused || p.declined ? "bad" : "",
              text: p.refused || (p.declined ? "declined: " + p.declined : "")})));
  return el("article", {class: "session", "data-session": run.session, "data-state": run.state},
    el("h3", {}, run.program.split("/").pop() + " as " + run.as + " ",
       el("span", {class: "state state-" + run.state, text: run.state})),
    el("p", {}, "session ", el("code", {text: run.session}),
       run.exit_code === null ? "" : " · exit code " + run.exit_code),
    el("table", {class: "parties"},
      el("thead", {}, el("tr", {}, ...["#", "party", "found", "connected", "admitted", "refused"]
        .map((h) => el("th", {text: h})))),
      el("tbody", {}, ...rows)),
    el("pre", {class: "stdout", text: run.stdout}),
    el("p", {class: "error", text: run.error ? "error: " + run.error : ""}));
}

async function loadSessions() {
  const data = await api("sessions");
  const box = document.getElementById("sessions");
  box.replaceChildren(...data.sessions.map(sessionPanel));
  box.parentElement.querySelector(".empty").hidden = data.sessions.length !== 0;
  return data.sessions.some((s) => s.state === "running");
}

// -- refresh loop

let timer = null;
let lastSlow = 0;

async function refresh() {
  timer = null;
  try {
    if (Date.now() - lastSlow > SLOW) {
      await Promise.all([loadIdentities(), loadCredentials()]);
      lastSlow = Date.now();
    }
    await loadInvitations();
    await loadSessions();
    status("updated " + new Date().toLocaleTimeString(), false);
  } catch (e) {
    status(e.message, true);
  }
  timer = setTimeout(refresh, FAST);
}

function refreshSoon() {
  if (timer !== null) { clearTimeout(timer); refresh(); }
}

document.getElementById("import-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = document.getElementById("import-token");
  const result = document.getElementById("import-result");
  result.className = "message";
  result.textContent = "checking…";
  try {
    const inv = await api("invitations/import", {token: input.value});
    result.className = "message ok";
    result.textContent = "imported session " + inv.session + " (" + inv.program + ")";
    input.value = "";
  } catch (e) {
    result.className = "message error";
    result.textContent = e.message;
  }
  refreshSoon();
});

refresh();
