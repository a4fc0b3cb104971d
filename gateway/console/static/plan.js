// A day's plan on the map: each truck's route as a line, its stops numbered in order.
"use strict";
(function () {
  // A tooltip's content as text, never as HTML: a container's name is whatever was registered.
  const text = (value) => { const span = document.createElement("span"); span.textContent = value; return span; };
  const element = document.getElementById("plan-map");
  const map = L.map(element, { maxZoom: 19 }).setView([41.39, 2.165], 13);
  if (element.dataset.tiles) L.tileLayer(element.dataset.tiles, { maxZoom: 19 }).addTo(map);
  fetch(`/console/collections/plan.json?day=${element.dataset.day}`, { credentials: "same-origin" })
    .then((r) => r.json()).then((plan) => {
      const layer = L.geoJSON(plan, {
        style: (feature) => (feature.geometry.type === "LineString" ? { className: "plan-route", weight: 3 } : {}),
        pointToLayer: (feature, at) => L.circleMarker(at, { radius: 6, className: "plan-stop" })
          .bindTooltip(text(`${feature.properties.order || "–"}. ${feature.properties.name}`)),
      }).addTo(map);
      element.dataset.routes = String(plan.features.filter((f) => f.geometry.type === "LineString").length);
      if (plan.features.length) map.fitBounds(layer.getBounds().pad(0.1));
    });
})();
