// A truck's day on the map: its track, bin lifts and stops, and a slider that moves it along the track.
"use strict";
(function () {
  const element = document.getElementById("route-map");
  const slider = document.getElementById("route-slider");
  const label = document.getElementById("route-time");
  const map = L.map(element, { maxZoom: 19 }).setView([41.39, 2.165], 14);
  if (element.dataset.tiles) L.tileLayer(element.dataset.tiles, { maxZoom: 19 }).addTo(map);
  const url = `/console/devices/${encodeURIComponent(element.dataset.device)}/route.json?day=${element.dataset.day}`;
  fetch(url, { credentials: "same-origin" }).then((r) => r.json()).then((route) => {
    const points = route.track.map((p) => [p[1], p[2]]);
    element.dataset.points = String(points.length);
    element.dataset.lifts = String(route.lifts.length);
    if (!points.length) { label.textContent = "–"; return; }
    L.polyline(points, { className: "route-track", weight: 3 }).addTo(map);
    route.lifts.forEach((lift) => L.circleMarker([lift[1], lift[2]], { radius: 4, className: "route-lift" })
      .bindTooltip(`${lift[0]}${lift[3] ? " · " + lift[3] : ""}`).addTo(map));
    route.stops.forEach((stop) => L.circleMarker([stop[2], stop[3]], { radius: 7, className: "route-stop" })
      .bindTooltip(`${stop[0]} – ${stop[1]}`).addTo(map));
    const truck = L.circleMarker(points[0], { radius: 8, className: "route-truck" }).addTo(map);
    map.fitBounds(L.latLngBounds(points).pad(0.1));
    slider.max = String(points.length - 1);
    const move = () => {
      const i = Number(slider.value);
      truck.setLatLng(points[i]);
      label.textContent = route.track[i][0];
    };
    slider.addEventListener("input", move);
    move();
  });
})();
