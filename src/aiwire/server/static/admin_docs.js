// Renders the admin API's OpenAPI spec (openapi.json, next to this page) as plain HTML.
// Self-contained on purpose: no framework, no CDN, and text goes in as text, never as markup.
"use strict";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  for (const child of children) {
    if (child !== null && child !== undefined) {
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
  }
  return node;
}

function resolve(spec, schema) {
  let seen = 0;
  while (schema && schema.$ref && seen++ < 20) {
    schema = schema.$ref.replace(/^#\//, "").split("/").reduce((at, part) => at[part], spec);
  }
  return schema || {};
}

function typeOf(spec, schema) {
  schema = resolve(spec, schema);
  if (schema.enum) return schema.enum.map((v) => JSON.stringify(v)).join(" | ");
  if (schema.const !== undefined) return JSON.stringify(schema.const);
  const union = schema.anyOf || schema.oneOf;
  if (union) return union.map((s) => typeOf(spec, s)).join(" | ");
  if (schema.type === "array") return typeOf(spec, schema.items) + "[]";
  if (schema.type === "object" && !schema.properties) return "object";
  if (schema.title && schema.properties) return schema.title;
  return (schema.type || "any") + (schema.format ? ` (${schema.format})` : "");
}

function fieldsTable(spec, schema) {
  schema = resolve(spec, schema);
  const props = schema.properties || {};
  const required = new Set(schema.required || []);
  const rows = Object.entries(props).map(([name, prop]) => {
    const resolved = resolve(spec, prop);
    return el("tr", null,
      el("td", null, el("code", null, name), required.has(name) ? " *" : ""),
      el("td", null, el("code", null, typeOf(spec, prop))),
      el("td", null, resolved.description || prop.description || ""));
  });
  if (!rows.length) return el("p", null, el("code", null, typeOf(spec, schema)));
  return el("table", null,
    el("thead", null, el("tr", null, el("th", null, "field"), el("th", null, "type"),
      el("th", null, "meaning"))),
    el("tbody", null, ...rows));
}

function paragraphs(text) {
  const box = el("div", { class: "desc" });
  for (const part of (text || "").split(/\n\s*\n/)) {
    if (part.trim()) box.append(el("p", null, part.replace(/\s+/g, " ").trim()));
  }
  return box;
}

function operation(spec, method, path, op) {
  const body = el("div", { class: "body" });
  if (op.description) body.append(paragraphs(op.description));
  const params = op.parameters || [];
  if (params.length) {
    body.append(el("h4", null, "Parameters"), el("table", null, el("tbody", null,
      ...params.map((p) => el("tr", null,
        el("td", null, el("code", null, p.name), p.required ? " *" : ""),
        el("td", null, p.in),
        el("td", null, el("code", null, typeOf(spec, p.schema))),
        el("td", null, p.description || ""))))));
  }
  const json = op.requestBody && op.requestBody.content["application/json"];
  if (json) body.append(el("h4", null, "Body (JSON)"), fieldsTable(spec, json.schema));
  body.append(el("h4", null, "Responses"));
  for (const [status, response] of Object.entries(op.responses || {})) {
    const content = response.content || {};
    const types = Object.keys(content).join(", ");
    body.append(el("p", null, el("strong", null, status), " ", response.description || "",
      types ? ` (${types})` : ""));
    const schema = content["application/json"] && content["application/json"].schema;
    if (schema && status.startsWith("2")) body.append(fieldsTable(spec, schema));
  }
  return el("details", { class: "op" },
    el("summary", null, el("span", { class: `method ${method.toUpperCase()}` }, method.toUpperCase()),
      el("span", { class: "path" }, path), el("span", { class: "summary" }, op.summary || "")),
    body);
}

function render(spec) {
  document.getElementById("title").textContent = `${spec.info.title} ${spec.info.version}`;
  const main = document.getElementById("api");
  main.replaceChildren(paragraphs(spec.info.description));
  const groups = new Map();
  for (const [path, item] of Object.entries(spec.paths || {})) {
    for (const [method, op] of Object.entries(item)) {
      const tag = (op.tags && op.tags[0]) || "other";
      if (!groups.has(tag)) groups.set(tag, []);
      groups.get(tag).push(operation(spec, method, path, op));
    }
  }
  for (const [tag, ops] of groups) main.append(el("h2", null, tag), ...ops);
  main.append(el("h2", null, "Error body"),
    fieldsTable(spec, { $ref: "#/components/schemas/ErrorDetail" }));
}

fetch("openapi.json")
  .then((response) => {
    if (!response.ok) throw new Error(`openapi.json answered ${response.status}`);
    return response.json();
  })
  .then(render)
  .catch((error) => {
    document.getElementById("api").replaceChildren(el("p", null, `Could not load the spec: ${error.message}`));
  });
