// The live map: what /console/map/data.json says now, then what /console/live streams as it is committed.
"use strict";
(function () {
  const element = document.getElementById("map");
  const labels = JSON.parse(element.dataset.labels);
  // Without a tile layer the map has no maxZoom of its own, and marker clustering needs one.
  const map = L.map(element, { maxZoom: 19 }).setView([41.39, 2.165], 15);
  if (element.dataset.tiles) {
    L.tileLayer(element.dataset.tiles, { maxZoom: 19, attribution: element.dataset.attribution || "" }).addTo(map);
  }
  const trucksLayer = L.layerGroup().addTo(map);
  const containersLayer = L.markerClusterGroup({ disableClusteringAtZoom: 17, chunkedLoading: true }).addTo(map);
  const incidentsLayer = L.layerGroup().addTo(map);
  const overlays = {};
  overlays[labels.trucks] = trucksLayer;
  overlays[labels.containers] = containersLayer;
  overlays[labels.incidents] = incidentsLayer;
  const control = L.control.layers(null, overlays, { collapsed: false }).addTo(map);
  const trucks = new Map();
  const containers = new Map();
  const incidents = new Map();
  const panel = document.getElementById("panel");
  const panelBody = document.getElementById("panel-body");
  const liveStatus = document.getElementById("live-status");
  document.getElementById("panel-close").addEventListener("click", () => { panel.hidden = true; });
  window.wastegateMap = { map, trucks, containers, incidents, updates: 0, lag: [] };

  function text(value) {
    const span = document.createElement("span");
    span.textContent = value === null || value === undefined ? "–" : String(value);
    return span.innerHTML;
  }

  function show(html) {
    panelBody.innerHTML = html;
    panel.hidden = false;
  }

  function fillClass(fill) {
    if (fill === null || fill === undefined) return "fill-unknown";
    if (fill >= 90) return "fill-full";
    if (fill >= 75) return "fill-high";
    if (fill >= 40) return "fill-mid";
    return "fill-low";
  }

  function truckIcon(truck) {
    const heading = truck.heading_deg || 0;
    return L.divIcon({
      className: "truck-marker",
      html: `<span class="truck-arrow" data-device="${text(truck.device_id)}" style="transform: rotate(${heading}deg)">▲</span>`,
      iconSize: [22, 22], iconAnchor: [11, 11],
    });
  }

  function drawTruck(truck) {
    const position = [truck.lat, truck.lon];
    let entry = trucks.get(truck.device_id);
    if (!entry) {
      const marker = L.marker(position, { icon: truckIcon(truck), zIndexOffset: 1000 });
      const trail = L.polyline(truck.trail || [], { className: "truck-trail", weight: 3 });
      marker.on("click", () => show(truckPanel(entry.data)));
      entry = { marker, trail, data: truck };
      trucks.set(truck.device_id, entry);
      trail.addTo(trucksLayer);
      marker.addTo(trucksLayer);
    } else {
      entry.marker.setLatLng(position);
      entry.marker.setIcon(truckIcon(truck));
      entry.trail.setLatLngs(truck.trail || []);
    }
    entry.data = truck;
    entry.marker.getElement() && entry.marker.getElement().setAttribute("data-time", truck.time);
  }

  function truckPanel(truck) {
    return `<h2>${labels.truck} ${text(truck.name)}</h2>
      <dl><dt>${labels.speed}</dt><dd>${text(truck.speed_kmh)} km/h</dd>
      <dt>${labels.seen}</dt><dd>${text(truck.time)}</dd></dl>`;
  }

  function containerIcon(container) {
    const status = (container.status || []).join(" ");
    return L.divIcon({
      className: `container-marker ${fillClass(container.fill_pct)}`,
      html: `<span data-device="${text(container.device_id)}" data-status="${text(status)}">${
        container.fill_pct === null || container.fill_pct === undefined ? "?" : Math.round(container.fill_pct)}</span>`,
      iconSize: [26, 26], iconAnchor: [13, 13],
    });
  }

  function drawContainer(container) {
    let entry = containers.get(container.device_id);
    if (!entry) {
      const marker = L.marker([container.lat, container.lon], { icon: containerIcon(container) });
      marker.on("click", () => show(containerPanel(entry.data)));
      entry = { marker, data: container };
      containers.set(container.device_id, entry);
      containersLayer.addLayer(marker);
    } else {
      entry.marker.setIcon(containerIcon(container));
    }
    entry.data = container;
  }

  function containerPanel(container) {
    return `<h2>${labels.container} ${text(container.name)}</h2>
      <dl><dt>${labels.fill}</dt><dd>${text(container.fill_pct)} %</dd>
      <dt>${labels.status}</dt><dd>${text((container.status || []).join(", "))}</dd>
      <dt>${labels.seen}</dt><dd>${text(container.last_seen)}</dd></dl>`;
  }

  function drawIncident(incident) {
    const open = !["resolved", "closed"].includes(incident.status);
    let entry = incidents.get(incident.id);
    if (!open || incident.lat === null || incident.lon === null) {
      if (entry) { incidentsLayer.removeLayer(entry.marker); incidents.delete(incident.id); }
      return;
    }
    if (!entry) {
      const icon = L.divIcon({
        className: `incident-marker severity-${text(incident.severity)}`,
        html: `<span data-incident="${incident.id}" data-service="${text(incident.service_code)}">!</span>`,
        iconSize: [20, 20], iconAnchor: [10, 10],
      });
      const marker = L.marker([incident.lat, incident.lon], { icon, zIndexOffset: 2000 });
      marker.on("click", () => show(incidentPanel(entry.data)));
      entry = { marker, data: incident };
      incidents.set(incident.id, entry);
      marker.addTo(incidentsLayer);
    }
    entry.data = incident;
  }

  function incidentPanel(incident) {
    return `<h2>${labels.incident} #${incident.id}</h2>
      <p>${text(incident.title)}</p>
      <dl><dt>${labels.status}</dt><dd>${text(incident.status)}</dd></dl>
      <p><a class="open-incident" href="/console/incidents/${incident.id}">${labels.open} #${incident.id}</a></p>`;
  }

  function drawZones(zones) {
    for (const [name, geojson] of Object.entries(zones)) {
      const layer = L.geoJSON(geojson, {
        className: `zone zone-${name}`,
        style: { weight: 1, fillOpacity: 0.08 },
        onEachFeature: (feature, shape) => {
          const properties = feature.properties || {};
          shape.bindTooltip(text(properties.name || properties.id || name));
        },
      });
      control.addOverlay(layer, name);
      layer.addTo(map);
    }
  }

  function apply(data) {
    (data.trucks || []).forEach(drawTruck);
    (data.containers || []).forEach(drawContainer);
    (data.incidents || []).forEach(drawIncident);
  }

  fetch("/console/map/data.json", { credentials: "same-origin" })
    .then((response) => response.json())
    .then((data) => {
      drawZones(data.zones || {});
      apply(data);
      const points = [...trucks.values(), ...containers.values()].map((e) => e.marker.getLatLng());
      if (points.length) map.fitBounds(L.latLngBounds(points).pad(0.1), { maxZoom: 17 });
      element.dataset.loaded = "true";
      listen(data.cursor);
    });

  function listen(cursor) {
    const source = new EventSource(`/console/live?after=${cursor}`);
    source.addEventListener("open", () => { liveStatus.textContent = "live"; liveStatus.className = "live-status on"; });
    source.addEventListener("error", () => { liveStatus.className = "live-status off"; });
    source.addEventListener("update", (event) => {
      const data = JSON.parse(event.data);
      // The stream repeats what was committed in its last seconds: only positions not drawn yet count.
      data.trucks = (data.trucks || []).filter((t) => !trucks.has(t.device_id) || trucks.get(t.device_id).data.time !== t.time);
      apply(data);
      // How old each new truck position is when drawn (its device time to now): the benchmark reads this.
      const lag = window.wastegateMap.lag;
      for (const truck of data.trucks) {
        if (lag.length < 100000) lag.push(Date.now() - Date.parse(truck.time));
      }
      window.wastegateMap.updates += 1;
      element.dataset.updates = String(window.wastegateMap.updates);
    });
  }
})();
