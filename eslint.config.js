// eslint for the pages' JavaScript (`make lint`): the recommended rules, plus the few habits
// the room page keeps (strict equality, const, no stray globals). Browser code is checked
// against the browser's globals, the unit tests against Node's.
import js from "@eslint/js";
import globals from "globals";

export default [
  { ignores: ["node_modules/", ".venv/", "mutants/", "var/", "build/", "dist/"] },
  js.configs.recommended,
  {
    rules: {
      eqeqeq: ["error", "always"],
      "no-var": "error",
      "prefer-const": "error",
      "no-unused-vars": ["error", { caughtErrors: "none" }],
      "no-console": ["error", { allow: ["warn"] }],
    },
  },
  {
    files: ["templates/static/room/**/*.js"],
    languageOptions: { sourceType: "module", globals: globals.browser },
  },
  {
    // A classic script (no modules) for the booking pages, written for old browsers too.
    files: ["templates/static/viva.js"],
    languageOptions: { sourceType: "script", globals: globals.browser },
    rules: { "no-var": "off" },
  },
  {
    files: ["tests/js/**/*.mjs", "eslint.config.js"],
    languageOptions: { sourceType: "module", globals: globals.node },
  },
];
