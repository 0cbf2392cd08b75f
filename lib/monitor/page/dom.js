/**
 * A tiny element builder. Data from the master only ever becomes text nodes or
 * attribute values, never markup, so a host or ticket name cannot inject HTML.
 */

/**
 * h("td", { class: "num", dataset: { host: "h1" } }, "3", child)
 * @param {string} tag
 * @param {Record<string, any> | null} props attributes; `dataset` sets data-*, `style` an object
 *   of style properties (set through CSSOM: the page's CSP refuses style attributes); null/false skip
 * @param {...(Node | string | number | null | undefined | false)} children
 * @returns {HTMLElement}
 */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props ?? {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "style") Object.assign(el.style, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    el.append(typeof c === "object" ? c : String(c));
  }
  return el;
}
