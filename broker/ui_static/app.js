// The mpcid ui page: renders the JSON API for every role and drives what each may do.
// Relative URLs keep the secret path prefix (/<token>/); POSTs repeat the token in a header
// so that the server can tell them from cross-site requests. Data is only ever inserted
// with textContent, never as HTML. Sessions are followed through server-sent events
// (api/events); the keystore's lists are refreshed when an event says something changed,
// and every half minute for changes made outside the page.
"use strict";

const TOKEN = location.pathname.split("/")[1] || new URLSearchParams(location.search).get("token") || "";
const SLOW = 30000;
let identities = [];
let defaults = {bootstrap: []};

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

let names = {};  // DID -> my name for it (contacts, my identities)

function short(did) {
  const cut = did && did.length > 28 ? did.slice(0, 18) + "…" + did.slice(-6) : (did || "");
  return names[did] ? names[did] + " (" + cut + ")" : cut;
}

function when(seconds) {
  return seconds ? new Date(seconds * 1000).toLocaleString() : "";
}

function lines(text) {
  return text.split("\n").map((s) => s.trim()).filter(Boolean);
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
  table.querySelector("tbody").replaceChildren(...rows);
  table.hidden = rows.length === 0;
  const empty = table.nextElementSibling;
  if (empty && empty.classList.contains("empty")) empty.hidden = rows.length !== 0;
}

// Run a form's request: buttons disabled meanwhile, the outcome in its .message.
async function submit(form, path, body, done) {
  const message = form.querySelector(".message") || form.closest("article, section").querySelector(".message");
  const buttons = form.querySelectorAll("button");
  buttons.forEach((b) => { b.disabled = true; });
  message.className = "message";
  message.textContent = "working…";
  try {
    const result = await api(path, body);
    message.className = result.warning ? "message error" : "message ok";
    message.textContent = result.warning ? done(result) + ", but: " + result.warning : done(result);
    return result;
  } catch (e) {
    message.className = "message error";
    message.textContent = e.message;
    return null;
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
    reloadSoon();
  }
}

function copyFrom(id, button) {
  const field = document.getElementById(id);
  field.select();
  const done = () => { button.textContent = "Copied"; setTimeout(() => { button.textContent = "Copy"; }, 1500); };
  if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(field.value).then(done, () => document.execCommand("copy") && done());
  else if (document.execCommand("copy")) done();
}

// -- identities and my credentials

async function loadIdentities() {
  const data = await api("identities");
  identities = data.identities;
  names = data.names || {};
  defaults = {bootstrap: data.bootstrap || []};
  document.getElementById("home").textContent = data.home;
  fillTable("identities", identities.map((i) => el("tr", {"data-name": i.name},
    el("td", {text: i.name}), el("td", {class: "did", text: i.did}),
    el("td", {text: i.encrypted ? "encrypted" : "not encrypted"}))));
  for (const select of document.querySelectorAll("select.identity-select")) {
    const chosen = select.value;
    select.replaceChildren(...identities.map((i) => el("option", {value: i.name, text: i.name})));
    if (identities.some((i) => i.name === chosen)) select.value = chosen;
  }
  const bootstrap = document.getElementById("invite-bootstrap");
  if (!bootstrap.value && defaults.bootstrap.length) bootstrap.value = defaults.bootstrap.join("\n");
}

let credentialStates = {};

async function loadCredentials() {
  const data = await api("credentials");
  fillTable("credentials", data.credentials.map((c) => el("tr", {"data-id": c.id, "data-state": credentialStates[c.id] || null},
    el("td", {}, el("code", {text: c.id})),
    el("td", {text: c.types.join(", ") || "VerifiableCredential"}),
    el("td", {class: "did", title: c.issuer, text: short(c.issuer)}),
    el("td", {text: c.holder || short(c.subject)}),
    el("td", {class: c.expired ? "bad" : "", text: (c.expires || "never") + (c.expired ? " (expired)" : "")}),
    el("td", {class: "state-cell state-" + (credentialStates[c.id] || "").split(/[ :(]/)[0],
              text: credentialStates[c.id] || "not checked"}))));
}

document.getElementById("check-credentials").addEventListener("click", async (event) => {
  event.target.disabled = true;
  try {
    const data = await api("credentials?status=1");
    credentialStates = Object.fromEntries(data.credentials.map((c) => [c.id, c.state]));
    await loadCredentials();
  } catch (e) {
    status(e.message, true);
  }
  event.target.disabled = false;
});

// -- organisation

async function loadIssued() {
  const data = await api("issued");
  fillTable("issued", data.issued.map((c) => {
    const revocable = c.status && (c.state === "valid" || c.state === "expired" || c.state === "not yet valid");
    const button = revocable ? el("button", {type: "button", class: "danger", "data-action": "revoke-credential", text: "Revoke"}) : null;
    if (button) {
      button.addEventListener("click", async () => {
        if (!confirm("Revoke the credential of " + c.subject + "? Every verifier will refuse it once the list is served.")) return;
        button.disabled = true;
        try { await api("issued/" + c.id + "/revoke", {}); status("revoked " + c.id, false); }
        catch (e) { status(e.message, true); button.disabled = false; }
        reloadSoon();
      });
    }
    return el("tr", {"data-id": c.id, "data-state": c.state},
      el("td", {}, el("code", {text: c.id})), el("td", {text: c.types.join(", ")}),
      el("td", {class: "did", title: c.subject, text: short(c.subject)}),
      el("td", {text: Object.entries(c.claims).map(([k, v]) => k + "=" + v).join(", ")}),
      el("td", {text: c.expires || "no end"}),
      el("td", {class: "state-cell state-" + c.state.replace(/ /g, "-"), text: c.state}),
      el("td", {}, button));
  }));
}

async function loadStatusLists() {
  const data = await api("status-lists");
  const select = document.getElementById("issue-status");
  const chosen = select.value;
  select.replaceChildren(el("option", {value: "", text: "not revocable"}),
    ...data.status_lists.map((l) => el("option", {value: l.url, text: l.url})));
  if (data.status_lists.some((l) => l.url === chosen)) select.value = chosen;
  else if (data.status_lists.length && !chosen) select.value = data.status_lists[0].url;
  fillTable("status-lists", data.status_lists.map((l) => {
    const publish = el("button", {type: "button", "data-action": "publish-status-list", text: "Publish now"});
    publish.addEventListener("click", async () => {
      publish.disabled = true;
      try { const r = await api("status-lists/" + l.id + "/publish", {}); status(r.result, false); }
      catch (e) { status(e.message, true); }
      publish.disabled = false;
      reloadSoon();
    });
    return el("tr", {"data-url": l.url},
      el("td", {}, el("code", {text: l.url})), el("td", {text: l.issuer}),
      el("td", {text: l.used}),
      el("td", {class: l.stale ? "bad" : "", text: (l.valid_until || "no end") + (l.stale ? " (stale: publish again)" : "")}),
      el("td", {}, el("code", {text: l.publish || "–"})),
      el("td", {class: "cell-actions"}, publish,
         el("a", {href: "api/status-lists/" + l.id + "/list.json", download: "status-list.json", text: "Download"})));
  }));
}

document.getElementById("issue-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const claims = {};
  for (const line of lines(form.elements.claims.value)) {
    const at = line.indexOf("=");
    if (at > 0) claims[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  const body = {issuer: form.elements.issuer.value, subject: form.elements.subject.value.trim(),
                type: form.elements.type.value.trim(), claims: claims,
                expires: form.elements.expires.value.trim(), status_list: form.elements.status_list.value};
  const result = await submit(form, "credentials/issue", body, () => "issued");
  if (!result) return;
  document.getElementById("issued-result").hidden = false;
  document.getElementById("issued-token").value = result.token;
  const blob = new Blob([JSON.stringify(result.credential, null, 2) + "\n"], {type: "application/json"});
  document.getElementById("download-issued").href = URL.createObjectURL(blob);
  form.elements.subject.value = "";
});
document.getElementById("copy-issued").addEventListener("click", (e) => copyFrom("issued-token", e.target));

document.getElementById("status-list-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  await submit(form, "status-lists", {issuer: form.elements.issuer.value, url: form.elements.url.value.trim(),
                                      publish: form.elements.publish.value.trim()}, (r) => "created " + r.url);
});

document.getElementById("identity-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const result = await submit(form, "identities", {name: form.elements.name.value.trim()},
                              (r) => "created " + r.name + ": " + r.did);
  if (result) form.elements.name.value = "";
});

document.getElementById("credential-import-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const result = await submit(form, "credentials/import", {credential: form.elements.credential.value},
                              (r) => "imported " + r.id);
  if (result) form.elements.credential.value = "";
});

// -- inviter

async function loadPrograms() {
  const data = await api("programs");
  const select = document.getElementById("invite-kept");
  const chosen = select.value;
  select.replaceChildren(el("option", {value: "", text: "a kept program…"}),
    ...data.programs.map((p) => el("option", {value: p.sha256, text: p.name + " (" + p.sha256.slice(0, 12) + "…)"})));
  if (data.programs.some((p) => p.sha256 === chosen)) select.value = chosen;
}

document.getElementById("invite-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const args = form.elements.args.value.trim();
  const body = {as: form.elements.as.value, name: form.elements.name.value.trim(),
                dids: lines(form.elements.dids.value),
                program: form.elements.program.value.trim() || form.elements.kept.value,
                requirements: lines(form.elements.requirements.value),
                bootstrap: lines(form.elements.bootstrap.value),
                expires: form.elements.expires.value.trim(), join: form.elements.join.checked,
                args: args ? args.split(/\s+/) : []};
  const result = await submit(form, "invite", body,
                              (r) => "session " + r.session + (r.run ? ": joined, see Sessions" : ""));
  if (!result) return;
  document.getElementById("invite-result").hidden = false;
  document.getElementById("invite-token").value = result.token;
  document.getElementById("invite-session").textContent = "session " + result.session;
});
document.getElementById("copy-invite").addEventListener("click", (e) => copyFrom("invite-token", e.target));

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

function buttons(kind, text, action) {
  return el("div", {class: "form-row"},
    el("button", {type: "submit", class: kind, text: text, "data-action": action}),
    el("button", {type: "button", class: "cancel", text: "Cancel"}));
}

function showReview(form, program) {
  const box = form.querySelector(".program-state");
  const review = form.querySelector(".review");
  if (program.kept) {
    box.textContent = program.name + " is kept here (you ran it before): it runs as it is.";
    review.hidden = true;
    form.dataset.program = "kept";
  } else if (program.review) {
    const r = program.review;
    box.textContent = program.name + ": " + r.size + " bytes, " + r.lines + " lines, sha256 " + program.sha256 +
      " (the invitation's). It will run on this machine with your rights: read it first.";
    review.hidden = false;
    review.querySelector("pre.source").textContent = r.source;
    form.dataset.program = "review";
  } else {
    box.textContent = program.name + " (sha256 " + program.sha256.slice(0, 16) + "…) is not here: review it (it is fetched from the inviter, who must be in the session), or give your own copy.";
    review.hidden = true;
    form.dataset.program = "missing";
  }
  form.querySelector("button.review-program").hidden = !!(program.kept || program.review);
}

function joinForm(inv, card) {
  const form = el("form", {class: "inline-form join-form", hidden: true, autocomplete: "off"});
  const reviewButton = el("button", {type: "button", class: "review-program", "data-action": "review-program", text: "Review the program"});
  form.append(el("p", {class: "program-state"}), reviewButton,
    el("div", {class: "review", hidden: true},
      el("pre", {class: "source"}),
      el("label", {class: "consent"}, el("input", {type: "checkbox", name: "accept"}),
         " I have read it; run it as my party")),
    el("label", {text: "Or your own copy of " + inv.program + ", full path (optional)"}),
    el("input", {type: "text", name: "program", class: "wide", placeholder: "/path/to/" + inv.program}),
    el("label", {text: "Program arguments (your private input; separated by spaces)"}),
    el("input", {type: "text", name: "args", class: "wide"}));
  chooseIdentity(form, inv, "Join as");
  form.append(buttons("primary", "Join", "join"));
  reviewButton.addEventListener("click", async () => {
    const body = {};
    if (form.elements.as) body.as = form.elements.as.value;
    reviewButton.disabled = true;
    const message = card.querySelector(".message");
    message.className = "message";
    message.textContent = "fetching the program from the inviter…";
    try {
      showReview(form, await api("invitations/" + inv.session + "/program/fetch", body));
      message.textContent = "";
    } catch (e) {
      message.className = "message error";
      message.textContent = e.message;
    }
    reviewButton.disabled = false;
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const args = form.elements.args.value.trim();
    const body = {args: args ? args.split(/\s+/) : []};
    const path = form.elements.program.value.trim();
    if (path) body.program = path;
    else if (form.dataset.program === "review") {
      if (!form.elements.accept.checked) {
        const message = card.querySelector(".message");
        message.className = "message error";
        message.textContent = "tick \"I have read it\" to run the fetched program, or give your own copy";
        return;
      }
      body.accept_program = true;
    }
    if (form.elements.as) body.as = form.elements.as.value;
    const result = await submit(form, "invitations/" + inv.session + "/join", body, () => "joined: see Sessions below");
    if (result) form.hidden = true;
  });
  return form;
}

function declineForm(inv, card) {
  const form = el("form", {class: "inline-form decline-form", hidden: true, autocomplete: "off"});
  form.append(el("label", {text: "Reason (optional, sent to the other parties)"}),
    el("input", {type: "text", name: "reason", class: "wide", maxlength: 500}));
  chooseIdentity(form, inv, "Decline as");
  form.append(buttons("danger", "Decline invitation", "decline"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {reason: form.elements.reason.value.trim()};
    if (form.elements.as) body.as = form.elements.as.value;
    const result = await submit(form, "invitations/" + inv.session + "/decline", body, () => "declined");
    if (result) form.hidden = true;
  });
  return form;
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
      el("dt", {text: "requires"}), el("dd", {class: "requires", text: inv.requirements.join("; ") || "no credentials"}),
      el("dt", {text: "expires"}), el("dd", {class: "expires"}),
      el("dt", {text: "reason"}), el("dd", {class: "reason"})),
    el("div", {class: "actions"},
      el("button", {type: "button", class: "accept primary", text: "Accept"}),
      el("button", {type: "button", class: "decline danger", text: "Decline"})),
    joinForm(inv, card), declineForm(inv, card),
    el("p", {class: "message", role: "status"}));
  const join = card.querySelector(".join-form");
  const decline = card.querySelector(".decline-form");
  card.querySelector("button.accept").addEventListener("click", async () => {
    decline.hidden = true; join.hidden = false;
    try { showReview(join, await api("invitations/" + inv.session + "/program")); }
    catch (e) { card.querySelector(".message").textContent = e.message; }
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
  // A session that ran (or failed, or was declined) cannot be joined again from here.
  const closed = inv.expired || ["declined", "running", "completed", "failed"].includes(state);
  card.querySelector("button.accept").disabled = closed;
  card.querySelector("button.decline").disabled = closed;
}

async function loadInvitations() {
  const data = await api("invitations");
  const box = document.getElementById("invitations");
  const seen = new Set();
  for (const inv of data.invitations) {  // newest first, as the API lists them
    seen.add(inv.session);
    let card = box.querySelector('article[data-session="' + inv.session + '"]');
    if (!card) card = invitationCard(inv);
    box.append(card);  // moves an existing card into order, keeping its forms' input
    updateCard(card, inv);
  }
  for (const card of box.querySelectorAll("article.invitation")) {
    if (!seen.has(card.dataset.session)) card.remove();
  }
  box.parentElement.querySelector(".empty").hidden = seen.size !== 0;
}

// -- sessions: one panel per joined session, a row per party, from the event stream.

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
    result(run),
    el("details", {class: "log"}, el("summary", {text: "MPyC's log and the program's full output"}),
       el("pre", {class: "stdout", text: run.stdout})),
    el("p", {class: "error", text: run.error ? "error: " + run.error : ""}));
}

// The program's own output, without MPyC's log lines ("2026-12-02 16:29:14,700 ..."):
// what the session computed, shown as its result.
const LOG_LINE = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} /;

function result(run) {
  const lines = run.stdout.split("\n").filter((line) => line.trim() && !LOG_LINE.test(line));
  if (!lines.length) return null;
  return el("div", {class: "result-box", "data-result": run.session},
    el("h4", {text: run.state === "completed" ? "Result" : "Output so far"}),
    el("pre", {text: lines.join("\n")}));
}

function showSessions(sessions) {
  const box = document.getElementById("sessions");
  box.replaceChildren(...sessions.map(sessionPanel));
  box.parentElement.querySelector(".empty").hidden = sessions.length !== 0;
}

// -- history

async function loadHistory() {
  const data = await api("history");
  fillTable("history", data.history.map((h) => {
    const transcripts = h.transcripts.map((t) => el("div", {class: "transcript"},
      el("span", {class: t.verified ? "yes" : "bad", text: t.verified ? "✓ signature verified" : "✗ " + (t.problem || "does not verify")}),
      " ", el("a", {href: "api/history/" + h.session + "/" + t.index + "/transcript",
                    download: "transcript-" + h.session + ".json", text: "download"})));
    const outcome = h.transcripts.length && h.transcripts[0].verified ? h.transcripts[0].outcome : h.state;
    const error = h.transcripts.length && h.transcripts[0].verified ? h.transcripts[0].error : h.reason;
    return el("tr", {"data-session": h.session, "data-outcome": outcome},
      el("td", {text: when(h.when)}),
      el("td", {}, h.name ? h.name + " · " : "", el("code", {text: h.session})),
      el("td", {text: h.program}),
      el("td", {}, ...h.parties.map((did, i) => el("div", {class: "did", title: did, text: i + ": " + short(did)}))),
      el("td", {class: "state-cell state-" + outcome}, outcome, error ? el("div", {class: "reason", text: error}) : null),
      el("td", {}, ...(transcripts.length ? transcripts : ["none kept"])));
  }));
}

// -- refreshing

let reloadTimer = null;

async function reload() {
  reloadTimer = null;
  try {
    await Promise.all([loadIdentities(), loadCredentials()]);
    await Promise.all([loadIssued(), loadStatusLists(), loadPrograms(), loadInvitations(), loadHistory(),
                       api("sessions").then((data) => showSessions(data.sessions))]);
    status("updated " + new Date().toLocaleTimeString(), false);
  } catch (e) {
    status(e.message, true);
  }
}

function reloadSoon() {
  if (reloadTimer === null) reloadTimer = setTimeout(reload, 200);
}

function follow() {
  const source = new EventSource("api/events");
  let last = -1;
  source.addEventListener("change", (event) => {
    const data = JSON.parse(event.data);
    showSessions(data.sessions);
    if (data.version !== last) { last = data.version; reloadSoon(); }
  });
  source.addEventListener("error", () => status("lost the connection to mpcid ui; retrying…", true));
}

document.getElementById("check-inbox").addEventListener("click", async (event) => {
  const result = document.getElementById("inbox-result");
  event.target.disabled = true;
  result.className = "message";
  result.textContent = "looking in the DHT…";
  try {
    result.textContent = (await api("invitations/check", {})).result;
    result.className = "message ok";
  } catch (e) {
    result.className = "message error";
    result.textContent = e.message;
  }
  event.target.disabled = false;
  reloadSoon();
});

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
  reloadSoon();
});

reload();
follow();
setInterval(reload, SLOW);
