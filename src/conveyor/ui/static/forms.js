// The Run and Backfill forms, generated from a pipeline's typed parameters (ParamView), in a
// modal <dialog>. The API checks the values: its message for each field is shown by the field.

import { ApiError, api, seg } from "./api.js";
import { h, valueText } from "./dom.js";

let uid = 0;
const nextId = (stem) => `${stem}-${++uid}`;

/** The kind of input for a parameter's type: "int | None" is an optional int. */
function kindOf(param) {
  if (param.choices && param.choices.length) return "choice";
  const type = String(param.type).replace(/\s*\|\s*None$/, "");
  return { int: "int", float: "float", bool: "bool", date: "date", datetime: "datetime" }[type] || "text";
}

/** "2026-11-01T06:00:00+00:00" as datetime-local's "2026-11-01T06:00:00". */
function localDateTime(value) {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d)?)/.exec(String(value));
  return m ? m[1] : "";
}

/** One field: a label, an input fit for the type, a hint, and a place for the API's message. */
export class Field {
  constructor(name, { label = name, kind = "text", required = false, value, choices, hint = "", min, max }) {
    this.name = name;
    this.kind = kind;
    const id = nextId("field");
    this.error = h("p", { class: "field-error", id: `${id}-error`, hidden: true });
    if (kind === "choice") {
      this.input = h(
        "select",
        { id, name },
        required ? null : h("option", { value: "" }, "— default —"),
        choices.map((c) => h("option", { value: c, selected: String(value) === c }, c)),
      );
    } else {
      const type = { int: "number", float: "number", bool: "checkbox", date: "date", datetime: "datetime-local" }[
        kind
      ];
      this.input = h("input", { id, name, type: type || "text", autocomplete: "off" });
      if (kind === "int") this.input.step = "1";
      if (kind === "float") this.input.step = "any";
      if (kind === "datetime") this.input.step = "1";
      if (min !== undefined) this.input.min = String(min);
      if (max !== undefined) this.input.max = String(max);
      if (kind === "bool") this.input.checked = value === true;
      else if (value !== undefined && value !== null) {
        this.input.value = kind === "datetime" ? localDateTime(value) : valueText(value);
      }
    }
    this.input.required = required;
    if (required) this.input.setAttribute("aria-required", "true");
    const mark = required ? h("span", { class: "required", title: "required" }, " *", h("span", { class: "sr-only" }, " (required)")) : null;
    this.el = h(
      "div",
      { class: `field field-${kind}` },
      h("label", { for: id }, h("span", { class: "field-name" }, label), mark, hint ? h("span", { class: "hint" }, ` ${hint}`) : null),
      this.input,
      this.error,
    );
    if (kind === "bool") this.el.insertBefore(this.input, this.el.firstChild); // checkbox before its label
  }

  /** The value to send, or undefined to leave the parameter out (its default applies). */
  value() {
    if (this.kind === "bool") return this.input.checked;
    if (this.input.validity && this.input.validity.badInput) throw new FieldProblem(this, "this is not a number");
    const text = this.input.value;
    return text === "" ? undefined : text; // strings: the API parses them by the parameter's type
  }

  show(message) {
    this.error.textContent = message;
    this.error.hidden = false;
    this.input.setAttribute("aria-invalid", "true");
    this.input.setAttribute("aria-describedby", this.error.id);
  }

  clear() {
    this.error.textContent = "";
    this.error.hidden = true;
    this.input.removeAttribute("aria-invalid");
    this.input.removeAttribute("aria-describedby");
  }
}

class FieldProblem extends Error {
  constructor(field, message) {
    super(message);
    this.field = field;
  }
}

/** The fields of a pipeline's parameters (less the names in `skip`). */
export function paramFields(pipeline, skip = []) {
  return pipeline.params
    .filter((p) => !skip.includes(p.name))
    .map(
      (p) =>
        new Field(p.name, {
          kind: kindOf(p),
          required: p.required,
          value: p.default,
          choices: p.choices,
          hint: `(${p.type})`,
        }),
    );
}

/** A modal form: title, fields, a submit button; `submit(values)` posts and returns where to go. */
function dialogForm({ title, intro, fields, extra = [], action, submit }) {
  const alert = h("div", { class: "alert", role: "alert", hidden: true });
  const button = h("button", { type: "submit", class: "primary" }, action);
  const close = h("button", { type: "button", onclick: () => dialog.close() }, "Close");
  const form = h(
    "form",
    { class: "param-form", noValidate: true },
    intro ? h("p", { class: "intro" }, intro) : null,
    extra.map((f) => f.el),
    fields.length ? h("fieldset", {}, h("legend", {}, "Parameters"), fields.map((f) => f.el)) : h("p", { class: "muted" }, "No parameters."),
    alert,
    h("div", { class: "buttons" }, button, close),
  );
  const all = [...extra, ...fields];
  const titleId = nextId("dialog-title");
  const dialog = h("dialog", { class: "form-dialog", "aria-labelledby": titleId }, h("h2", { id: titleId }, title), form);
  dialog.addEventListener("close", () => dialog.remove());
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    alert.hidden = true;
    all.forEach((f) => f.clear());
    button.disabled = true;
    try {
      const values = {};
      for (const f of all) {
        const v = f.value();
        if (v !== undefined) values[f.name] = v;
      }
      const next = await submit(values);
      dialog.close();
      if (next) location.hash = next;
    } catch (err) {
      report(err, all, alert);
    } finally {
      button.disabled = false;
    }
  });
  document.body.append(dialog);
  dialog.showModal();
  (all.find((f) => f.input) || { input: button }).input.focus();
  return dialog;
}

/** Each field's message by its input; the rest (404, 409, 400, a name no field has) as an alert. */
function report(err, fields, alert) {
  if (err instanceof FieldProblem) {
    err.field.show(err.message);
    err.field.input.focus();
    return;
  }
  const rest = [];
  if (err instanceof ApiError && Object.keys(err.fields).length) {
    for (const [name, message] of Object.entries(err.fields)) {
      const field = fields.find((f) => f.name === name);
      if (field) field.show(message);
      else rest.push(`${name || "request"}: ${message}`);
    }
    const first = fields.find((f) => !f.error.hidden);
    if (first) first.input.focus();
  } else {
    rest.push(err && err.message ? err.message : String(err));
  }
  if (rest.length) {
    alert.textContent = rest.join("\n");
    alert.hidden = false;
  }
}

/** Start a run of `pipeline` (a PipelineView): on 201, go to the run's page. */
export function runForm(pipeline) {
  return dialogForm({
    title: `Run ${pipeline.name}`,
    intro: pipeline.description,
    fields: paramFields(pipeline),
    action: "Start run",
    submit: async (params) => {
      const run = await api(`/pipelines/${seg(pipeline.name)}/runs`, { method: "POST", body: { params } });
      return `#/runs/${seg(run.id)}`;
    },
  });
}

/** Can this pipeline be backfilled? (It takes a logical_date.) */
export const backfillable = (pipeline) => pipeline.params.some((p) => p.name === "logical_date");

/** Start a backfill of `pipeline`: a date range, every, max parallel, its other parameters. */
export function backfillForm(pipeline) {
  const logical = pipeline.params.find((p) => p.name === "logical_date");
  const kind = logical && kindOf(logical) === "datetime" ? "datetime" : "date";
  const start = new Field("start", { label: "First date", kind, required: true });
  const end = new Field("end", { label: "Last date", kind, required: true, hint: "(included)" });
  const every = new Field("every", { label: "Every", kind: "choice", required: true, value: "day", choices: ["day", "hour", "week", "month"] });
  const parallel = new Field("max_parallel", { label: "Max parallel runs", kind: "int", required: true, value: 1, min: 1, max: 1000 });
  const range = [start, end, every, parallel];
  every.input.addEventListener("change", () => {
    const hourly = every.input.value === "hour";
    for (const f of [start, end]) {
      const keep = f.input.value;
      f.input.type = hourly ? "datetime-local" : "date";
      f.input.value = hourly && keep.length === 10 ? `${keep}T00:00` : keep.slice(0, 10);
    }
  });
  const fields = paramFields(pipeline, ["logical_date"]);
  return dialogForm({
    title: `Backfill ${pipeline.name}`,
    intro: "One run per logical date of the range; dates already done are skipped.",
    extra: range,
    fields,
    action: "Start backfill",
    submit: async (values) => {
      const params = {};
      for (const f of fields) if (f.name in values) params[f.name] = values[f.name];
      const body = { pipeline: pipeline.name, params, every: values.every || "day" };
      if (values.start !== undefined) body.start = values.start;
      if (values.end !== undefined) body.end = values.end;
      if (values.max_parallel !== undefined) {
        const n = Number(values.max_parallel);
        body.max_parallel = Number.isInteger(n) ? n : values.max_parallel;
      }
      await api("/backfills", { method: "POST", body });
      return "#/backfills";
    },
  });
}
