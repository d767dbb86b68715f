/* Front-desk patient search: one box, search as you type, keyboard first; and a New patient
 * form that shows who on file may be the person while the clerk types.
 *
 * Plain browser JavaScript: no framework, no build step. Patient data only ever reaches
 * the page as text (textContent and text nodes), never as HTML. The token lives in
 * sessionStorage (this tab only), and the query never enters the page's URL or history.
 */
"use strict";

(() => {
  const TOKEN_KEY = "patient-search.token";
  const DEBOUNCE_MS = 150;
  const SLOW_MS = 250; // only a search slower than this shows "Searching…" (no flicker)
  const MIN_QUERY_CHARS = 2;
  const PAGE_SIZE = 20;
  const MATCH_LABELS = {
    mrn: "MRN",
    phone: "phone",
    email: "email",
    exact: "exact",
    prefix: "prefix",
    nickname: "nickname",
    phonetic: "sounds like",
    fuzzy: "typo",
    partial: "partial name",
    dob_near: "DOB near",
  };
  // How a typed date of birth that is not the patient's compares with it (`matched`).
  const DOB_DIFFERS = {
    transposed: "DOB digits swapped",
    day_month_swapped: "DOB day/month swapped",
    one_digit: "DOB one digit off",
    different: "DOB differs",
  };
  const NO_MATCH = "No patient matches — check spelling or search by date of birth.";

  const $ = (id) => document.getElementById(id);
  const ui = {
    session: $("session"),
    sessionClinic: $("session-clinic"),
    sessionExpiry: $("session-expiry"),
    signOut: $("sign-out"),
    signIn: $("sign-in"),
    signInError: $("sign-in-error"),
    devForm: $("dev-form"),
    devClinic: $("dev-clinic"),
    tokenForm: $("token-form"),
    tokenInput: $("token-input"),
    workspace: $("workspace"),
    search: $("search"),
    box: $("q"),
    status: $("status"),
    notice: $("notice"),
    noticeTitle: $("notice-title"),
    noticeDetail: $("notice-detail"),
    retry: $("retry"),
    results: $("results"),
    panel: $("panel"),
    panelTitle: $("panel-title"),
    panelSummary: $("panel-summary"),
    panelStatus: $("panel-status"),
    panelBody: $("panel-body"),
    panelClose: $("panel-close"),
    newPatient: $("new-patient"),
    register: $("register"),
    registerBack: $("register-back"),
    registerDone: $("register-done"),
    registerForm: $("register-form"),
    registerError: $("register-error"),
    registerSave: $("register-save"),
    duplicate: $("duplicate"),
    duplicateDetail: $("duplicate-detail"),
    duplicateList: $("duplicate-list"),
    createAnyway: $("create-anyway"),
    matches: $("matches"),
    matchesStatus: $("matches-status"),
    matchList: $("match-list"),
  };

  /** An element with an optional class, text and attributes; children are nodes or text. */
  function h(tag, options = {}, ...children) {
    const node = document.createElement(tag);
    if (options.className) node.className = options.className;
    if (options.text !== undefined) node.textContent = options.text;
    for (const [name, value] of Object.entries(options.attrs || {})) {
      node.setAttribute(name, value);
    }
    for (const child of children) {
      if (child !== null && child !== undefined && child !== "") node.append(child);
    }
    return node;
  }

  // ------------------------------------------------------------------ session and API

  const session = {
    get token() {
      return sessionStorage.getItem(TOKEN_KEY);
    },
    start(token) {
      sessionStorage.setItem(TOKEN_KEY, token);
    },
    end() {
      sessionStorage.removeItem(TOKEN_KEY);
    },
  };

  /** The claims of a JWT, unverified: only to show the clinic and expiry (the server verifies). */
  function decodeClaims(token) {
    const parts = (token || "").split(".");
    if (parts.length !== 3) return null;
    try {
      const base64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
      const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
      const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
      const claims = JSON.parse(new TextDecoder().decode(bytes));
      return claims && typeof claims.clinic_id === "string" ? claims : null;
    } catch {
      return null;
    }
  }

  function isExpired(claims) {
    return typeof claims.exp === "number" && claims.exp * 1000 <= Date.now();
  }

  class ApiError extends Error {
    constructor(status, title, detail, problem = {}) {
      super(detail || title);
      this.status = status;
      this.title = title;
      this.detail = detail;
      this.problem = problem; // the whole problem document (type, candidates, errors, ...)
    }
  }

  /** JSON from this origin; a problem document becomes an ApiError. */
  async function api(path, { method = "GET", body, signal, auth = true } = {}) {
    const headers = { Accept: "application/json" };
    if (auth) headers.Authorization = `Bearer ${session.token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method,
      headers,
      signal,
      cache: "no-store",
      credentials: "omit",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!response.ok) {
      let problem = {};
      try {
        problem = await response.json();
      } catch {
        // not a problem document: the status says enough
      }
      throw new ApiError(response.status, problem.title || response.statusText, problem.detail || "", problem);
    }
    return { data: await response.json(), headers: response.headers };
  }

  /** The server's own time from its Server-Timing header, in ms, or null. */
  function serverMs(headers) {
    const found = /(?:^|,)\s*app;dur=([\d.]+)/.exec(headers.get("server-timing") || "");
    return found ? Number(found[1]) : null;
  }

  function problemText(error) {
    if (error instanceof ApiError) {
      if (error.status === 503) return ["The service is busy", "Try again in a moment."];
      return [`The search failed (${error.status} ${error.title})`, error.detail];
    }
    return ["Cannot reach the service", "Check the connection, then try again."];
  }

  // ------------------------------------------------------------------ formatting

  const dateFormat = new Intl.DateTimeFormat(undefined, {
    year: "numeric",
    month: "short",
    day: "numeric",
    timeZone: "UTC",
  });
  const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
  const countFormat = new Intl.NumberFormat();

  function formatDate(iso) {
    const [year, month, day] = iso.split("-").map(Number);
    return dateFormat.format(Date.UTC(year, month - 1, day));
  }

  function ageText(iso, today = new Date()) {
    const [year, month, day] = iso.split("-").map(Number);
    const months =
      (today.getFullYear() - year) * 12 +
      (today.getMonth() + 1 - month) -
      (today.getDate() < day ? 1 : 0);
    return months >= 24 ? `${Math.floor(months / 12)} y` : `${Math.max(months, 0)} mo`;
  }

  function formatPhone(phone) {
    const nanp = /^\+1(\d{3})(\d{3})(\d{4})$/.exec(phone);
    return nanp ? `(${nanp[1]}) ${nanp[2]}-${nanp[3]}` : phone;
  }

  function displayName(patient) {
    const given = [patient.first_name, patient.middle_name].filter(Boolean).join(" ");
    return given ? `${patient.last_name}, ${given}` : patient.last_name;
  }

  function formatMs(ms) {
    return ms < 10 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`;
  }

  // ------------------------------------------------------------------ highlighting
  //
  // The server says where the query matched each name field (`highlights`: [start, end)
  // spans of the displayed text) and how every field agreed (`matched`); the page marks the
  // identifiers the query contains itself, since they are typed exactly.

  function isoDate(token) {
    let found = /^(\d{4})-(\d{1,2})-(\d{1,2})$/.exec(token);
    if (found) return `${found[1]}-${found[2].padStart(2, "0")}-${found[3].padStart(2, "0")}`;
    found = /^(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})$/.exec(token);
    if (found) return `${found[3]}-${found[1].padStart(2, "0")}-${found[2].padStart(2, "0")}`;
    return null;
  }

  function queryParts(query) {
    const parts = { digits: [], dates: [], raw: [] };
    for (const token of query.split(/[\s,;]+/).filter(Boolean)) {
      parts.raw.push(token.toLowerCase());
      const date = isoDate(token);
      if (date) {
        parts.dates.push(date);
      } else if (/\d/.test(token)) {
        const digits = token.replace(/\D/g, "");
        if (digits.length >= 4) parts.digits.push(digits);
      }
    }
    const allDigits = query.replace(/\D/g, "");
    if (!parts.dates.length && allDigits.length >= 7) parts.digits.push(allDigits);
    return parts;
  }

  /** Ranges to mark, per field: {last_name: [[start, end]], phones: Set{0}, ...}. */
  function highlightsFor(patient, parts) {
    const marks = { ...(patient.highlights || {}), phones: new Set() };
    if (patient.match === "mrn" || parts.raw.includes(patient.mrn.toLowerCase())) {
      marks.mrn = [[0, patient.mrn.length]];
    }
    patient.phones.forEach((phone, i) => {
      const digits = phone.replace(/\D/g, "");
      if (parts.digits.some((needle) => digits.includes(needle))) marks.phones.add(i);
    });
    const born = (patient.matched || {}).date_of_birth;
    if (patient.date_of_birth && (born === "exact" || parts.dates.includes(patient.date_of_birth))) {
      marks.date_of_birth = true;
    }
    if (patient.email && (patient.match === "email" || parts.raw.includes(patient.email))) {
      marks.email = true;
    }
    return marks;
  }

  /** `text` with the given [start, end) ranges wrapped in <mark>. */
  function marked(text, ranges = []) {
    const fragment = document.createDocumentFragment();
    let at = 0;
    for (const [start, end] of [...ranges].sort((a, b) => a[0] - b[0])) {
      if (start < at) continue;
      fragment.append(text.slice(at, start), h("mark", { text: text.slice(start, end) }));
      at = end;
    }
    fragment.append(text.slice(at));
    return fragment;
  }

  const markedIf = (on, text) => (on ? h("mark", { text }) : text);

  // ------------------------------------------------------------------ search

  const search = {
    generation: 0, // bumped by every new query; an answer for an older one is dropped
    controller: null, // the request in flight, aborted as soon as the query changes
    timer: 0,
    slowTimer: 0,
    query: "",
    items: [],
    active: -1,
    openWhenReady: false, // Enter was pressed before this query's answer arrived
  };

  function setLoading(on) {
    clearTimeout(search.slowTimer);
    ui.results.setAttribute("aria-busy", String(on));
    ui.search.classList.remove("is-loading");
    if (on) {
      search.slowTimer = setTimeout(() => {
        ui.search.classList.add("is-loading");
        setStatus("Searching…");
      }, SLOW_MS);
    }
  }

  function setStatus(text) {
    ui.status.textContent = text;
  }

  function showNotice(title, detail = "", { error = false, retry = false } = {}) {
    ui.notice.hidden = false;
    ui.notice.classList.toggle("is-error", error);
    ui.noticeTitle.textContent = title;
    ui.noticeDetail.textContent = detail;
    ui.noticeDetail.hidden = !detail;
    ui.retry.hidden = !retry;
  }

  function hideNotice() {
    ui.notice.hidden = true;
  }

  /** Stops whatever search is pending or in flight; its answer, if any, will be ignored. */
  function cancelSearch() {
    clearTimeout(search.timer);
    search.generation += 1;
    if (search.controller) search.controller.abort();
    search.controller = null;
    setLoading(false);
  }

  function onQueryInput() {
    const query = ui.box.value.trim();
    if (query === search.query) return;
    search.query = query;
    search.openWhenReady = false;
    cancelSearch();
    if (query.length < MIN_QUERY_CHARS) {
      showIdle(query);
      return;
    }
    setLoading(true);
    search.timer = setTimeout(() => runSearch(query), DEBOUNCE_MS);
  }

  async function runSearch(query) {
    if (search.controller) search.controller.abort();
    search.generation += 1;
    const generation = search.generation;
    const controller = new AbortController();
    search.controller = controller;
    setLoading(true);
    const started = performance.now();
    let answer;
    try {
      const params = new URLSearchParams({ q: query, limit: String(PAGE_SIZE) });
      answer = await api(`/v1/patients?${params}`, { signal: controller.signal });
    } catch (error) {
      if (generation !== search.generation) return; // superseded: a newer query owns the page
      search.controller = null;
      setLoading(false);
      if (error instanceof ApiError && error.status === 401) {
        signOut("Your session has ended — sign in again.");
        return;
      }
      const [title, detail] = problemText(error);
      showResults([]);
      setStatus(title);
      showNotice(title, detail, { error: true, retry: true });
      return;
    }
    // Never let an older answer overwrite a newer query's results, even one that
    // slipped past the abort.
    if (generation !== search.generation) return;
    search.controller = null;
    setLoading(false);
    render(query, answer.data, performance.now() - started, serverMs(answer.headers));
  }

  function showIdle(query) {
    showResults([]);
    setStatus("");
    if (query) {
      showNotice("Keep typing…", "Type at least two characters.");
    } else {
      showNotice(
        "Start typing to find a patient",
        "Names in any order (nicknames and typos are fine), a date of birth like 3/14/1975, " +
          "a phone number, an MRN or an email.",
      );
    }
  }

  function render(query, page, roundTripMs, serverTimeMs) {
    const timing =
      serverTimeMs === null
        ? formatMs(roundTripMs)
        : `${formatMs(roundTripMs)} (server ${formatMs(serverTimeMs)})`;
    const openFirst = search.openWhenReady;
    search.openWhenReady = false;
    if (!page.items.length) {
      showResults([]);
      showNotice(NO_MATCH);
      setStatus(`No patient matches · ${timing}`);
      return;
    }
    hideNotice();
    showResults(page.items, queryParts(query));
    const shown = page.items.length;
    const noun = page.total === 1 ? "patient" : "patients";
    const count =
      shown >= page.total
        ? `${countFormat.format(shown)} ${noun}`
        : `${shown} of ${page.total_exact ? "" : "about "}${countFormat.format(page.total)} ${noun}`;
    setStatus(`${count} · ${timing}`);
    if (openFirst) openPatient(0);
  }

  function showResults(items, parts) {
    search.items = items;
    search.active = -1;
    ui.results.replaceChildren(...items.map((item, i) => resultItem(item, i, parts)));
    ui.box.setAttribute("aria-expanded", String(items.length > 0));
    ui.box.removeAttribute("aria-activedescendant");
  }

  function fact(label, ...value) {
    return h("div", {}, h("dt", { text: label }), h("dd", {}, ...value));
  }

  function resultItem(patient, index, parts) {
    const marks = highlightsFor(patient, parts);
    const given = h("span", { className: "given" });
    for (const field of ["first_name", "middle_name"]) {
      if (!patient[field]) continue;
      given.append(given.childNodes.length ? " " : "", marked(patient[field], marks[field]));
    }
    const name = h(
      "div",
      { className: "result-name" },
      marked(patient.last_name, marks.last_name),
      given.childNodes.length ? ", " : "",
      given.childNodes.length ? given : null,
    );
    const rung = h(
      "span",
      { className: `tag rung rung-${patient.match}`, attrs: { title: "How this patient matched" } },
      h("span", { className: "visually-hidden", text: "matched by " }),
      MATCH_LABELS[patient.match] || patient.match,
    );
    const status = h("span", { className: `tag status-${patient.status}`, text: patient.status });
    const facts = h("dl", { className: "result-facts" });
    if (patient.date_of_birth) {
      const born = `${formatDate(patient.date_of_birth)} (${ageText(patient.date_of_birth)})`;
      const differs = DOB_DIFFERS[(patient.matched || {}).date_of_birth];
      facts.append(
        fact(
          "DOB",
          markedIf(marks.date_of_birth, born),
          differs ? h("span", { className: "dob-differs", text: ` · ${differs}` }) : "",
        ),
      );
    } else {
      facts.append(fact("DOB", "not recorded"));
    }
    facts.append(fact("MRN", marked(patient.mrn, marks.mrn)));
    if (patient.phones.length) {
      const shownPhone = [...marks.phones][0] ?? 0;
      const more = patient.phones.length - 1;
      facts.append(
        fact(
          "Phone",
          markedIf(marks.phones.has(shownPhone), formatPhone(patient.phones[shownPhone])),
          more ? ` +${more}` : "",
        ),
      );
    }
    if (marks.email) facts.append(fact("Email", h("mark", { text: patient.email })));
    const item = h(
      "li",
      {
        className: "result",
        attrs: { id: `result-${index}`, role: "option", "aria-selected": "false" },
      },
      name,
      h("div", { className: "result-tags" }, rung, status),
      facts,
    );
    item.addEventListener("click", () => openPatient(index));
    return item;
  }

  function select(index) {
    search.active = index;
    ui.results.querySelectorAll('[role="option"]').forEach((option, i) => {
      option.setAttribute("aria-selected", String(i === index));
    });
    if (index < 0) {
      ui.box.removeAttribute("aria-activedescendant");
      return;
    }
    const option = $(`result-${index}`);
    ui.box.setAttribute("aria-activedescendant", option.id);
    option.scrollIntoView({ block: "nearest" });
  }

  function clearSearch() {
    ui.box.value = "";
    search.query = "";
    cancelSearch();
    showIdle("");
  }

  function onBoxKeydown(event) {
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      if (!search.items.length) return;
      event.preventDefault();
      const step = event.key === "ArrowDown" ? 1 : -1;
      select(Math.max(-1, Math.min(search.items.length - 1, search.active + step)));
    } else if (event.key === "Enter") {
      event.preventDefault();
      if (ui.results.getAttribute("aria-busy") === "true") {
        // The list on screen answers an older query: open the first hit of this one
        // when it arrives, and do not wait out the debounce for it.
        search.openWhenReady = true;
        if (search.controller === null) {
          clearTimeout(search.timer);
          runSearch(search.query);
        }
        return;
      }
      if (search.items.length) openPatient(Math.max(search.active, 0));
    } else if (event.key === "Escape") {
      event.preventDefault();
      if (!ui.panel.hidden) closePanel();
      else clearSearch();
    }
  }

  // ------------------------------------------------------------------ patient panel

  const profile = { controller: null };

  function openPatient(index) {
    const summary = search.items[index];
    if (!summary) return;
    select(index);
    openProfile(summary);
  }

  /** Opens the panel on a patient (anything with id, names and MRN) and loads the profile. */
  async function openProfile(summary) {
    if (profile.controller) profile.controller.abort();
    const controller = new AbortController();
    profile.controller = controller;
    ui.workspace.classList.add("has-panel");
    ui.panel.hidden = false;
    ui.panelTitle.textContent = displayName(summary);
    ui.panelSummary.textContent = `MRN ${summary.mrn}`;
    ui.panelBody.replaceChildren();
    ui.panelStatus.textContent = "Loading the profile…";
    ui.panelTitle.focus();
    let patient;
    try {
      patient = (await api(`/v1/patients/${encodeURIComponent(summary.id)}`, { signal: controller.signal }))
        .data;
    } catch (error) {
      if (controller !== profile.controller) return; // another patient was opened, or closed
      profile.controller = null;
      if (error instanceof ApiError && error.status === 401) {
        signOut("Your session has ended — sign in again.");
      } else if (error instanceof ApiError && error.status === 404) {
        ui.panelStatus.textContent = "This patient is no longer on file (archived).";
      } else {
        const [title, detail] = problemText(error);
        ui.panelStatus.textContent = `${title}. ${detail}`;
      }
      return;
    }
    if (controller !== profile.controller) return;
    profile.controller = null;
    ui.panelStatus.textContent = "";
    renderProfile(patient);
  }

  function section(title, ...content) {
    return h("section", { attrs: { "aria-label": title } }, h("h3", { text: title }), ...content);
  }

  function facts(pairs) {
    const list = h("dl", { className: "facts" });
    for (const [label, value] of pairs) list.append(h("dt", { text: label }), h("dd", {}, value));
    return list;
  }

  function entries(items, render, none) {
    if (!items.length) return h("p", { className: "empty-list", text: none });
    return h("ul", { className: "entries" }, ...items.map((item) => h("li", {}, ...render(item))));
  }

  function renderProfile(patient) {
    ui.panelTitle.textContent = displayName(patient);
    const born = patient.date_of_birth
      ? `${formatDate(patient.date_of_birth)} (${ageText(patient.date_of_birth)})`
      : "not recorded";
    ui.panelSummary.textContent = `MRN ${patient.mrn} · ${patient.status}`;
    ui.panelBody.replaceChildren(
      section(
        "Patient",
        facts([
          ["Date of birth", born],
          ["Sex", patient.sex || "not recorded"],
          ["MRN", patient.mrn],
          ["Status", h("span", { className: `tag status-${patient.status}`, text: patient.status })],
        ]),
      ),
      section(
        "Contact",
        facts([
          [
            "Phone",
            patient.phones.length
              ? h("ul", { className: "phones" }, ...patient.phones.map((phone) => h("li", { text: formatPhone(phone) })))
              : "none",
          ],
          ["Email", patient.email || "none"],
        ]),
      ),
      section(
        "Emergency contacts",
        entries(
          patient.emergency_contacts,
          (contact) => [
            h("span", { className: "entry-main", text: contact.name }),
            h("span", {
              className: "muted",
              text: [contact.relationship, contact.phone && formatPhone(contact.phone)]
                .filter(Boolean)
                .join(" · "),
            }),
          ],
          "None on file",
        ),
      ),
      section(
        "Insurance",
        entries(
          patient.insurance,
          (policy) => [
            h("span", { className: "entry-main", text: policy.payer }),
            h("span", { className: "muted", text: `Member ID ${policy.member_id}` }),
          ],
          "None on file",
        ),
      ),
    );
  }

  function closePanel() {
    if (profile.controller) profile.controller.abort();
    profile.controller = null;
    const hadFocus = ui.panel.contains(document.activeElement);
    ui.panel.hidden = true;
    ui.workspace.classList.remove("has-panel");
    if (hadFocus && !ui.workspace.hidden) focusWork();
  }

  /** Focus back to the work in front of the clerk: the registration form, or the box. */
  function focusWork() {
    if (ui.register.hidden) ui.box.focus();
    else ui.registerForm.elements.first_name.focus();
  }

  // ------------------------------------------------------------------ new patient
  //
  // While the clerk types, the form asks POST /v1/patients/match who on file may be this
  // person (debounced; a newer body aborts the older request, and a late answer is
  // dropped). Saving a suspected duplicate answers 409 and creates nothing; the clerk
  // then opens the patient on file or says "Create anyway" (?allow_duplicate=true).
  // Patient data goes in POST bodies only, never in a URL.

  const MATCH_DEBOUNCE_MS = 250;
  const MATCH_LIMIT = 5;
  const DUPLICATE_TYPE = "/duplicate-suspected";
  const FIELD_WORDS = {
    last_name: "last name",
    first_name: "first name",
    middle_name: "middle name",
    date_of_birth: "DOB",
    sex: "sex",
    phone: "phone",
    email: "email",
    address: "street",
    city: "city",
    postal_code: "postal code",
  };
  const AGREEMENT_WORDS = {
    exact: "exact",
    nickname: "nickname",
    typo: "typo",
    phonetic: "sounds alike",
    initial: "initial",
    similar: "similar",
  };
  const NAMES_SWAPPED = "first and last names swapped";
  // As the server checks them, so that a half-typed phone or email is left out of /match.
  const PLAUSIBLE_EMAIL = /^[^@\s]+@[^@\s]+\.[^@\s.]+$/;
  const PLAUSIBLE_PHONE_DIGITS = /^\d{7,15}$/;

  const registration = {
    generation: 0, // bumped by every new match body; an answer for an older one is dropped
    controller: null,
    timer: 0,
    matchKey: "", // the body last asked about (JSON), so that a keystroke that changes nothing asks nothing
    saving: false,
    warned: null, // the body the duplicate warning is about; "Create anyway" posts it
  };

  /** The form as a POST /v1/patients body: empty fields left out. */
  function registrationBody() {
    const value = (name) => ui.registerForm.elements[name].value.trim();
    const body = {};
    for (const name of ["mrn", "first_name", "middle_name", "last_name", "date_of_birth", "sex", "email"]) {
      if (value(name)) body[name] = value(name);
    }
    if (value("phone")) body.phones = [value("phone")];
    const address = {};
    if (value("address_line")) address.lines = [value("address_line")];
    if (value("city")) address.city = value("city");
    if (value("postal_code")) address.postal_code = value("postal_code");
    if (Object.keys(address).length) body.address = address;
    return body;
  }

  /** What /match is asked while typing: no MRN, and no phone or email until they look whole. */
  function matchBody(body) {
    const { mrn, ...person } = body;
    if (person.email && !PLAUSIBLE_EMAIL.test(person.email)) delete person.email;
    if (person.phones && !PLAUSIBLE_PHONE_DIGITS.test(person.phones[0].replace(/\D/g, ""))) {
      delete person.phones;
    }
    return person;
  }

  /** As the server decides it: a last name, or a date of birth with one other field. */
  function isEnoughToMatch(person) {
    const others = [person.first_name, person.middle_name, person.phones, person.email, person.sex];
    return Boolean(person.last_name) || (Boolean(person.date_of_birth) && others.some(Boolean));
  }

  function openRegister() {
    ui.search.hidden = true;
    ui.register.hidden = false;
    ui.registerDone.hidden = true;
    ui.registerForm.elements.date_of_birth.max = new Date().toISOString().slice(0, 10);
    ui.registerForm.elements.first_name.focus();
  }

  function closeRegister() {
    cancelMatch();
    ui.register.hidden = true;
    ui.search.hidden = false;
  }

  function resetRegister() {
    cancelMatch();
    ui.registerForm.reset();
    registration.matchKey = "";
    hideRegisterProblems();
    showMatches(null);
  }

  function hideRegisterProblems() {
    registration.warned = null;
    ui.duplicate.hidden = true;
    ui.duplicateList.replaceChildren();
    ui.registerError.hidden = true;
    for (const field of ui.registerForm.elements) field.removeAttribute("aria-invalid");
  }

  function cancelMatch() {
    clearTimeout(registration.timer);
    registration.generation += 1;
    if (registration.controller) registration.controller.abort();
    registration.controller = null;
    ui.matchList.setAttribute("aria-busy", "false");
  }

  function onRegisterInput() {
    ui.registerDone.hidden = true;
    // A warning was about the body as it was: once it changes, Save checks it again.
    hideRegisterProblems();
    const person = matchBody(registrationBody());
    const key = JSON.stringify(person);
    if (key === registration.matchKey) return;
    registration.matchKey = key;
    cancelMatch();
    if (!isEnoughToMatch(person)) {
      showMatches(null);
      return;
    }
    registration.timer = setTimeout(() => runMatch(person), MATCH_DEBOUNCE_MS);
  }

  async function runMatch(person) {
    const generation = ++registration.generation;
    const controller = new AbortController();
    registration.controller = controller;
    ui.matchList.setAttribute("aria-busy", "true");
    let items;
    try {
      items = await findMatches(person, MATCH_LIMIT, controller.signal);
    } catch (error) {
      if (generation !== registration.generation) return; // a newer body owns the list
      registration.controller = null;
      ui.matchList.setAttribute("aria-busy", "false");
      if (error instanceof ApiError && error.status === 401) {
        signOut("Your session has ended — sign in again.");
        return;
      }
      showMatches([], `Cannot check who is on file: ${registerProblemText(error)}`);
      return;
    }
    if (generation !== registration.generation) return;
    registration.controller = null;
    ui.matchList.setAttribute("aria-busy", "false");
    showMatches(items, items.length ? "" : "No patient on file matches so far.");
  }

  async function findMatches(person, limit, signal) {
    const params = new URLSearchParams({ limit: String(limit) });
    const { data } = await api(`/v1/patients/match?${params}`, { method: "POST", body: person, signal });
    return data.items;
  }

  /** The live matches, or none and the section hidden (`items` null: too little typed). */
  function showMatches(items, note = "") {
    ui.matches.hidden = items === null;
    ui.matchesStatus.textContent = note;
    ui.matchList.replaceChildren(...(items || []).map(matchItem));
  }

  /** `matched` in words: "last name exact, DOB digits swapped" and what differs. */
  function agreementWords(matched) {
    const agreed = [];
    const differs = [];
    for (const [field, how] of Object.entries(matched)) {
      const name = FIELD_WORDS[field] || field.replace(/_/g, " ");
      if (how === "different") {
        differs.push(name);
      } else if (how === "swapped") {
        if (!agreed.includes(NAMES_SWAPPED)) agreed.push(NAMES_SWAPPED);
      } else if (field === "date_of_birth" && DOB_DIFFERS[how]) {
        agreed.push(DOB_DIFFERS[how]);
      } else {
        agreed.push(`${name} ${AGREEMENT_WORDS[how] || how}`);
      }
    }
    return [agreed.join(", "), differs.length ? `differs: ${differs.join(", ")}` : ""];
  }

  function matchItem({ patient, grade, matched }) {
    const born = patient.date_of_birth
      ? `${formatDate(patient.date_of_birth)} (${ageText(patient.date_of_birth)})`
      : "not recorded";
    const [agreed, differs] = agreementWords(matched);
    const open = h("button", { className: "button-quiet", text: "Open profile", attrs: { type: "button" } });
    open.addEventListener("click", () => openProfile(patient));
    return h(
      "li",
      { className: "match" },
      h("div", { className: "result-name", text: displayName(patient) }),
      h(
        "div",
        { className: "result-tags" },
        h("span", {
          className: `tag grade grade-${grade}`,
          text: grade,
          attrs: { title: "How likely this is the same person" },
        }),
        open,
      ),
      h("dl", { className: "result-facts" }, fact("DOB", born), fact("MRN", patient.mrn)),
      h(
        "p",
        { className: "agreed" },
        agreed ? h("span", { text: `Agrees: ${agreed}` }) : null,
        differs ? h("span", { className: "differs", text: differs }) : null,
      ),
    );
  }

  function registerProblemText(error) {
    if (error instanceof ApiError) {
      if (error.status === 503) return "the service is busy — try again in a moment.";
      return error.detail || `${error.status} ${error.title}`;
    }
    return "cannot reach the service — check the connection, then try again.";
  }

  function showRegisterError(error) {
    ui.registerError.textContent = `Not saved: ${registerProblemText(error)}`;
    ui.registerError.hidden = false;
    for (const { loc = [] } of (error instanceof ApiError && error.problem.errors) || []) {
      const field = ui.registerForm.elements[formFieldAt(loc)];
      if (field instanceof HTMLElement) field.setAttribute("aria-invalid", "true");
    }
  }

  /** The form field a 422 error's location names: ["body", "phones", 0] is "phone". */
  function formFieldAt([, top, part]) {
    if (top === "phones") return "phone";
    if (top === "address") return part === "lines" ? "address_line" : part;
    return top;
  }

  async function saveRegistration(allowDuplicate) {
    if (registration.saving) return;
    const body = allowDuplicate && registration.warned ? registration.warned : registrationBody();
    registration.saving = true;
    ui.registerSave.disabled = ui.createAnyway.disabled = true;
    let created;
    let failure;
    try {
      const query = allowDuplicate ? `?${new URLSearchParams({ allow_duplicate: "true" })}` : "";
      created = (await api(`/v1/patients${query}`, { method: "POST", body })).data;
    } catch (error) {
      failure = error;
    } finally {
      registration.saving = false;
      ui.registerSave.disabled = ui.createAnyway.disabled = false;
    }
    if (failure) {
      onSaveFailed(body, failure);
      return;
    }
    resetRegister();
    ui.registerDone.textContent = `Registered ${displayName(created)} · MRN ${created.mrn}`;
    ui.registerDone.hidden = false;
    openProfile(created);
  }

  function onSaveFailed(body, error) {
    if (error instanceof ApiError && error.status === 401) {
      signOut("Your session has ended — sign in again.");
    } else if (
      error instanceof ApiError &&
      error.status === 409 &&
      String(error.problem.type || "").endsWith(DUPLICATE_TYPE)
    ) {
      showDuplicate(body, error.problem.candidates || []);
    } else {
      hideRegisterProblems();
      showRegisterError(error);
    }
  }

  /** The 409's candidates (ids, grades and scores only), with their names from /match. */
  async function showDuplicate(body, candidates) {
    hideRegisterProblems();
    registration.warned = body;
    ui.duplicate.hidden = false;
    let items = [];
    try {
      const found = new Map(
        (await findMatches(body, MATCH_LIMIT * 2)).map((item) => [item.patient.id, item]),
      );
      items = candidates.map((candidate) => found.get(candidate.id)).filter(Boolean);
    } catch {
      // The warning and "Create anyway" stand without the details.
    }
    if (registration.warned !== body) return; // the form changed meanwhile
    const unnamed = candidates.length - items.length;
    ui.duplicateDetail.textContent =
      "Nothing was saved. Open the patient on file, or create a new record anyway." +
      (unnamed > 0 ? ` (${unnamed} more possible duplicate${unnamed > 1 ? "s" : ""} not shown.)` : "");
    ui.duplicateList.replaceChildren(...items.map(matchItem));
    ui.createAnyway.focus();
  }

  // ------------------------------------------------------------------ sign-in

  let devClinicsRequested = false;

  async function offerDevSignIn() {
    if (devClinicsRequested) return;
    devClinicsRequested = true;
    let clinics;
    try {
      clinics = (await api("/dev/clinics", { auth: false })).data.items;
    } catch {
      return; // not ENV=dev (404): only the token form is offered
    }
    ui.devClinic.replaceChildren(
      ...clinics.map((clinic) =>
        h("option", {
          text: clinic.name === clinic.id ? clinic.id : `${clinic.name} (${clinic.id})`,
          attrs: { value: clinic.id },
        }),
      ),
    );
    ui.devForm.hidden = clinics.length === 0;
  }

  function showSignInError(message) {
    ui.signInError.textContent = message || "";
    ui.signInError.hidden = !message;
  }

  function showSignIn(message) {
    ui.session.hidden = true;
    ui.workspace.hidden = true;
    ui.signIn.hidden = false;
    showSignInError(message);
    offerDevSignIn();
    ui.tokenInput.focus();
  }

  function showWorkspace() {
    const claims = decodeClaims(session.token);
    ui.sessionClinic.textContent = claims.clinic_id;
    ui.sessionExpiry.textContent =
      typeof claims.exp === "number" ? `until ${timeFormat.format(claims.exp * 1000)}` : "";
    ui.signIn.hidden = true;
    ui.session.hidden = false;
    ui.workspace.hidden = false;
    closePanel();
    closeRegister();
    clearSearch();
    ui.box.focus();
  }

  function signOut(message) {
    cancelSearch();
    closePanel();
    resetRegister();
    closeRegister();
    session.end();
    ui.tokenInput.value = "";
    showSignIn(message);
  }

  function onTokenSubmit(event) {
    event.preventDefault();
    const token = ui.tokenInput.value.trim().replace(/^Bearer\s+/i, "");
    const claims = decodeClaims(token);
    if (!claims) {
      showSignInError("That is not a patient-search token: paste the whole token.");
      return;
    }
    if (isExpired(claims)) {
      showSignInError("That token has expired: mint a new one.");
      return;
    }
    ui.tokenInput.value = "";
    session.start(token);
    showWorkspace();
  }

  async function onDevSubmit(event) {
    event.preventDefault();
    try {
      const { data } = await api("/dev/token", {
        method: "POST",
        body: { clinic_id: ui.devClinic.value },
        auth: false,
      });
      session.start(data.token);
      showWorkspace();
    } catch (error) {
      const [title, detail] = problemText(error);
      showSignInError(`${title}. ${detail}`);
    }
  }

  // ------------------------------------------------------------------ wiring

  function isTypingIn(target) {
    return target instanceof HTMLElement && target.closest("input, textarea, select") !== null;
  }

  function onDocumentKeydown(event) {
    if (event.defaultPrevented || ui.workspace.hidden) return;
    if (event.key === "Escape" && !ui.panel.hidden) {
      event.preventDefault();
      closePanel();
      focusWork();
    } else if (event.key === "/" && !isTypingIn(event.target)) {
      event.preventDefault();
      if (!ui.register.hidden) closeRegister();
      ui.box.focus();
      ui.box.select();
    }
  }

  function start() {
    ui.box.addEventListener("input", onQueryInput);
    ui.box.addEventListener("keydown", onBoxKeydown);
    ui.retry.addEventListener("click", () => {
      if (search.query.length >= MIN_QUERY_CHARS) runSearch(search.query);
      ui.box.focus();
    });
    ui.panelClose.addEventListener("click", () => {
      closePanel();
      focusWork();
    });
    ui.newPatient.addEventListener("click", openRegister);
    ui.registerBack.addEventListener("click", () => {
      closeRegister();
      ui.box.focus();
    });
    ui.registerForm.addEventListener("input", onRegisterInput);
    ui.registerForm.addEventListener("submit", (event) => {
      event.preventDefault();
      saveRegistration(false);
    });
    ui.createAnyway.addEventListener("click", () => saveRegistration(true));
    ui.signOut.addEventListener("click", () => signOut(""));
    ui.tokenForm.addEventListener("submit", onTokenSubmit);
    ui.tokenInput.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey) {
        event.preventDefault();
        ui.tokenForm.requestSubmit();
      }
    });
    ui.devForm.addEventListener("submit", onDevSubmit);
    document.addEventListener("keydown", onDocumentKeydown);

    const claims = decodeClaims(session.token);
    if (claims && !isExpired(claims)) {
      showWorkspace();
    } else {
      session.end();
      showSignIn(claims ? "Your session has ended — sign in again." : "");
    }
  }

  start();
})();
