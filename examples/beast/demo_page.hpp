// The page served at "/": fetches a ticket with the session cookie, opens the
// guarded socket with it as the second subprotocol, sends a message and shows
// the echo. The end-to-end tests read #status and window.wsguardDemo.
#pragma once

namespace demo {

inline constexpr const char* page_html = R"html(<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>wsguard demo</title></head>
<body>
<h1>wsguard demo</h1>
<p>Status: <span id="status">starting</span></p>
<pre id="log"></pre>
<script>
"use strict";
const log = (line) => { document.getElementById("log").textContent += line + "\n"; };
const setStatus = (text) => { document.getElementById("status").textContent = text; log(text); };

// A one-time ticket, bound to this page's origin and to /ws. The session
// cookie (set with this page) stands in for the application's login.
async function fetchTicket() {
  // The X-Wsguard-Ticket header makes this a non-simple request: a form or a
  // script on another site cannot send it without a CORS preflight, which the
  // server answers only for its allowed origins (see docs/ticket-endpoint.md).
  const response = await fetch("/ticket", { method: "POST", credentials: "same-origin", headers: { "X-Wsguard-Ticket": "1" } });
  if (!response.ok) throw new Error("ticket refused: " + response.status);
  return (await response.json()).ticket;
}

// Opens /ws with the ticket; resolves with what happened, never rejects.
function openSocket(ticket, message) {
  return new Promise((resolve) => {
    const ws = new WebSocket("ws://" + location.host + "/ws", ["wsguard.v1", ticket]);
    let opened = false;
    ws.onopen = () => { opened = true; ws.send(message); };
    ws.onmessage = (event) => { resolve({ opened, protocol: ws.protocol, echo: event.data }); ws.close(1000); };
    ws.onclose = (event) => resolve({ opened, protocol: ws.protocol, closeCode: event.code });
  });
}

window.wsguardDemo = { fetchTicket, openSocket };

(async () => {
  try {
    const ticket = await fetchTicket();
    const result = await openSocket(ticket, "hello from the page");
    setStatus(result.echo !== undefined ? "echo: " + result.echo : "closed: " + result.closeCode);
  } catch (error) {
    setStatus("error: " + error.message);
  }
})();
</script>
</body>
</html>
)html";

}  // namespace demo
