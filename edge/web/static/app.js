// Live status: the door's records over Server-Sent Events (/events). No framework, no build step.
(function () {
  const relay = document.getElementById("relay");
  if (!relay) return;
  const camera = document.getElementById("camera");
  const door = document.getElementById("door");
  const rows = document.getElementById("decisions");
  const set = (el, text, good) => { if (!el) return; el.textContent = text; el.className = "value " + (good ? "ok" : "bad"); };
  const when = (ts) => new Date(ts * 1000).toLocaleString();
  const addRow = (r) => {
    const tr = document.createElement("tr");
    tr.className = "live";
    for (const v of [when(r.ts), r.decision, r.identity || "-", (r.score || 0).toFixed(3), r.reason || ""]) {
      const td = document.createElement("td"); td.textContent = v; tr.appendChild(td);
    }
    tr.children[1].className = r.decision === "grant" || r.decision === "remote_open" ? "ok" : "bad";
    rows.insertBefore(tr, rows.firstChild);
    while (rows.children.length > 20) rows.removeChild(rows.lastChild);
  };
  const es = new EventSource("/events");
  es.onmessage = (m) => {
    const r = JSON.parse(m.data);
    if (r.type === "decision") addRow(r);
    else if (r.type === "relay") set(relay, r.state, r.state === "locked");
    else if (r.type === "camera") set(camera, r.state, r.state === "connected");
    else if (r.type === "door") {
      set(door, r.state === "up" ? "connected" : "not reachable", r.state === "up");
      if (r.relay) set(relay, r.relay, r.relay === "locked");
      if (r.camera) set(camera, r.camera, r.camera === "connected");
    }
  };
  es.onerror = () => set(door, "page reconnecting…", false);
})();
// Enrollment at the door camera: the form is sent in the background so this page stays and shows the guidance the
// door's frames produce (over the live stream); then the result page replaces it. Without JS the form still works.
(function () {
  const steps = document.getElementById("capture-steps");
  const form = document.getElementById("capture-form");
  if (!steps || !form) return;
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    document.getElementById("capture-submit").disabled = true;
    const es = new EventSource("/events");
    es.onmessage = (m) => {
      const r = JSON.parse(m.data);
      if (r.type !== "enroll") return;
      if (r.start) steps.textContent = "";
      const li = document.createElement("li");
      li.textContent = r.text;
      steps.appendChild(li);
    };
    fetch(form.action, { method: "POST", body: new FormData(form), credentials: "same-origin" })
      .then((r) => r.text())
      .then((html) => { es.close(); document.open(); document.write(html); document.close(); })
      .catch(() => { es.close(); form.submit(); });
  });
})();
// Forms that need a second thought (open the door, remove a person) ask first.
document.addEventListener("submit", (e) => {
  const q = e.target.getAttribute("data-confirm");
  if (q && !window.confirm(q)) e.preventDefault();
});
