// The rule lab: the file checked as it is typed, a backtest as a job (progress, then its result drawn as
// a table, a timeline and a map), and the edited file downloaded. Nothing is written on the server.
"use strict";
(function () {
  const root = document.getElementById("lab");
  const labels = JSON.parse(root.dataset.labels);
  const csrf = root.dataset.csrf;
  const editor = document.getElementById("lab-yaml");
  const problems = document.getElementById("lab-problems");
  const fileName = document.getElementById("lab-download").dataset.file;
  const original = editor.value;
  const status = document.getElementById("lab-status");
  const progress = document.getElementById("lab-progress");
  const result = document.getElementById("lab-result");
  const colours = { same: "#999", different: "#8a2be2", only_a: "#e67e00", only_b: "#1f6fd6" };
  let map = null;
  let markers = null;
  let checking = null;
  let checked = 0;
  window.wastegateLab = { checks: 0, runs: 0, last: null };

  async function post(path, body) {
    const response = await fetch(path, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body),
    });
    let answer = {};
    try { answer = await response.json(); } catch (error) { answer = { problems: [response.statusText] }; }
    return { status: response.status, answer };
  }

  function showProblems(list) {
    problems.textContent = list.length ? list.join("\n") : labels.ok;
    problems.className = "problems " + (list.length ? "bad" : "good");
  }

  async function check() {
    const number = ++checked;
    const { answer } = await post("/console/lab/check", { yaml: editor.value, file: fileName });
    if (number !== checked) return; // a later edit is being checked
    showProblems(answer.problems || []);
    window.wastegateLab.checks += 1;
  }

  editor.addEventListener("input", () => {
    clearTimeout(checking);
    checking = setTimeout(check, 300);
  });
  check();

  document.getElementById("lab-reset").addEventListener("click", () => { editor.value = original; check(); });

  document.getElementById("lab-download").addEventListener("click", () => {
    const blob = new Blob([editor.value], { type: "application/yaml" });
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = fileName;
    document.body.appendChild(link);
    link.click();
    link.remove();
    URL.revokeObjectURL(link.href);
  });

  function isoOf(input) {
    return input.value ? new Date(input.value).toISOString() : null;
  }

  document.getElementById("lab-run").addEventListener("click", async () => {
    const body = { yaml: editor.value, file: fileName };
    const last = document.getElementById("lab-last").value;
    const since = isoOf(document.getElementById("lab-since"));
    if (last || !since) {
      body.last = last || "1d";
    } else {
      body.since = since;
      const until = isoOf(document.getElementById("lab-until"));
      if (until) body.until = until;
    }
    const rule = document.getElementById("lab-rule").value.trim();
    if (rule) body.rule = rule;
    result.hidden = true;
    status.textContent = "";
    const { status: code, answer } = await post("/console/lab/run", body);
    if (code !== 202) {
      status.textContent = (answer.problems || [labels.failed]).join("\n");
      status.className = "problems bad";
      return;
    }
    status.className = "";
    window.wastegateLab.runs += 1;
    follow(answer.id);
  });

  async function follow(id) {
    progress.hidden = false;
    progress.value = 0;
    for (;;) {
      const response = await fetch(`/console/lab/jobs/${id}`, { credentials: "same-origin" });
      const job = await response.json();
      if (!response.ok) {
        status.textContent = (job.problems || [labels.failed]).join("\n");
        progress.hidden = true;
        return;
      }
      progress.value = job.progress;
      status.textContent = `${labels.running}: ${job.readings.toLocaleString()} ${labels.readings}`;
      if (job.status === "failed") {
        status.textContent = `${labels.failed}: ${job.error}`;
        status.className = "problems bad";
        progress.hidden = true;
        return;
      }
      if (job.status === "done") {
        progress.hidden = true;
        show(job.view);
        window.wastegateLab.last = job.view;
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 700));
    }
  }

  function cell(row, value) {
    const td = document.createElement("td");
    td.textContent = value;
    row.appendChild(td);
  }

  function show(view) {
    const when = (iso) => new Date(iso).toLocaleString();
    status.textContent = `${view.readings.toLocaleString()} ${labels.readings}, ${when(view.since)} → ${when(view.until)}` +
      (view.truncated ? ` · ${labels.truncated}` : "");
    const body = document.querySelector("#lab-rules tbody");
    body.replaceChildren();
    for (const row of view.rows) {
      const tr = document.createElement("tr");
      tr.dataset.rule = row.rule;
      for (const value of [row.rule, row.candidate, row.deployed, row.same, row.different, row.only_candidate,
                           row.only_deployed, row.flapping]) cell(tr, value);
      body.appendChild(tr);
    }
    result.hidden = false;
    drawTimeline(view);
    drawMap(view);
  }

  function drawTimeline(view) {
    const start = Date.parse(view.since);
    const end = Date.parse(view.until);
    const rules = view.rows.map((row) => row.rule);
    const width = 900;
    const left = 190;
    const rowHeight = 26;
    const svgNS = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(svgNS, "svg");
    svg.setAttribute("viewBox", `0 0 ${width} ${rules.length * rowHeight + 40}`);
    const x = (time) => left + (width - left - 10) * Math.max(0, Math.min(1, (time - start) / (end - start)));
    rules.forEach((rule, index) => {
      const label = document.createElementNS(svgNS, "text");
      label.setAttribute("x", 4);
      label.setAttribute("y", index * rowHeight + 17);
      label.textContent = rule;
      svg.appendChild(label);
    });
    for (const incident of view.incidents) {
      const index = rules.indexOf(incident.rule_id);
      if (index < 0) continue;
      const opened = Date.parse(incident.opened_at);
      const resolved = incident.resolved_at ? Date.parse(incident.resolved_at) : end;
      const bar = document.createElementNS(svgNS, "rect");
      bar.setAttribute("x", x(opened));
      bar.setAttribute("y", index * rowHeight + 4 + (incident.version === "deployed" ? 9 : 0));
      bar.setAttribute("width", Math.max(3, x(resolved) - x(opened)));
      bar.setAttribute("height", 8);
      bar.setAttribute("class", `incident ${incident.status}`);
      const title = document.createElementNS(svgNS, "title");
      title.textContent = `${incident.subject}: ${incident.opened_at} → ${incident.resolved_at || labels.open} ` +
        `(${labels[incident.status]})`;
      bar.appendChild(title);
      svg.appendChild(bar);
    }
    // the time axis: the range's start, middle and end
    [0, 0.5, 1].forEach((share) => {
      const tick = document.createElementNS(svgNS, "text");
      tick.setAttribute("x", left + (width - left - 10) * share);
      tick.setAttribute("y", rules.length * rowHeight + 12);
      tick.setAttribute("text-anchor", share === 0 ? "start" : share === 1 ? "end" : "middle");
      tick.textContent = new Date(start + (end - start) * share).toLocaleString();
      svg.appendChild(tick);
    });
    const legend = document.createElementNS(svgNS, "text");
    legend.setAttribute("x", left);
    legend.setAttribute("y", rules.length * rowHeight + 32);
    legend.textContent = ["same", "different", "only_a", "only_b"].map((s) => `■ ${labels[s]}`).join("   ");
    svg.appendChild(legend);
    document.getElementById("lab-timeline").replaceChildren(svg);
  }

  function drawMap(view) {
    if (map === null) {
      map = L.map("lab-map", { maxZoom: 19 }).setView([41.39, 2.165], 13);
      markers = L.featureGroup().addTo(map);
    }
    markers.clearLayers();
    for (const incident of view.incidents) {
      if (incident.lat === null || incident.lon === null) continue;
      const marker = L.circleMarker([incident.lat, incident.lon], {
        radius: 6, color: colours[incident.status], fillOpacity: 0.7, className: `lab-incident ${incident.status}`,
      });
      const popup = document.createElement("div");
      popup.textContent = `${incident.rule_id} · ${incident.subject} · ${labels[incident.status]}: ` +
        `${incident.opened_at} → ${incident.resolved_at || labels.open}`;
      marker.bindPopup(popup);
      marker.addTo(markers);
    }
    if (markers.getLayers().length) map.fitBounds(markers.getBounds().pad(0.2), { maxZoom: 16 });
    map.invalidateSize();
  }
})();
