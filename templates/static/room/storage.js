// localStorage and sessionStorage that never throw: private browsing or disabled storage
// leaves a page that works without remembering.

export function store(storage, key, value) {
  try {
    if (value === null) {
      storage.removeItem(key);
    } else {
      storage.setItem(key, value);
    }
  } catch (error) {
    // Nothing remembered; nothing else changes.
  }
}

export function recall(storage, key) {
  try {
    return storage.getItem(key);
  } catch (error) {
    return null;
  }
}
