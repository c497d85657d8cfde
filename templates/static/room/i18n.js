// The page's sentences (#room-strings), in the participant's language: the script brings none
// of its own, so a missing key shows itself (its name) instead of an English fallback.

/** A `t(key, vars)` over the page's strings; `{name}` placeholders take `vars[name]`. */
export function translator(strings) {
  return function t(key, vars) {
    const text = strings[key] !== undefined ? String(strings[key]) : key;
    if (!vars) {
      return text;
    }
    return text.replace(/\{(\w+)\}/g, (whole, name) =>
      Object.prototype.hasOwnProperty.call(vars, name) ? String(vars[name]) : whole
    );
  };
}
