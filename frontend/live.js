// WebSocket client with exponential backoff reconnect.

const MIN_DELAY = 500;
const MAX_DELAY = 10_000;

/**
 * url():        builds the socket URL (re-evaluated per attempt so it sees the current token)
 * onEvent(ev):  each parsed event object
 * onState(s):   "open" | "connecting" | "closed"
 * onOpen(re):  socket opened; re=true after a drop (events may have been missed)
 * probe():      awaited after a drop; an API call that lets a 401 (expired token) log us out
 */
export function connectLive({ url, onEvent, onState, onOpen, probe }) {
  let ws = null;
  let timer = null;
  let attempt = 0;
  let stopped = false;
  let everOpened = false;

  function connect() {
    if (stopped) return;
    onState("connecting");
    try {
      ws = new WebSocket(url());
    } catch {
      scheduleRetry();
      return;
    }
    ws.onopen = () => {
      attempt = 0;
      onState("open");
      onOpen?.(everOpened);
      everOpened = true;
    };
    ws.onmessage = (msg) => {
      let data;
      try { data = JSON.parse(msg.data); } catch { return; } // ignore non-JSON frames
      for (const ev of Array.isArray(data) ? data : [data]) {
        if (ev && typeof ev === "object") onEvent(ev);
      }
    };
    ws.onclose = async () => {
      ws = null;
      if (stopped) return;
      onState("closed");
      // A refused socket is indistinguishable from a network drop in the browser,
      // so ask the API: a 401 there ends the session (and calls stop()).
      try { await probe?.(); } catch { /* network errors: just retry */ }
      scheduleRetry();
    };
  }

  function scheduleRetry() {
    if (stopped) return;
    const base = Math.min(MAX_DELAY, MIN_DELAY * 2 ** attempt++);
    // "Equal jitter": half fixed, half random, so many clients don't reconnect in lockstep.
    const delay = base / 2 + Math.random() * (base / 2);
    onState("closed");
    clearTimeout(timer);
    timer = setTimeout(connect, delay);
  }

  connect();

  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
      if (ws) {
        ws.onclose = null;
        ws.close(1000, "logout");
        ws = null;
      }
      onState("closed");
    },
  };
}
