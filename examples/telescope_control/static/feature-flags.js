// Feature flags for rolling the WebSocket features out gradually, kept in localStorage so a
// choice survives a reload. window.featureFlags and window.FeatureFlagDebug are for the
// browser console.
const STORAGE_KEY = "telescope.featureFlags";

export const DEFAULT_FLAGS = Object.freeze({
  useWebSocketForStatusUpdates: true,
  useWebSocketForCommands: true,
  enableWebSocketDebugLogs: false,
  enablePerformanceMetrics: false,
});

class FeatureFlags {
  constructor() {
    this.listeners = new Set();
    let saved = {};
    try {
      saved = JSON.parse(localStorage.getItem(STORAGE_KEY) ?? "{}");
    } catch {
      saved = {};
    }
    this.flags = { ...DEFAULT_FLAGS };
    for (const [k, v] of Object.entries(saved)) if (k in DEFAULT_FLAGS) this.flags[k] = !!v;
  }

  isEnabled(name) { return !!this.flags[name]; }
  getFlags() { return { ...this.flags }; }
  enable(name) { this.set(name, true); }
  disable(name) { this.set(name, false); }

  set(name, value) {
    if (!(name in DEFAULT_FLAGS)) throw new Error(`unknown feature flag ${name}`);
    this.flags[name] = !!value;
    localStorage.setItem(STORAGE_KEY, JSON.stringify(this.flags));
    for (const cb of this.listeners) cb(name, !!value);
  }

  onChange(cb) {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }
}

export const featureFlags = new FeatureFlags();

export const FeatureFlagDebug = {
  enableWebSocketFeatures() {
    featureFlags.enable("useWebSocketForStatusUpdates");
    featureFlags.enable("useWebSocketForCommands");
  },
  disableWebSocketFeatures() {
    featureFlags.disable("useWebSocketForStatusUpdates");
    featureFlags.disable("useWebSocketForCommands");
  },
};

window.featureFlags = featureFlags;
window.FeatureFlagDebug = FeatureFlagDebug;
